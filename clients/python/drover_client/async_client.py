"""AsyncClient: the asyncio client, the same surface as Client with `await` and `async for`.
One connection per client, read by one task that hands replies and chunks to their calls.

Cancelling the task that awaits a call (task.cancel(), asyncio.wait_for) cancels the call at
droverd too. A connection that drops fails the calls in flight with ConnectionLostError; the
next call opens a new connection, retrying with backoff for `connect_timeout`. With
`retry_safe=True`, calls that are safe to repeat are sent again on a new connection (retry.py).
"""
from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections import deque
from typing import Any, AsyncIterator

from . import protocol
from .errors import ConnectionLostError, DroverConnectionError, DroverError, client_timeout
from .settings import ClientSettings
from .transport import Address, TlsOptions, open_streams


class _AsyncInbox:
    """A call's received items; chunks wait up to `limit` (then the reader waits, so droverd sees
    a client that does not read), the final item never waits and ends the inbox. The reader and
    the consumer never wait at once (one waits for an empty inbox, the other for a full one),
    so one waiter slot serves both."""

    __slots__ = ("_items", "_limit", "_ended", "_waiter")

    def __init__(self, limit: int):
        self._items: deque[tuple[str, Any]] = deque()
        self._limit = limit
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None

    async def push_chunk(self, chunk: Any) -> None:
        while len(self._items) >= self._limit and not self._ended:
            await self._wait()
        if not self._ended:
            self._items.append(("chunk", chunk))
            self._wake()

    def end(self, kind: str, payload: Any) -> None:
        if not self._ended:
            self._ended = True
            self._items.append((kind, payload))
            self._wake()

    async def pop(self, deadline: float | None) -> tuple[str, Any] | None:
        """The next item, or None once `deadline` (time.monotonic()) has passed. A timer wakes the
        wait rather than asyncio.wait_for, which can swallow a cancellation that arrives as the
        item does (and the caller's cancel would then never reach droverd)."""
        timer = None
        if deadline is not None and not self._items:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._wake)
        try:
            while not self._items:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                await self._wait()
        finally:
            if timer is not None:
                timer.cancel()
        item = self._items.popleft()
        self._wake()
        return item

    def abandon(self) -> None:
        self._ended = True
        self._items.clear()
        self._wake()

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _AsyncConnection:
    def __init__(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int):
        self.path = path
        self._reader = reader
        self._writer = writer
        self._limit = limit
        self._calls: dict[int, _AsyncInbox] = {}
        self._ids = itertools.count(1)
        self.closed = False
        self.retired = False  # its droverd is draining: no new calls on it
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @staticmethod
    async def open(address: Address, tls: TlsOptions, timeout: float, limit: int) -> "_AsyncConnection":
        path = address.text
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                reader, writer = await asyncio.wait_for(open_streams(address, tls, protocol.MAX_MESSAGE_BYTES),
                                                        max(0.001, deadline - time.monotonic()))
                return _AsyncConnection(path, reader, writer, limit)
            except (OSError, asyncio.TimeoutError) as e:  # ssl.SSLError too
                left = deadline - time.monotonic()
                if left <= 0 or isinstance(e, ssl.SSLCertVerificationError):  # retrying will not help
                    raise DroverConnectionError(f"cannot connect to droverd at {path}: {e!r}", path) from e
                await asyncio.sleep(min(delay, left))  # backoff between connection attempts
                delay = min(delay * 2, 1.0)

    async def start(self, method: str, params: Any) -> tuple[int, _AsyncInbox]:
        if self.closed:
            raise ConnectionLostError(f"connection to {self.path} lost", self.path)
        request_id = next(self._ids)
        inbox = _AsyncInbox(self._limit)
        self._calls[request_id] = inbox
        self._writer.write(protocol.encode_request(request_id, method, params))
        try:
            await self._writer.drain()  # bounded: waits while the socket's buffer is full
        except OSError as e:
            self._lost(e)
        return request_id, inbox

    def cancel(self, request_id: int) -> None:
        """Asks droverd to cancel a call and stops listening to it; the answer is not awaited."""
        inbox = self._calls.pop(request_id, None)
        if inbox:
            inbox.abandon()
        if not self.closed:
            cancel_id = next(self._ids)  # its answer finds no call and is dropped
            self._writer.write(protocol.encode_request(cancel_id, "cancel", {"id": request_id}))

    async def close(self) -> None:
        self._lost(ConnectionError("client closed"))
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read_loop(self) -> None:
        reason: Exception | None = None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                if not line.endswith(b"\n"):
                    break  # the connection ended inside a message
                routed = protocol.route_line(line)
                if routed is None:
                    continue
                request_id, kind, payload = routed
                if kind == "chunk":
                    inbox = self._calls.get(request_id)
                    if inbox:
                        await inbox.push_chunk(payload)
                else:
                    inbox = self._calls.pop(request_id, None)
                    if inbox:
                        inbox.end(kind, payload)
        except (OSError, ValueError) as e:  # ValueError: a line over the limit, or not JSON
            reason = e
        self._lost(reason)

    def _lost(self, reason: Exception | None) -> None:
        self.closed = True
        calls, self._calls = self._calls, {}
        detail = f": {reason}" if reason else ""
        for inbox in calls.values():
            inbox.end("lost", ConnectionLostError(f"connection to {self.path} lost{detail}", self.path))


