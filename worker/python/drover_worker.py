"""drover worker SDK: turn a Python inference engine into a drover worker.

droverd spawns each worker from ``workers.command`` with ``DROVER_CONTROL_SOCKET`` (a Unix socket
path) and ``DROVER_WORKER_ID`` in the environment, and speaks JSON-RPC 2.0 to it over that socket,
one JSON object per line (proto/README.md, "Worker protocol", documents every message). This
module implements that protocol with the Python 3.11 standard library only; an engine author
subclasses :class:`Worker`, implements a few callbacks and calls :func:`main`::

    class MyWorker(Worker):
        def load(self, settings):                  # on init; raise to fail init
            self.engine = load_my_engine()
            return ["my-model"]                    # the model ids served
        def generate(self, request):               # a generator of text pieces
            for piece in self.engine.stream(request.prompt, seed=request.seed):
                yield piece
        def tokenize(self, model, text):
            return self.engine.encode(text)
        def detokenize(self, model, tokens):
            return self.engine.decode(tokens)

    if __name__ == "__main__":
        main(MyWorker())

What the SDK does for the engine:

- the handshake (``hello``, then ``init`` -> :meth:`Worker.load` -> the reply that marks the
  worker ready), heartbeats every ``heartbeat_interval_ms`` from a background thread (in-flight
  and queued requests, RSS from /proc/self/statm, models, tokens/s, and a ``progress`` counter of
  pieces produced plus requests answered that droverd's stall detector watches);
- ``generate``: validates the params into a :class:`GenerateRequest`, runs the engine's generator
  on its own thread, streams each piece as a ``generate.chunk`` notification when the request
  streams, accumulates the text, applies ``max_tokens`` and ``stop`` strings when the engine does
  not (text that might begin a stop string is held back, so the chunks always concatenate to the
  final text), checks for cancellation between pieces, and replies ``{text, finish_reason,
  usage}`` with ``finish_reason`` ``length`` / ``stop`` / ``cancelled``;
- JSON-RPC batch arrays (droverd's batch queue; ``capabilities.batch`` in hello): each member is
  served as if it came alone, except that an engine implementing :meth:`Worker.generate_batch`
  gets the unstreamed ``generate`` calls together in one call (streams still go to
  :meth:`Worker.generate`); :attr:`Worker.max_batch` goes to droverd in the init reply;
- ``batch_tokenize`` and ``detokenize`` through :meth:`Worker.tokenize` / :meth:`Worker.detokenize`,
  ``load_model`` / ``unload_model`` through the optional callbacks of the same names;
- requests naming a model the worker has not loaded get ``-32006 {model}``; bad params
  ``-32602 {detail}``; unknown methods ``-32601 {method}``; an exception escaping a callback
  ``-32603`` (and a traceback on stderr); a callback may raise :class:`WorkerError` to choose
  the error itself;
- ``cancel`` sets the request's cancel flag; ``shutdown`` lets in-flight requests finish, closes
  the socket and exits 0; end of file on the socket (droverd went away) cancels what is held and
  exits 0; malformed input from droverd is logged to stderr and exits 1; ``inject`` enacts
  ``crash``, ``hang``, ``garbage`` and ``stall`` for chaos drills (``slow`` is ignored).

Threads: the main thread reads the socket and dispatches; every request except ``init`` runs on
a request thread (reused; a new one when none is idle), so cancels and heartbeats are served
while an engine computes; one thread sends heartbeats. Writes to the socket are serialised by
one lock, so a request's chunks and its reply leave in order. Callbacks may therefore be called
concurrently from several threads; an engine that is not thread-safe sets
:attr:`Worker.max_concurrency` to 1 and the SDK queues generate calls (the queue shows in
heartbeats as ``queue_depth``). All request threads are joined before the process exits.

stdout and stderr of a worker go to droverd's log, prefixed with the worker's slot and pid.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, NoReturn, TypeGuard

__all__ = [
    "PROTOCOL_VERSION",
    "Completion",
    "GenerateRequest",
    "StopScanner",
    "InitSettings",
    "InvalidParams",
    "Piece",
    "UnknownModel",
    "Worker",
    "WorkerError",
    "WorkerRuntime",
    "main",
]

# --- protocol constants (proto/worker_codec.hpp, common/error_codes.hpp) -----------------------

PROTOCOL_VERSION: Final = 1
ENV_WORKER_ID: Final = "DROVER_WORKER_ID"
ENV_CONTROL_SOCKET: Final = "DROVER_CONTROL_SOCKET"
# A message from droverd larger than this is malformed (droverd applies the same limit to us).
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024

INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
UNKNOWN_MODEL: Final = -32006
SHUTTING_DOWN: Final = -32009

# Faults the ``inject`` notification enacts (reported in the init reply as ``faults``).
INJECTABLE_FAULTS: Final = ("crash", "hang", "garbage", "stall")

# Exit code of an injected crash; the C++ runtime uses the same, so logs read alike.
CRASH_EXIT_CODE: Final = 86
# How long the exit path waits for request threads after cancelling them. An engine that ignores
# cancellation for longer than this is abandoned (the process exits with os._exit).
EXIT_JOIN_TIMEOUT_S: Final = 10.0
# generate defaults when droverd leaves a param out (it always sends them today).
DEFAULT_MAX_TOKENS: Final = 64
DEFAULT_TEMPERATURE: Final = 0.8
DEFAULT_TOP_P: Final = 0.95

_READ_SIZE: Final = 64 * 1024
_GARBAGE: Final = b"\x01\xff{not json at all}\n"

_log = logging.getLogger("drover.worker")


# --- errors -----------------------------------------------------------------------------------


class WorkerError(Exception):
    """A JSON-RPC error for one request. Raise it from a callback to answer with this error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class InvalidParams(WorkerError):
    """-32602 with ``data.detail`` saying which param is wrong and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(INVALID_PARAMS, "Invalid params", {"detail": detail})


class UnknownModel(WorkerError):
    """-32006 with ``data.model``: the request names a model this worker does not serve."""

    def __init__(self, model: str) -> None:
        super().__init__(UNKNOWN_MODEL, f"Unknown model '{model}'", {"model": model})


class ProtocolError(Exception):
    """droverd sent something that is not the worker protocol; the worker exits 1."""


# --- what the callbacks see ----------------------------------------------------------------


@dataclass(frozen=True)
class InitSettings:
    """The ``init`` request's params, given to :meth:`Worker.load`."""

    worker_id: int
    generation: int
    backend: str
    heartbeat_interval_ms: int
    transport: str
    raw: Mapping[str, Any]  # every param as received, for keys this SDK does not know yet


