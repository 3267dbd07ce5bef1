"""What both clients share: the socket path default, NDJSON framing of requests, and the
routing of droverd's messages (docs/API.md). No I/O here."""
from __future__ import annotations

import json
import os
from typing import Any

# droverctl's default and environment variable (ctl/main.cpp, common/run_paths.hpp), so a
# program and droverctl on the same machine find the same droverd.
SOCKET_ENV = "DROVER_SERVER_SOCKET"
SOCKET_NAME = "drover.sock"

# A message from droverd longer than this fails the connection (droverd refuses requests over
# 8 MiB by default; a reply this long would be a generate of millions of tokens). AsyncClient's
# stream reader buffers up to twice this before it stops reading the socket.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Chunks a stream may hold unread before the client stops reading its connection (droverd
# then coalesces that connection's chunks, and refuses with -32010 past its own limit).
MAX_BUFFERED_CHUNKS = 1024


def default_run_dir() -> str:
    """droverd's private run directory, by droverd's own rule: $XDG_RUNTIME_DIR/drover, else
    /run/drover as root, else $TMPDIR-or-/tmp/drover-<uid> (docs/SECURITY.md)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return xdg + "/drover"
    if os.geteuid() == 0:
        return "/run/drover"
    return f"{os.environ.get('TMPDIR') or '/tmp'}/drover-{os.geteuid()}"


def default_socket() -> str:
    return os.environ.get(SOCKET_ENV) or f"{default_run_dir()}/{SOCKET_NAME}"


def encode_request(request_id: int | None, method: str, params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if request_id is not None:
        message["id"] = request_id
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def generate_params(prompt: str | None, params: dict[str, Any], stream: bool) -> dict[str, Any]:
    out = dict(params)
    if prompt is not None:
        out["prompt"] = prompt
    out["stream"] = stream
    return out


# A decoded message: (request id it belongs to, kind, payload) with kind one of
# "chunk" (payload: the generate.chunk params), "result", "error" (payload: the error object),
# or None for messages that belong to no request (other notifications).
def route(message: Any) -> tuple[Any, str, Any] | None:
    if not isinstance(message, dict):
        return None
    if "method" in message:
        params = message.get("params")
        if message["method"] == "generate.chunk" and isinstance(params, dict):
            return params.get("id"), "chunk", params
        return None
    if "result" in message:
        return message.get("id"), "result", message["result"]
    if "error" in message:
        return message.get("id"), "error", message["error"]
    return None


# route() of one line as read from the socket (json.loads raises ValueError when it is not JSON);
# None for a blank line too.
def route_line(line: bytes | bytearray) -> tuple[Any, str, Any] | None:
    return route(json.loads(line)) if line.strip() else None
