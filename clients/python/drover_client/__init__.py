"""drover_client: Python client for droverd's JSON-RPC API (docs/API.md). Stdlib only."""
from .async_client import AsyncClient, AsyncStream
from .errors import (CANCELLED, INVALID_PARAMS, NO_HEALTHY_WORKER, OVERLOADED, SHUTTING_DOWN, TIMED_OUT,
                     ConnectionLostError, DroverConnectionError, DroverError)
from .protocol import SOCKET_ENV, SOCKET_NAME, default_run_dir, default_socket
from .sync_client import Client, Stream

__all__ = [
    "AsyncClient", "AsyncStream", "Client", "Stream", "DroverError", "DroverConnectionError",
    "ConnectionLostError", "OVERLOADED", "NO_HEALTHY_WORKER", "TIMED_OUT", "CANCELLED",
    "INVALID_PARAMS", "SHUTTING_DOWN", "SOCKET_NAME", "SOCKET_ENV", "default_run_dir", "default_socket",
]
