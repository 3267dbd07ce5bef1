"""Client: the blocking client. One connection, read by a background thread that hands each
reply and chunk to the call it belongs to, so any number of threads may call at once.

A connection that drops fails the calls in flight with ConnectionLostError; the next call opens
a new connection, retrying with backoff for up to `connect_timeout`. With `retry_safe=True`,
calls that are safe to repeat are sent again on a new connection instead (retry.py).
"""
from __future__ import annotations

import itertools
import ssl
import threading
import time
from collections import deque
from typing import Any, Iterator

from . import protocol
from .errors import ConnectionLostError, DroverConnectionError, DroverError, client_timeout
from .settings import ClientSettings
from .transport import Address, Channel, TlsOptions, open_channel


class _Inbox:
    """What one call has received and not yet consumed. Chunks wait here up to `limit`, then the
    reader thread blocks (so droverd sees a client that does not read); the final item never
    blocks and ends the inbox. Guarded by its condition."""

    def __init__(self, limit: int):
        self._cond = threading.Condition()
        self._items: deque[tuple[str, Any]] = deque()
        self._limit = limit
        self._ended = False  # the final item is in (or the consumer left): no more chunks

    def push_chunk(self, chunk: Any) -> None:  # reader thread
        with self._cond:
            while len(self._items) >= self._limit and not self._ended:
                self._cond.wait()
            if not self._ended:
                self._items.append(("chunk", chunk))
                self._cond.notify_all()

    def end(self, kind: str, payload: Any) -> None:
        with self._cond:
            if not self._ended:
                self._ended = True
                self._items.append((kind, payload))
                self._cond.notify_all()

    def pop(self, deadline: float | None) -> tuple[str, Any] | None:
        """The next item, or None when the deadline passed first."""
        with self._cond:
            while not self._items:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def abandon(self) -> None:
        """The consumer left: what arrives from now on is dropped."""
        with self._cond:
            self._ended = True
            self._items.clear()
            self._cond.notify_all()


class _Connection:
    def __init__(self, address: Address, tls: TlsOptions, connect_timeout: float, max_buffered_chunks: int):
        self.path = address.text
        self._limit = max_buffered_chunks
        self._sock = _connect(address, tls, connect_timeout)
        # Guards _calls and closed. Reentrant: a Stream dropped by the garbage collector while
        # this thread holds it cancels its call from __del__.
        self._lock = threading.RLock()
        self._write_lock = threading.RLock()  # reentrant for the same reason
        self._calls: dict[int, _Inbox] = {}
        self._ids = itertools.count(1)
        self.closed = False
        self.retired = False  # its droverd is draining: no new calls on it
        self._reader = threading.Thread(target=self._read_loop, name="drover-client-reader", daemon=True)
        self._reader.start()

    def start(self, method: str, params: Any) -> tuple[int, _Inbox]:
        inbox = _Inbox(self._limit)
        with self._lock:
            if self.closed:
                raise ConnectionLostError(f"connection to {self.path} lost", self.path)
            request_id = next(self._ids)
            self._calls[request_id] = inbox
        self._send(protocol.encode_request(request_id, method, params))
        return request_id, inbox

    def forget(self, request_id: int) -> None:
        with self._lock:
            inbox = self._calls.pop(request_id, None)
        if inbox:
            inbox.abandon()

    def cancel(self, request_id: int) -> None:
        """Asks droverd to cancel a call and stops listening to it; the answer is not awaited."""
        self.forget(request_id)
        with self._lock:
            cancel_id = next(self._ids)  # its answer finds no call and is dropped
        try:
            self._send(protocol.encode_request(cancel_id, "cancel", {"id": request_id}))
        except ConnectionLostError:
            pass  # the connection is gone, and with it the call (droverd cancels it)

    def close(self) -> None:
        # Calls still in flight end first, which also frees a reader blocked on a full inbox.
        self._lost(ConnectionError("client closed"))
        self._sock.shutdown()
        if threading.current_thread() is not self._reader:
            self._reader.join()
        self._sock.close()

    def _send(self, data: bytes) -> None:
        try:
            with self._write_lock:
                self._sock.send(data)
        except OSError as e:
            self._lost(e)
            raise ConnectionLostError(f"connection to {self.path} lost: {e}", self.path) from e

    def _read_loop(self) -> None:
        buf = bytearray()
        reason: Exception | None = None
        try:
            while True:
                data = self._sock.recv()
                if not data:
                    break
                scan_from = len(buf)  # what was there before holds no newline
                buf += data
                start = 0
                while (end := buf.find(b"\n", scan_from)) >= 0:
                    self._dispatch(buf[start:end])
                    start = scan_from = end + 1
                del buf[:start]
                if len(buf) > protocol.MAX_MESSAGE_BYTES:
                    raise ValueError(f"a message from droverd exceeds {protocol.MAX_MESSAGE_BYTES} bytes")
        except (OSError, ValueError) as e:
            reason = e
        self._lost(reason)

    def _dispatch(self, line: bytearray) -> None:
        routed = protocol.route_line(line)
        if routed is None:
            return
        request_id, kind, payload = routed
        with self._lock:
            inbox = self._calls.get(request_id) if kind == "chunk" else self._calls.pop(request_id, None)
        if inbox and kind == "chunk":
            inbox.push_chunk(payload)
        elif inbox:
            inbox.end(kind, payload)

    def _lost(self, reason: Exception | None) -> None:
        with self._lock:
            self.closed = True
            calls, self._calls = self._calls, {}
        detail = f": {reason}" if reason else ""
        for inbox in calls.values():
            inbox.end("lost", ConnectionLostError(f"connection to {self.path} lost{detail}", self.path))