def _outcome(kind: str, payload: Any) -> Any:
    if kind == "result":
        return payload
    if kind == "error":
        raise DroverError.from_reply(payload)
    raise payload


async def _pop(conn: _AsyncConnection, request_id: int, inbox: _AsyncInbox,
               deadline: float | None, timeout: float | None) -> tuple[str, Any]:
    """The call's next item; a deadline that passes, or the awaiting task being cancelled,
    cancels the call at droverd."""
    try:
        item = await inbox.pop(deadline)
    except asyncio.CancelledError:
        conn.cancel(request_id)
        raise
    if item is None:
        conn.cancel(request_id)
        raise client_timeout(timeout or 0)
    return item


class AsyncStream:
    """The chunks of a streamed generate (`async for`); `result` is the final result once the
    iteration has ended. aclose() (or leaving an `async with` block) before the end cancels the
    generation at droverd, and so does cancelling the task that iterates."""

    def __init__(self, client: "AsyncClient", params: dict[str, Any], timeout: float | None):
        self._client = client
        self._params = params
        self._timeout = timeout
        self._deadline: float | None = None
        self._conn: _AsyncConnection | None = None
        self._id = 0
        self._inbox: _AsyncInbox | None = None
        self._done = False
        self.result: dict[str, Any] | None = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._done:
            raise StopAsyncIteration
        if self._inbox is None:  # sent on the first iteration
            if self._timeout is not None:
                self._deadline = time.monotonic() + self._timeout
            self._conn = await self._client._connection()
            self._id, self._inbox = await self._conn.start("generate", self._params)
        try:
            kind, payload = await _pop(self._conn, self._id, self._inbox, self._deadline, self._timeout)
        except BaseException:
            self._done = True
            raise
        if kind == "chunk":
            return payload
        self._done = True
        self.result = _outcome(kind, payload)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            if self._conn is not None:
                self._conn.cancel(self._id)

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class AsyncClient(ClientSettings):
    """asyncio client of droverd's JSON-RPC API (docs/API.md); use from one event loop.

    Arguments: settings.ClientSettings, as Client's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._retired: list[_AsyncConnection] = []  # still finishing their calls
        self._conn: _AsyncConnection | None = None
        self._connecting: asyncio.Future[_AsyncConnection] | None = None
        self._closed = False

    async def __aenter__(self) -> "AsyncClient":
        await self._connection()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        conns, self._conn, self._retired = [self._conn, *self._retired], None, []
        for conn in conns:
            if conn:
                await conn.close()

    async def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Any method; returns its result or raises DroverError."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        sent = 0
        while True:
            conn = await self._connection()
            sent += 1
            try:
                request_id, inbox = await conn.start(method, params)
                return _outcome(*await _pop(conn, request_id, inbox, deadline, timeout))
            except (ConnectionLostError, DroverError) as e:
                if not self._retry.resend(e, conn, method, params, sent, deadline):
                    raise

    async def generate(self, prompt: str | None = None, *, timeout: float | None = None,
                       **params: Any) -> dict[str, Any]:
        return await self.call("generate", protocol.generate_params(prompt, params, False), timeout=timeout)

    def stream(self, prompt: str | None = None, *, timeout: float | None = None, **params: Any) -> AsyncStream:
        return AsyncStream(self, protocol.generate_params(prompt, params, True),
                           self.timeout if timeout is None else timeout)

    async def tokenize(self, text: str, *, model: str | None = None, timeout: float | None = None) -> list[int]:
        params: dict[str, Any] = {"text": text}
        if model is not None:
            params["model"] = model
        return (await self.call("tokenize", params, timeout=timeout))["tokens"]

    async def detokenize(self, tokens: list[int], *, model: str | None = None,
                         timeout: float | None = None) -> str:
        params: dict[str, Any] = {"tokens": list(tokens)}
        if model is not None:
            params["model"] = model
        return (await self.call("detokenize", params, timeout=timeout))["text"]

    async def health(self, *, timeout: float | None = None) -> dict[str, Any]:
        return await self.call("health", timeout=timeout)

    async def models(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        return (await self.call("models.list", timeout=timeout))["models"]

    async def _connection(self) -> _AsyncConnection:
        if self._closed:
            raise DroverConnectionError("client is closed", self.socket_path)
        if self._conn is not None and self._conn.retired:
            self._retired.append(self._conn)  # droverd closes it once its calls are done
            self._conn = None
        ended = [c for c in self._retired if c.closed]
        self._retired = [c for c in self._retired if not c.closed]
        for old in ended:
            await old.close()  # frees its socket; its reader has ended
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._connecting is None:  # one (re)connection shared by the calls that wait for it
            self._connecting = asyncio.ensure_future(
                _AsyncConnection.open(self._address, self._tls, self.connect_timeout, self._max_buffered))
        connecting = self._connecting
        try:
            conn = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        old, self._conn = self._conn, conn
        if old is not None and old is not conn:
            await old.close()
        return conn