class Piece(NamedTuple):
    """A piece of generated text worth ``tokens`` tokens.

    A generator may yield plain ``str`` (one token each) or a ``Piece`` when one piece stands for
    several tokens (engines that emit text deltas, e.g. vLLM), so ``max_tokens`` and
    ``usage.completion_tokens`` count tokens, not pieces.
    """

    text: str
    tokens: int = 1


class Completion(NamedTuple):
    """One request's result from :meth:`Worker.generate_batch` (a plain ``str`` is a
    ``Completion`` with the defaults).

    ``finish_reason`` is ``"stop"`` (the engine ended the text: end of sequence), ``"length"``
    (it stopped at ``max_tokens``) or ``"cancelled"``; the SDK turns it into ``"stop"`` when it
    cuts the text at one of the request's stop strings. ``completion_tokens`` None: the SDK
    counts ``len(tokenize(model, text))`` (0 without a tokenizer).
    """

    text: str
    finish_reason: str = "stop"
    completion_tokens: int | None = None


@dataclass(eq=False)
class GenerateRequest:
    """One ``generate`` call, validated. Given to :meth:`Worker.generate`.

    ``model`` is resolved: the requested id, or the worker's first model when the request names
    none. ``seed`` is always set (droverd assigns one when the client does not): given a seed,
    an engine must produce the same text, because droverd resumes a broken stream on another
    worker by replaying it with the same seed.
    """

    id: int
    model: str
    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: tuple[str, ...]
    stream: bool
    params: Mapping[str, Any]  # the params as received
    # The engine may set this (it has tokenized the prompt anyway); otherwise the SDK counts
    # len(tokenize(model, prompt)) for usage.prompt_tokens (0 if tokenize is not implemented).
    prompt_tokens: int | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once droverd has cancelled the request (or the worker is going away)."""
        return self._cancel.is_set()

    def wait_cancelled(self, timeout: float | None) -> bool:
        """Sleeps up to ``timeout`` seconds, waking early on cancel; returns ``cancelled``.

        Use it instead of time.sleep for pacing, so a cancel takes effect at once.
        """
        return self._cancel.wait(timeout)


class Worker:
    """Base class of an engine. Subclass it and implement the callbacks an engine has.

    Every callback may raise :class:`WorkerError` to answer with a specific error; any other
    exception becomes ``-32603 Internal error`` for that request (``load`` failing fails init,
    and droverd replaces the worker). Callbacks other than ``load`` and ``close`` may run
    concurrently on several threads (see :attr:`max_concurrency`).
    """

    #: How many generate calls may run at once; None for no limit. Others wait in a queue
    #: (reported as heartbeat queue_depth) and can be cancelled while they wait.
    max_concurrency: int | None = None

    #: The most generate calls the engine computes together, sent to droverd in the init reply
    #: (``max_batch``): droverd's batch queue never sends a batch larger than this. None: no
    #: limit stated (batches are the queue's own size).
    max_batch: int | None = None

    def load(self, settings: InitSettings) -> Sequence[str] | Mapping[str, Any]:
        """Loads the engine and its models; returns the model ids served (the first is the
        default for requests that name none).

        May instead return a mapping with a ``models`` list and extra keys (e.g. ``warmup_ms``),
        all of which go into the init reply. Raise to fail init.
        """
        raise NotImplementedError

    def generate(self, request: GenerateRequest) -> Iterable[str | Piece]:
        """Produces the completion as pieces of text, usually a generator yielding per token.

        The SDK stops pulling (and closes the generator, so its ``finally`` runs) on
        ``max_tokens``, on a stop string or on cancel. Ending early on its own (an
        end-of-sequence token) is reported as ``finish_reason: "stop"``. An engine that blocks
        for long between pieces should poll ``request.cancelled``.
        """
        raise NotImplementedError

    def generate_batch(
        self, requests: Sequence[GenerateRequest]
    ) -> Sequence[str | Completion | WorkerError]:
        """Optional: computes several unstreamed generate calls together (an engine that
        batches: vLLM, MLX, transformers). Returns one result per request, in order: the
        completion's text (``str`` or :class:`Completion`), or a :class:`WorkerError` that
        answers that request alone.

        When implemented, every generate call with ``stream: false`` comes here — the members
        of one batch from droverd's batch queue together, a lone call as a batch of one — and
        streamed calls still go to :meth:`generate`, one by one. The engine applies
        ``max_tokens`` itself (the SDK cannot cut text it gets whole) and should seed each
        request by its own ``seed``; the SDK applies stop strings and counts usage. Raising
        answers every request of the batch with that error. Runs on one request thread and
        takes one :attr:`max_concurrency` slot per batch.
        """
        raise NotImplementedError

    def tokenize(self, model: str, text: str) -> Sequence[int]:
        """The token ids of ``text`` under ``model`` (``batch_tokenize`` calls it per text)."""
        raise NotImplementedError

    def detokenize(self, model: str, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` under ``model``."""
        raise NotImplementedError

    def load_model(self, model: str, params: Mapping[str, Any]) -> None:
        """Optional: loads another model at droverd's request (``load_model``)."""
        raise NotImplementedError

    def unload_model(self, model: str) -> None:
        """Optional: releases a model at droverd's request (``unload_model``)."""
        raise NotImplementedError

    def resolve_model(self, requested: str, loaded: Sequence[str]) -> str:
        """Maps a request's ``model`` param to the id passed to the callbacks.

        The default serves loaded models only: "" means the first loaded model, an id not
        loaded raises :class:`UnknownModel`. Override to load models on demand.
        """
        if not requested:
            return loaded[0] if loaded else ""
        if requested not in loaded:
            raise UnknownModel(requested)
        return requested

    def count_prompt_tokens(self, request: GenerateRequest) -> int:
        """usage.prompt_tokens when the engine did not set ``request.prompt_tokens``."""
        try:
            return len(self.tokenize(request.model, request.prompt))
        except NotImplementedError:
            return 0

    def close(self) -> None:
        """Called once before the process exits, after every request thread has ended."""

    def run(self) -> int:
        """Serves droverd on the control socket named in the environment; the exit code
        (2 when the environment does not name one: the script was not started by droverd)."""
        try:
            runtime = WorkerRuntime.from_environment(self)
        except (KeyError, ValueError) as e:
            _log.error(
                "%s and %s must be set (droverd sets them): %s",
                ENV_CONTROL_SOCKET,
                ENV_WORKER_ID,
                e,
            )
            return 2
        return runtime.run()