def _connect(address: Address, tls: TlsOptions, timeout: float) -> Channel:
    """Connects, retrying with backoff (droverd may be restarting) until `timeout` has passed."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return open_channel(address, tls, deadline - time.monotonic())
        except OSError as e:  # ssl.SSLError too
            left = deadline - time.monotonic()
            if left <= 0 or isinstance(e, ssl.SSLCertVerificationError):  # retrying will not help
                path = address.text
                raise DroverConnectionError(f"cannot connect to droverd at {path}: {e}", path) from e
            time.sleep(min(delay, left))  # backoff between connection attempts
            delay = min(delay * 2, 1.0)


def _outcome(kind: str, payload: Any) -> Any:
    if kind == "result":
        return payload
    if kind == "error":
        raise DroverError.from_reply(payload)
    raise payload  # "lost": the ConnectionLostError


class Stream:
    """The chunks of a streamed generate, in order; `result` is the final result once the
    iteration has ended. close() (or leaving a `with` block, or dropping the stream) before the
    end cancels the generation at droverd."""

    def __init__(self, conn: _Connection, request_id: int, inbox: _Inbox, timeout: float | None):
        self._conn = conn
        self._id = request_id
        self._inbox = inbox
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._done = False
        self.result: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._done:
            raise StopIteration
        item = self._inbox.pop(self._deadline)
        if item is None:
            self.close()
            raise client_timeout(self._timeout or 0)
        kind, payload = item
        if kind == "chunk":
            return payload
        self._done = True
        self.result = _outcome(kind, payload)
        raise StopIteration

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._conn.cancel(self._id)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            self.close()


class Client(ClientSettings):
    """Blocking client of droverd's JSON-RPC API (docs/API.md). Thread-safe.

    Arguments: settings.ClientSettings (address, TLS files, timeouts, retry_safe).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._retired: list[_Connection] = []  # still finishing their calls
        self._closed = False

    def __enter__(self) -> "Client":
        self._connection()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conn, self._retired = [self._conn, *self._retired], None, []
        for conn in conns:
            if conn:
                conn.close()

    def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Any method; returns its result or raises DroverError."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        sent = 0
        while True:
            conn = self._connection()
            sent += 1
            try:
                request_id, inbox = conn.start(method, params)
                item = inbox.pop(deadline)
                if item is None:
                    conn.cancel(request_id)
                    raise client_timeout(timeout or 0)
                return _outcome(*item)
            except (ConnectionLostError, DroverError) as e:
                if not self._retry.resend(e, conn, method, params, sent, deadline):
                    raise

    def generate(self, prompt: str | None = None, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        return self.call("generate", protocol.generate_params(prompt, params, False), timeout=timeout)

    def stream(self, prompt: str | None = None, *, timeout: float | None = None, **params: Any) -> Stream:
        conn = self._connection()
        request_id, inbox = conn.start("generate", protocol.generate_params(prompt, params, True))
        return Stream(conn, request_id, inbox, self.timeout if timeout is None else timeout)

    def tokenize(self, text: str, *, model: str | None = None, timeout: float | None = None) -> list[int]:
        params: dict[str, Any] = {"text": text}
        if model is not None:
            params["model"] = model
        return self.call("tokenize", params, timeout=timeout)["tokens"]

    def detokenize(self, tokens: list[int], *, model: str | None = None, timeout: float | None = None) -> str:
        params: dict[str, Any] = {"tokens": list(tokens)}
        if model is not None:
            params["model"] = model
        return self.call("detokenize", params, timeout=timeout)["text"]

    def health(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self.call("health", timeout=timeout)

    def models(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        return self.call("models.list", timeout=timeout)["models"]

    def _connection(self) -> _Connection:
        with self._lock:
            if self._closed:
                raise DroverConnectionError("client is closed", self.socket_path)
            if self._conn is not None and self._conn.retired:
                self._retired.append(self._conn)  # droverd closes it once its calls are done
                self._conn = None
            for c in self._retired:
                if c.closed:
                    c.close()  # frees its socket; its reader has ended
            self._retired = [c for c in self._retired if not c.closed]
            if self._conn is None or self._conn.closed:
                old, self._conn = self._conn, None
                if old:
                    old.close()
                self._conn = _Connection(self._address, self._tls, self.connect_timeout, self._max_buffered)
            return self._conn
