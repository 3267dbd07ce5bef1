"""What Client and AsyncClient are configured with: one constructor for both (docs/API.md)."""

from __future__ import annotations

from . import protocol, retry
from .transport import TlsOptions, parse_address


class ClientSettings:
    """`address`: a Unix socket path, `tcp://HOST:PORT` or `tls://HOST:PORT` (default:
    $DROVER_SERVER_SOCKET, else drover.sock in droverd's private run directory,
    `default_run_dir()`); `socket_path` is its former name. `tls_ca_file`, `tls_cert_file`,
    `tls_key_file`, `tls_server_name`: for tls:// (transport.TlsOptions).
    `timeout`: default deadline of a call in seconds (None: none; droverd's own request
    timeout still applies). `connect_timeout`: how long a (re)connection keeps retrying.
    `max_buffered_chunks`: chunks a stream holds for a caller that has not read them.
    `retry_safe`: send a call that failed with its connection again on a new connection when
    that is safe (retry.py), up to `retry_attempts` sendings in all; `retries` counts them.
    """

    def __init__(self, address: str | None = None, *, socket_path: str | None = None,
                 timeout: float | None = None, connect_timeout: float = 10.0,
                 max_buffered_chunks: int = protocol.MAX_BUFFERED_CHUNKS, tls_ca_file: str | None = None,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 tls_server_name: str | None = None, retry_safe: bool = False,
                 retry_attempts: int = retry.DEFAULT_ATTEMPTS):
        self.socket_path = address or socket_path or protocol.default_socket()
        self._address = parse_address(self.socket_path)
        self._tls = TlsOptions(tls_ca_file, tls_cert_file, tls_key_file, tls_server_name)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._retry = retry.RetryPolicy(retry_safe, retry_attempts)
        self._max_buffered = max_buffered_chunks

    @property
    def retries(self) -> int:
        """Calls sent again under retry_safe."""
        return self._retry.retries