def main(worker: Worker) -> NoReturn:
    """Entry point for a worker script: logs to stderr, serves, exits with the runtime's code."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    sys.exit(worker.run())


# --- internals ----------------------------------------------------------------------------


def _encode(message: Mapping[str, Any]) -> bytes:
    # ensure_ascii=False keeps frames short; "replace" turns lone surrogates (which no JSON
    # parser accepts) into "?", the same way in chunks and in the final text.
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", errors="replace") + b"\n"


def _chunk_frame(request_id: int, index: int, text: str) -> bytes:
    # The hottest message, formatted directly: a third of the cost of _encode (measured 1.4 us
    # against 4 us per chunk), which is a third of the SDK's whole per-token cost.
    body = json.dumps(text, ensure_ascii=False)
    return (
        f'{{"jsonrpc":"2.0","method":"generate.chunk","params":'
        f'{{"id":{request_id},"index":{index},"text":{body}}}}}\n'
    ).encode("utf-8", errors="replace")


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            fields = statm.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0  # not Linux: the heartbeat reports no RSS rather than failing


def _is_uint(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _param_int(params: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidParams(f"{name} must be an integer >= {minimum}")
    return value


def _param_float(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidParams(f"{name} must be a number")
    return float(value)


def _param_bool(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise InvalidParams(f"{name} must be a boolean")
    return value


def _param_str_list(params: Mapping[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParams(f"{name} must be a list of strings")
    return value


def _param_int_list(params: Mapping[str, Any], name: str) -> list[int]:
    value = params.get(name)
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise InvalidParams(f"{name} must be a list of integers")
    return value


def _param_model_id(params: Mapping[str, Any]) -> str:
    value = params.get("model")
    if not isinstance(value, str) or not value:
        raise InvalidParams("model must be a non-empty model id")
    return value


def _param_object(params: Any, method: str) -> Mapping[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParams(f"{method} params must be an object")
    return params


class StopScanner:
    """Assembles generated pieces into the final text under stop strings.

    ``add`` returns the text that may be streamed now: everything up to the first occurrence of
    a stop string (which ends the text and is never returned), minus a tail that could still
    grow into one. ``flush`` releases that tail when the generation ends otherwise, so what is
    released always concatenates to ``text``. Worked example with ``stop=["END"]``:
    add("abE") -> "ab" (holds "E"); add("N") -> "" (holds "EN"); add("Dx") -> "", ``stopped``
    is True and ``text`` is "ab". Had the third piece been "o", add would release "ENo".
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = [s for s in stop if s]
        self._released: list[str] = []  # kept as parts: str += is quadratic on attributes
        # The held-back tail: the longest suffix of the text that is a proper prefix of a stop
        # string. A stop string can only start inside it (an earlier start would make a longer
        # such suffix), so each add searches this tail plus the new piece, never the whole text.
        self._pending = ""
        self.stopped = False

    @property
    def text(self) -> str:
        """The text so far: up to a stop string when one was found."""
        return "".join(self._released) + self._pending

    def add(self, piece: str) -> str:
        if self.stopped:
            return ""
        if not self._stop:
            self._released.append(piece)
            return piece
        window = self._pending + piece
        first = -1
        for s in self._stop:
            at = window.find(s)
            if at >= 0 and (first < 0 or at < first):
                first = at
        if first >= 0:
            self.stopped = True
            self._pending = ""
            return self._release(window[:first])
        held = self._held_tail(window)
        self._pending = window[len(window) - held :]
        return self._release(window[: len(window) - held])

    def flush(self) -> str:
        """Releases the held-back tail (the generation ended without a stop string)."""
        out, self._pending = self._pending, ""
        return self._release(out)

    def _held_tail(self, window: str) -> int:
        held = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(window)), held, -1):
                if window.endswith(s[:k]):
                    held = k
                    break
        return held

    def _release(self, out: str) -> str:
        if out:
            self._released.append(out)
        return out


class _EngineSlots:
    """Bounds concurrent generate calls (Worker.max_concurrency); waiters can be cancelled."""

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._busy = 0
        self._waiting = 0
        self._cond = threading.Condition()

    @property
    def waiting(self) -> int:
        with self._cond:
            return self._waiting

    def acquire(self, cancelled: Callable[[], bool]) -> bool:
        """Takes a slot (-> True) or gives up once ``cancelled()`` (-> False). Cancel flags
        are re-checked whenever :meth:`wake` is called."""
        if self._limit is None:
            return True
        limit: int = self._limit
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._busy < limit or cancelled())
                if cancelled():
                    return False
                self._busy += 1
                return True
            finally:
                self._waiting -= 1

    def release(self) -> None:
        if self._limit is None:
            return
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        """Lets waiters re-check their cancel flags."""
        with self._cond:
            self._cond.notify_all()


