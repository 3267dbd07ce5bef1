"""Which failed calls the client may send again on a new connection, when `retry_safe` is on
(docs/API.md, "What the client libraries add").

- A call droverd refused before starting it because it is draining (-32009 with
  `data.started == false`) never ran: any method may be sent again, to another droverd.
- A call whose connection broke while it was in flight may have run. It is sent again only if
  running it twice is harmless and gives the same answer: `generate` with a `seed` (not
  streamed: its chunks may have been handed out already), `tokenize`, `detokenize`, and the
  read-only `health` and `models.list`.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from .errors import SHUTTING_DOWN, ConnectionLostError, DroverError

SAFE_METHODS = frozenset({"tokenize", "detokenize", "health", "models.list"})
DEFAULT_ATTEMPTS = 3  # the first sending and two more


def safe_to_repeat(method: str, params: Any) -> bool:
    if method in SAFE_METHODS:
        return True
    return (method == "generate" and isinstance(params, dict) and params.get("seed") is not None
            and not params.get("stream"))


def never_started(error: BaseException) -> bool:
    """droverd refused the call at admission because it is draining: it did not run."""
    return (isinstance(error, DroverError) and error.code == SHUTTING_DOWN and isinstance(error.data, dict)
            and error.data.get("started") is False)


def may_resend(error: BaseException, method: str, params: Any) -> bool:
    return never_started(error) or (isinstance(error, ConnectionLostError) and safe_to_repeat(method, params))


class RetryPolicy:
    """A client's retry_safe setting and the count of calls it sent again (thread-safe)."""

    def __init__(self, enabled: bool, attempts: int):
        self.enabled = enabled
        self.attempts = max(1, attempts)
        self.retries = 0
        self._lock = threading.Lock()

    def resend(self, error: BaseException, conn: Any, method: str, params: Any, sent: int,
               deadline: float | None) -> bool:
        """Whether a call that failed after `sent` sendings goes out again (on a new connection).
        A refusal by a draining droverd retires `conn`: no new calls go to it."""
        if not self.enabled or sent >= self.attempts or not may_resend(error, method, params):
            return False
        if deadline is not None and time.monotonic() >= deadline:
            return False
        with self._lock:
            self.retries += 1
        if never_started(error):
            conn.retired = True
        return True
