"""Errors raised by drover_client (docs/API.md, "Errors").

DroverError is an error droverd answered (a JSON-RPC error object), or a client-side deadline,
which uses droverd's own timeout code so callers handle both alike. Transport failures are
DroverConnectionError: a connection that cannot be opened, or ConnectionLostError for calls that
were in flight when it dropped (they may or may not have run; the client never re-sends them).
"""
from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 codes and drover's own (common/error_codes.hpp).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
OVERLOADED = -32001
NO_HEALTHY_WORKER = -32002
WORKER_FAILED = -32003
TIMED_OUT = -32004
CANCELLED = -32005
UNKNOWN_MODEL = -32006
MESSAGE_TOO_LARGE = -32007
NOT_PERMITTED = -32008
SHUTTING_DOWN = -32009
SLOW_CONSUMER = -32010


class DroverError(Exception):
    """An error answered by droverd: `code`, `message` and `data` as in the reply."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(f"{message} ({code})" if message else f"error {code}")
        self.code = code
        self.message = message
        self.data = data

    @property
    def retry_after_ms(self) -> int | None:
        """How long droverd asks to wait before retrying (-32001 overloaded, -32002 no healthy
        worker); None for other errors."""
        if isinstance(self.data, dict) and isinstance(self.data.get("retry_after_ms"), (int, float)):
            return int(self.data["retry_after_ms"])
        return None

    @staticmethod
    def from_reply(error: Any) -> "DroverError":
        if not isinstance(error, dict):
            return DroverError(INTERNAL_ERROR, f"malformed error object: {error!r}")
        code = error.get("code")
        return DroverError(code if isinstance(code, int) else INTERNAL_ERROR,
                           str(error.get("message", "")), error.get("data"))


def client_timeout(timeout_s: float) -> DroverError:
    """The error of a call whose client-side deadline passed (the call is cancelled at droverd)."""
    return DroverError(TIMED_OUT, "Timed out", {"timeout_ms": round(timeout_s * 1000), "source": "client"})


class DroverConnectionError(ConnectionError):
    """droverd could not be reached at `socket_path`."""

    def __init__(self, message: str, socket_path: str):
        super().__init__(message)
        self.socket_path = socket_path


class ConnectionLostError(DroverConnectionError):
    """The connection dropped while this call was in flight. Whether droverd ran it is unknown;
    it is not re-sent. The next call opens a new connection."""