class _RequestThreads:
    """Runs request jobs on reusable threads, so a request does not pay for starting one.

    A job goes to an idle thread when there is one and to a new thread otherwise: concurrency is
    never capped here (droverd's max_inflight caps what a worker holds), so a long stream never
    delays a tokenize or a cancel's reply. Threads stay until :meth:`stop`; their number is the
    most requests ever held at once.

    Invariant (under ``_lock``): every job in ``_jobs`` has a thread that will take it, because
    :meth:`submit` either reserves an idle thread (``_idle -= 1``) or starts one, and a thread
    counts itself idle only once its job is done and before it waits for the next.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            else:
                t = threading.Thread(target=self._loop, name=f"drover-request-{len(self._threads)}")
                self._threads.append(t)
                t.start()
        self._jobs.put(job)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()
            with self._lock:
                self._idle += 1

    def stop(self, timeout: float) -> list[str]:
        """Ends every thread once its current job is done; the names of those still running
        after ``timeout`` seconds."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]


class WorkerRuntime:
    """The protocol side of a worker: one control connection, driven by :meth:`run`.

    Threads: :meth:`run` reads on the calling thread; request threads and the heartbeat thread
    write. ``_lock`` guards the held requests, the counters, the models and the lifecycle flags;
    ``_write_lock`` guards the socket's write side and ``_write_closed``. The two are never held
    together (only ``_EngineSlots``' own lock is taken under ``_lock``), so there is no lock order
    to get wrong.
    """

    def __init__(
        self,
        worker: Worker,
        control_socket: str,
        worker_id: int,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._worker = worker
        self._path = control_socket
        self._worker_id = worker_id
        self._max_message_bytes = max_message_bytes
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._write_lock = threading.Lock()
        self._write_closed = False
        self._lock = threading.Lock()
        self._held: dict[int, threading.Event] = {}  # request id -> its cancel flag
        self._threads = _RequestThreads()
        self._models: list[str] = []
        self._progress = 0
        self._tokens_since_heartbeat = 0
        self._ready = False
        self._initialising = False
        self._stopping = False
        self._heartbeat_interval_s = 1.0
        self._heartbeat_thread: threading.Thread | None = None
        self._closing = threading.Event()  # set on the way out: heartbeats stop
        self._stalled = threading.Event()  # injected stall: generation pauses until cancelled
        self._slots = _EngineSlots(worker.max_concurrency)
        # The engine takes unstreamed generate calls together (it overrides generate_batch).
        self._batched_engine = type(worker).generate_batch is not Worker.generate_batch

    @classmethod
    def from_environment(cls, worker: Worker) -> WorkerRuntime:
        """Reads DROVER_CONTROL_SOCKET and DROVER_WORKER_ID (raises KeyError/ValueError)."""
        path = os.environ[ENV_CONTROL_SOCKET]
        worker_id = int(os.environ.get(ENV_WORKER_ID, "0"))
        return cls(worker, path, worker_id)

    # --- lifecycle ---

    def run(self) -> int:
        """Connects, says hello and serves until shutdown, end of file or malformed input.

        Returns the exit code: 0 after shutdown or when droverd closed the socket, 1 when the
        socket cannot be reached or droverd sent something malformed.
        """
        try:
            self._sock.connect(self._path)
        except OSError as e:
            _log.error("cannot connect to %s: %s", self._path, e)
            self._sock.close()
            return 1
        # Models are known once init has loaded them, so they come in the init reply.
        self._send(
            {
                "jsonrpc": "2.0",
                "method": "hello",
                "params": {
                    "worker_id": self._worker_id,
                    "pid": os.getpid(),
                    "protocol": PROTOCOL_VERSION,
                    "capabilities": {
                        "shm": False,
                        "batch_tokenize": True,
                        "batch": True,
                        "stream": True,
                        "models": [],
                    },
                },
            }
        )
        try:
            self._read_loop()
            code = 0
        except ProtocolError as e:
            _log.error("malformed input from supervisor: %s", e)
            code = 1
        return self._finish(code)

    def _finish(self, code: int) -> int:
        self._closing.set()
        with self._lock:
            held = list(self._held.values())
        if held:
            _log.info("cancelling %d held requests", len(held))
        for cancel in held:
            cancel.set()
        self._slots.wake()
        try:
            # Ends the connection both ways without the write lock, which a thread blocked in
            # sendall (a peer that stopped reading) may hold: that send now fails with EPIPE.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                raise
        deadline = time.monotonic() + EXIT_JOIN_TIMEOUT_S
        alive = self._threads.stop(EXIT_JOIN_TIMEOUT_S)
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(max(0.0, deadline - time.monotonic()))
            if self._heartbeat_thread.is_alive():
                alive.append(self._heartbeat_thread.name)
        with self._write_lock:
            self._write_closed = True
            self._sock.close()
        if alive:
            # The engine ignores cancellation; nothing more can be answered, so do not wait.
            _log.error("threads still running at exit: %s", alive)
            sys.stderr.flush()
            os._exit(code)
        self._worker.close()
        return code

    # --- reading ---

    def _read_loop(self) -> None:
        """Reads NDJSON until end of file (returns) or malformed input (ProtocolError)."""
        buf = bytearray()
        scanned = 0  # bytes of buf known to hold no newline
        while True:
            try:
                data = self._sock.recv(_READ_SIZE)
            except ConnectionResetError:
                data = b""
            if not data:
                with self._lock:
                    stopping = self._stopping
                if not stopping:
                    _log.info("control socket closed; exiting")
                return
            buf += data
            start = 0
            while (nl := buf.find(b"\n", max(start, scanned))) >= 0:
                line = bytes(buf[start:nl])
                start = nl + 1
                scanned = start
                if len(line) > self._max_message_bytes:
                    raise ProtocolError(
                        f"message of {len(line)} bytes over {self._max_message_bytes}"
                    )
                if line.strip():
                    self._handle(line)
            del buf[:start]
            scanned = len(buf)
            if len(buf) > self._max_message_bytes:
                raise ProtocolError(
                    f"message over {self._max_message_bytes} bytes without a newline"
                )

    def _handle(self, line: bytes) -> None:
        try:
            msg = json.loads(line.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError both
            raise ProtocolError(f"not JSON ({e}): {line[:200]!r}") from None
        self._handle_messages(msg if isinstance(msg, list) else [msg], line)

    def _check_message(
        self, msg: Any, line: bytes
    ) -> tuple[str, Any, int | None] | None:
        """(method, params, id or None for a notification) of a valid message; None for a
        reply to ignore; raises ProtocolError for anything that is not the protocol."""
        if not isinstance(msg, dict):
            raise ProtocolError(f"not a JSON object: {line[:200]!r}")
        if msg.get("jsonrpc") != "2.0":
            raise ProtocolError(f'jsonrpc is not "2.0": {line[:200]!r}')
        method = msg.get("method")
        if method is None:
            if ("result" in msg or "error" in msg) and _is_uint(msg.get("id")):
                # A well-formed reply; droverd sends none today, so there is nothing it answers.
                _log.warning("ignoring a reply from the supervisor")
                return None
            raise ProtocolError(f"neither a request nor a reply: {line[:200]!r}")
        if not isinstance(method, str):
            raise ProtocolError(f"method is not a string: {line[:200]!r}")
        if "id" not in msg:
            return method, msg.get("params"), None
        request_id = msg["id"]
        if not _is_uint(request_id):
            raise ProtocolError(f"request id is not an unsigned integer: {line[:200]!r}")
        return method, msg.get("params"), request_id

    def _handle_messages(self, messages: list[Any], line: bytes) -> None:
        """One message, or a JSON-RPC batch from droverd's batch queue (proto/README.md,
        "Batches").

        Every member is checked before any is served (an invalid member makes the whole line
        garbage, as droverd treats it). Members are then served in array order as if each had
        come alone and answered one by one, except the unstreamed ``generate`` calls when the
        engine implements :meth:`Worker.generate_batch`: those go to it together, in one call
        (a lone one as a batch of one, so the engine has one path).
        """
        if not messages:
            raise ProtocolError("an empty batch")
        members = [self._check_message(m, line) for m in messages]
        batch: list[GenerateRequest] = []
        for member in members:
            if member is None:
                continue
            method, params, request_id = member
            if request_id is None:
                self._on_notification(method, params)
                continue
            try:
                if method == "generate" and self._batched_engine:
                    self._check_serving()
                    request = self._parse_generate(request_id, _param_object(params, method))
                    if request.stream:
                        self._spawn_generate(request)
                    else:
                        batch.append(request)
                else:
                    self._on_request(request_id, method, params)
            except WorkerError as e:
                self._reply_error(request_id, e)
        if batch:
            self._spawn_batch(batch)

    # --- notifications ---

    def _on_notification(self, method: str, params: Any) -> None:
        if method == "cancel":
            target = params.get("id") if isinstance(params, dict) else None
            if _is_uint(target):
                with self._lock:
                    cancel = self._held.get(target)
                if cancel is not None:
                    cancel.set()
                    self._slots.wake()
        elif method == "shutdown":
            _log.info("shutdown requested")
            with self._lock:
                self._stopping = True
            self._close_if_drained()
        elif method == "inject":
            fault = params.get("fault") if isinstance(params, dict) else None
            self._inject(fault if isinstance(fault, str) else "")
        else:
            _log.warning("unknown notification '%s' ignored", method)

    def _inject(self, fault: str) -> None:
        if fault == "crash":
            _log.warning("injected crash")
            sys.stderr.flush()
            os._exit(CRASH_EXIT_CODE)
        elif fault == "hang":
            _log.warning("injected hang")
            # Holding the write lock forever silences heartbeats and replies alike; this thread
            # never reads again. Only a signal ends the process now.
            self._write_lock.acquire()
            threading.Event().wait()
        elif fault == "garbage":
            _log.warning("injected garbage")
            with self._write_lock:
                if not self._write_closed:
                    self._sock.sendall(_GARBAGE)
        elif fault == "stall":
            _log.warning("injected stall")
            self._stalled.set()
        else:
            _log.warning("fault '%s' cannot be enacted; ignored", fault)

    # --- requests ---

    def _on_request(self, request_id: int, method: str, params: Any) -> None:
        """Answers at once or hands the request to a thread; raises WorkerError to refuse it."""
        if method == "init":
            self._on_init(request_id, params)
            return
        self._check_serving()
        p = _param_object(params, method)
        if method == "generate":
            self._spawn_generate(self._parse_generate(request_id, p))
        elif method == "batch_tokenize":
            model = self._model_of(p)
            texts = _param_str_list(p, "texts")
            self._spawn(request_id, method, lambda: self._serve_tokenize(model, texts))
        elif method == "detokenize":
            model = self._model_of(p)
            tokens = _param_int_list(p, "tokens")
            self._spawn(request_id, method, lambda: {"text": self._checked_text(model, tokens)})
        elif method == "load_model":
            model = _param_model_id(p)
            self._spawn(request_id, method, lambda: self._serve_load_model(model, p))
        elif method == "unload_model":
            model = _param_model_id(p)
            self._spawn(request_id, method, lambda: self._serve_unload_model(model))
        else:
            raise WorkerError(METHOD_NOT_FOUND, "Method not found", {"method": method})

    def _check_serving(self) -> None:
        with self._lock:
            ready, stopping = self._ready, self._stopping
        if not ready:
            raise WorkerError(INTERNAL_ERROR, "not initialised")
        if stopping:
            raise WorkerError(SHUTTING_DOWN, "Shutting down")

    def _on_init(self, request_id: int, params: Any) -> None:
        with self._lock:
            if self._initialising or self._ready:
                raise WorkerError(INVALID_REQUEST, "already initialised")
            self._initialising = True
        p = _param_object(params, "init")
        interval_ms = p.get("heartbeat_interval_ms", 1000)
        if not _is_uint(interval_ms) or interval_ms == 0:
            raise InvalidParams("heartbeat_interval_ms must be a positive integer")
        settings = InitSettings(
            worker_id=p.get("worker_id", self._worker_id),
            generation=p.get("generation", 0),
            backend=p.get("backend", ""),
            heartbeat_interval_ms=interval_ms,
            transport=p.get("transport", "socket"),
            raw=p,
        )
        # Loading runs on this (the reading) thread: nothing else is served before the worker
        # is ready, and droverd kills a worker whose init takes over workers.start_timeout_ms.
        started = time.monotonic()
        try:
            loaded = self._worker.load(settings)
            reply = self._init_reply(loaded)
        except WorkerError:
            raise
        except Exception as e:
            _log.exception("load failed")
            raise WorkerError(INTERNAL_ERROR, f"load failed: {e}") from None
        reply.setdefault("load_ms", (time.monotonic() - started) * 1000.0)
        # The faults _inject enacts, so droverd refuses the others (slow, and the shm ring
        # faults of the C++ runtime) instead of answering a drill that would do nothing.
        reply["faults"] = list(INJECTABLE_FAULTS)
        max_batch = self._worker.max_batch
        if max_batch is not None:
            if not _is_uint(max_batch) or max_batch == 0:
                raise WorkerError(INTERNAL_ERROR, "Worker.max_batch must be a positive integer")
            reply["max_batch"] = max_batch
        with self._lock:
            self._models = list(reply["models"])
        preload = p.get("preload", {})
        if isinstance(preload, dict) and preload.get("enabled") is True:
            reply["preload"] = self._warm_up(preload, float(reply["load_ms"]))
        with self._lock:
            self._ready = True
            self._heartbeat_interval_s = interval_ms / 1000.0
        _log.info(
            "ready with models %s in %.1f ms",
            reply["models"],
            reply["load_ms"],
        )
        self._reply(request_id, reply)
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name="drover-heartbeat"
        )
        self._heartbeat_thread.start()

    def _warm_up(self, preload: Mapping[str, Any], load_ms: float) -> list[dict[str, Any]]:
        """Runs init's ``preload`` entries before the worker is ready, as the C++ runtime does.

        Each entry ``{model_id, warmup_requests, warmup_prompts, max_tokens}`` names a model
        this worker serves, or a catalog model (the entry then carries its ``spec``: backend,
        path, options), which is loaded first through ``load_model``; its warmup requests go through the same generate path as traffic
        (first use of weights, caches, allocators), so the first client request does not pay
        for them. Each model's line is also sent as a ``model.loaded`` notification. Returns
        the per-model report; with ``fail_fast``, a failed model fails init (-32006).
        """
        fail_fast = preload.get("fail_fast") is True
        entries = preload.get("models", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidParams("preload.models must be a list of objects")
        with self._lock:
            served = list(self._models)
        report: list[dict[str, Any]] = []
        for entry in entries:
            model = entry.get("model_id", "")
            line: dict[str, Any] = {
                "model": model,
                "load_ms": load_ms,
                "warmup_ms": 0.0,
                "ok": True,
            }
            spec = entry.get("spec")
            if model not in served and isinstance(spec, dict):
                # A catalog model: load it first, as load_model would.
                try:
                    started = time.monotonic()
                    self._worker.load_model(model, spec)
                    line["load_ms"] = (time.monotonic() - started) * 1000.0
                    with self._lock:
                        if model not in self._models:
                            self._models.append(model)
                        served = list(self._models)
                except Exception as e:  # noqa: BLE001 - any engine error fails this model's line
                    line["error"] = f"model '{model}' failed to load: {e}"
            if "error" in line:
                line["ok"] = False
            elif model not in served:
                line["ok"] = False
                line["error"] = (
                    f"model '{model}' is not served by this worker (serves: {', '.join(served)})"
                )
            else:
                prompts = entry.get("warmup_prompts") or ["Hello"]
                if not isinstance(prompts, list) or not all(isinstance(x, str) for x in prompts):
                    raise InvalidParams("preload warmup_prompts must be a list of strings")
                count = _param_int(entry, "warmup_requests", 1, 0)
                max_tokens = _param_int(entry, "max_tokens", 8, 1)
                started = time.monotonic()
                for i in range(count):
                    request = GenerateRequest(
                        id=0,
                        model=model,
                        prompt=prompts[i % len(prompts)],
                        max_tokens=max_tokens,
                        temperature=DEFAULT_TEMPERATURE,
                        top_p=DEFAULT_TOP_P,
                        seed=i,
                        stop=(),
                        stream=False,
                        params={},
                    )
                    try:
                        self._serve_generate(request)
                    except Exception as e:  # reported per model, like a failed load
                        _log.exception("warmup of %s failed", model)
                        line["ok"] = False
                        line["error"] = str(e) or type(e).__name__
                        break
                line["warmup_requests"] = count
                line["warmup_ms"] = (time.monotonic() - started) * 1000.0
                self._send({"jsonrpc": "2.0", "method": "model.loaded", "params": line})
            if fail_fast and not line["ok"]:
                raise WorkerError(
                    UNKNOWN_MODEL, f"preload failed: {line.get('error', '')}", {"model": model}
                )
            report.append(line)
        return report

    @staticmethod
    def _init_reply(loaded: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
        reply = dict(loaded) if isinstance(loaded, Mapping) else {"models": loaded}
        models = reply.get("models")
        if isinstance(models, str) or not isinstance(models, Sequence):
            raise TypeError("load() must return a list of model ids (or a mapping with one)")
        if not all(isinstance(m, str) for m in models):
            raise TypeError("model ids must be strings")
        reply["models"] = list(models)
        return reply

    def _model_of(self, params: Mapping[str, Any]) -> str:
        requested = params.get("model", "")
        if not isinstance(requested, str):
            raise InvalidParams("model must be a string")
        with self._lock:
            loaded = list(self._models)
        return self._worker.resolve_model(requested, loaded)

    def _parse_generate(self, request_id: int, p: Mapping[str, Any]) -> GenerateRequest:
        prompt = p.get("prompt")
        if not isinstance(prompt, str):
            raise InvalidParams("generate needs a string prompt")
        stop = p.get("stop", [])
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidParams("stop must be a list of strings")
        return GenerateRequest(
            id=request_id,
            model=self._model_of(p),
            prompt=prompt,
            max_tokens=_param_int(p, "max_tokens", DEFAULT_MAX_TOKENS, 1),
            temperature=_param_float(p, "temperature", DEFAULT_TEMPERATURE),
            top_p=_param_float(p, "top_p", DEFAULT_TOP_P),
            seed=_param_int(p, "seed", 0, 0),
            stop=tuple(s for s in stop if s),
            stream=_param_bool(p, "stream", False),
            params=p,
        )

    def _spawn(
        self,
        request_id: int,
        method: str,
        serve: Callable[[], Mapping[str, Any]],
        cancel: threading.Event | None = None,
    ) -> None:
        self._hold({request_id: cancel if cancel is not None else threading.Event()})
        self._threads.submit(
            lambda: self._answer(request_id, self._outcome(request_id, method, serve))
        )

    def _spawn_generate(self, request: GenerateRequest) -> None:
        self._spawn(request.id, "generate", lambda: self._serve_generate(request), request._cancel)

    def _spawn_batch(self, requests: list[GenerateRequest]) -> None:
        self._hold({r.id: r._cancel for r in requests})
        self._threads.submit(lambda: self._serve_batch(requests))

    def _hold(self, cancels: dict[int, threading.Event]) -> None:
        with self._lock:
            for request_id in cancels:
                if request_id in self._held:
                    raise ProtocolError(f"request id {request_id} is already held")
            self._held.update(cancels)

    def _outcome(
        self, request_id: int, method: str, serve: Callable[[], Mapping[str, Any]]
    ) -> Mapping[str, Any] | WorkerError:
        """Runs a callback; its result, or the error that answers it (exceptions converted)."""
        try:
            return serve()
        except WorkerError as e:
            return e
        except NotImplementedError:  # the engine does not have this callback
            return WorkerError(METHOD_NOT_FOUND, "Method not found", {"method": method})
        except Exception as e:  # an engine bug: answered, logged, the worker lives on
            _log.exception("request %d failed", request_id)
            return WorkerError(
                INTERNAL_ERROR, "Internal error", {"detail": f"{type(e).__name__}: {e}"}
            )

    def _answer(self, request_id: int, outcome: Mapping[str, Any] | WorkerError) -> None:
        """Answers a held request exactly once and forgets it."""
        try:
            if isinstance(outcome, WorkerError):
                self._reply_error(request_id, outcome)
            else:
                self._reply(request_id, outcome)
        finally:
            with self._lock:
                del self._held[request_id]
                self._progress += 1
            self._close_if_drained()

    def _serve_batch(self, requests: list[GenerateRequest]) -> None:
        """A request thread: one generate_batch call for unstreamed generate requests.

        The batch takes one engine slot (max_concurrency). Members cancelled before the engine
        starts are answered ``cancelled`` without reaching it; an exception from the engine
        answers every member with its error; a WorkerError in a member's place answers that
        member alone.
        """
        waiting = list(requests)
        outcomes: dict[int, Mapping[str, Any] | WorkerError] = {}
        try:
            # Members cancelled while the batch waits for a slot are answered at once.
            while waiting and not self._slots.acquire(lambda: any(r.cancelled for r in waiting)):
                for r in [r for r in waiting if r.cancelled]:
                    waiting.remove(r)
                    self._answer(r.id, self._cancelled_before_start(r))
            if not waiting:
                return
            try:
                for r in waiting:
                    if self._stalled.is_set():
                        r.wait_cancelled(None)  # a wedged engine: only cancel ends it
                live = [r for r in waiting if not r.cancelled]
                results = self._outcome(
                    live[0].id if live else 0,
                    "generate",
                    lambda: {"results": self._call_generate_batch(live)},
                )
            finally:
                self._slots.release()
            for i, r in enumerate(live):
                if isinstance(results, WorkerError):
                    outcomes[r.id] = results
                else:
                    result = results["results"][i]
                    outcomes[r.id] = self._outcome(
                        r.id, "generate", lambda r=r, res=result: self._batch_reply(r, res)
                    )
        finally:
            for r in waiting:
                self._answer(r.id, outcomes.get(r.id) or self._cancelled_before_start(r))

    def _cancelled_before_start(self, r: GenerateRequest) -> Mapping[str, Any] | WorkerError:
        return self._outcome(
            r.id, "generate", lambda: self._batch_reply(r, Completion("", "cancelled", 0))
        )

    def _call_generate_batch(self, live: list[GenerateRequest]) -> list[Any]:
        if not live:
            return []
        results = list(self._worker.generate_batch(live))
        if len(results) != len(live):
            raise TypeError(
                f"generate_batch returned {len(results)} results for {len(live)} requests"
            )
        return results

    def _batch_reply(self, request: GenerateRequest, result: Any) -> dict[str, Any]:
        """The reply of one generate_batch result: stop strings applied, usage counted."""
        if isinstance(result, WorkerError):
            raise result
        completion = Completion(result) if isinstance(result, str) else result
        if not isinstance(completion, Completion) or not isinstance(completion.text, str):
            raise TypeError(f"generate_batch gave {result!r}, not str, Completion or WorkerError")
        if completion.finish_reason not in ("stop", "length", "cancelled"):
            raise TypeError(
                f"finish_reason {completion.finish_reason!r} is not stop, length or cancelled"
            )
        scanner = StopScanner(request.stop)
        scanner.add(completion.text)
        finish = "stop" if scanner.stopped else completion.finish_reason
        tokens = completion.completion_tokens
        if tokens is None:
            tokens = self._count_tokens(request.model, scanner.text)
        elif not _is_uint(tokens):
            raise TypeError(f"completion_tokens {tokens!r} is not an unsigned integer")
        with self._lock:
            self._progress += tokens
            self._tokens_since_heartbeat += tokens
        return self._generate_reply(request, scanner.text, finish, tokens)

    def _generate_reply(
        self, request: GenerateRequest, text: str, finish: str, tokens: int
    ) -> dict[str, Any]:
        prompt_tokens = request.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = self._worker.count_prompt_tokens(request)
        return {
            "text": text,
            "finish_reason": finish,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens},
        }

    def _count_tokens(self, model: str, text: str) -> int:
        try:
            return len(self._worker.tokenize(model, text))
        except NotImplementedError:
            return 0

    def _serve_generate(self, request: GenerateRequest) -> dict[str, Any]:
        scanner = StopScanner(request.stop)
        tokens = 0
        chunks = 0
        finish = "length"

        def release(text: str) -> None:
            nonlocal chunks
            if text and request.stream:
                self._send_frame(_chunk_frame(request.id, chunks, text))
                chunks += 1

        if not self._slots.acquire(request._cancel.is_set):
            finish = "cancelled"
        else:
            try:
                pieces: Iterator[str | Piece] = iter(self._worker.generate(request))
                try:
                    while True:
                        if request.cancelled:
                            finish = "cancelled"
                            break
                        if self._stalled.is_set():
                            request.wait_cancelled(None)  # a wedged engine: only cancel ends it
                            continue
                        if tokens >= request.max_tokens:
                            finish = "length"
                            break
                        try:
                            piece = next(pieces)
                        except StopIteration:
                            # The engine ended on its own: an end of sequence, or its answer
                            # to a cancel it noticed first.
                            finish = "cancelled" if request.cancelled else "stop"
                            break
                        text, n = (piece, 1) if isinstance(piece, str) else piece
                        if not isinstance(text, str) or not _is_uint(n):
                            raise TypeError(f"generate yielded {piece!r}, not str or Piece")
                        tokens += n
                        with self._lock:
                            self._progress += n
                            self._tokens_since_heartbeat += n
                        release(scanner.add(text))
                        if scanner.stopped:
                            finish = "stop"
                            break
                finally:
                    close = getattr(pieces, "close", None)
                    if close is not None:
                        close()  # runs the generator's finally: the engine stops its work
            finally:
                self._slots.release()
        release(scanner.flush())
        return self._generate_reply(request, scanner.text, finish, tokens)

    def _serve_tokenize(self, model: str, texts: list[str]) -> dict[str, Any]:
        out: list[list[int]] = []
        for text in texts:
            ids = list(self._worker.tokenize(model, text))
            if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
                raise TypeError("tokenize must return integers")
            out.append(ids)
        return {"tokens": out}

    def _checked_text(self, model: str, tokens: list[int]) -> str:
        text = self._worker.detokenize(model, tokens)
        if not isinstance(text, str):
            raise TypeError("detokenize must return a str")
        return text

    def _serve_load_model(self, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        self._worker.load_model(model, params)
        load_ms = (time.monotonic() - started) * 1000.0
        with self._lock:
            if model not in self._models:
                self._models.append(model)
            models = list(self._models)
        self._send(
            {
                "jsonrpc": "2.0",
                "method": "model.loaded",
                "params": {"model": model, "load_ms": load_ms, "warmup_ms": 0.0},
            }
        )
        return {"model": model, "load_ms": load_ms, "models": models}

    def _serve_unload_model(self, model: str) -> dict[str, Any]:
        with self._lock:
            if model not in self._models:
                raise UnknownModel(model)
        self._worker.unload_model(model)
        with self._lock:
            if model in self._models:
                self._models.remove(model)
            models = list(self._models)
        return {"model": model, "models": models}

    def _close_if_drained(self) -> None:
        """After shutdown, once nothing is held: close the socket, which ends the read loop."""
        with self._lock:
            if not self._stopping or self._held:
                return
        with self._write_lock:
            if self._write_closed:
                return
            self._write_closed = True
            try:
                # Waking the reading thread: its recv returns end of file.
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    raise

    # --- heartbeats ---

    def _heartbeat_loop(self) -> None:
        last = time.monotonic()
        while True:
            now = time.monotonic()
            with self._lock:
                tokens, self._tokens_since_heartbeat = self._tokens_since_heartbeat, 0
                params = {
                    "inflight": len(self._held),
                    "queue_depth": self._slots.waiting,
                    "rss_bytes": _resident_bytes(),
                    "models": list(self._models),
                    "tokens_per_s": tokens / (now - last) if now > last else 0.0,
                    "progress": self._progress,
                }
                interval = self._heartbeat_interval_s
            last = now
            self._send({"jsonrpc": "2.0", "method": "heartbeat", "params": params})
            if self._closing.wait(interval):
                return

    # --- writing ---

    def _reply(self, request_id: int, result: Mapping[str, Any]) -> None:
        self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _reply_error(self, request_id: int, error: WorkerError) -> None:
        self._send({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})

    def _send(self, message: Mapping[str, Any]) -> None:
        self._send_frame(_encode(message))

    def _send_frame(self, data: bytes) -> None:
        with self._write_lock:
            if self._write_closed:
                return
            try:
                self._sock.sendall(data)
            except OSError as e:
                # droverd is gone; the read loop sees end of file and ends the worker.
                self._write_closed = True
                _log.warning("cannot write to the supervisor: %s", e)
