"""Where droverd listens and how to reach it: a Unix socket path, `tcp://HOST:PORT` or
`tls://HOST:PORT` (docs/API.md, "Transports"). One blocking byte stream (`Channel`) for Client,
asyncio streams for AsyncClient.

TLS in the blocking client goes through ssl.SSLObject over memory BIOs: the reader thread and
the calling threads share one SSL state, which OpenSSL does not allow to be used by two threads
at once, so every use of it is under one lock and none of them blocks on the socket.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Address:
    """A parsed address: `path` for a Unix socket, else `host`, `port` and whether TLS is on."""
    text: str
    path: str | None = None
    host: str = ""
    port: int = 0
    tls: bool = False


def parse_address(text: str) -> Address:
    """`tcp://HOST:PORT`, `tls://HOST:PORT` (an IPv6 host in brackets), anything else a Unix
    socket path. A malformed TCP address raises ValueError naming it."""
    for scheme, tls in (("tcp://", False), ("tls://", True)):
        if text.startswith(scheme):
            rest = text[len(scheme):]
            host, sep, port = rest.rpartition(":")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"address {text!r}: expected {scheme}HOST:PORT with a port in 1..65535")
            return Address(text, host=host, port=int(port), tls=tls)
    if "://" in text:
        raise ValueError(f"address {text!r}: the schemes are tcp:// and tls://; anything else is a socket path")
    return Address(text, path=text)


@dataclass(frozen=True)
class TlsOptions:
    """`ca_file`: the CA that signed droverd's certificate (default: the system's CAs);
    `cert_file`/`key_file`: this client's certificate for mutual TLS; `server_name`: the name
    to verify droverd's certificate against (default: the address's host)."""
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _plain_socket(address: Address, timeout: float) -> socket.socket:
    if address.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address.path)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Channel:
    """A connected byte stream: send() from any thread, recv() from one reader thread."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def recv(self) -> bytes:
        return self._sock.recv(1 << 16)

    def shutdown(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()


class _TlsChannel(Channel):
    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_name: str):
        super().__init__(sock)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl = ctx.wrap_bio(self._in, self._out, server_hostname=server_name)
        self._lock = threading.Lock()  # guards the SSL state and the order of bytes sent
        while True:  # the handshake, before any other thread uses the channel
            try:
                self._ssl.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                data = self._sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("connection closed during the TLS handshake")
                self._in.write(data)

    def _flush(self) -> None:
        pending = self._out.read()
        if pending:
            self._sock.sendall(pending)

    def send(self, data: bytes) -> None:
        with self._lock:
            self._ssl.write(data)
            self._flush()  # under the lock: records go out in the order they were made

    def recv(self) -> bytes:
        while True:
            with self._lock:
                try:
                    return self._ssl.read(1 << 16)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    return b""
                self._flush()  # a post-handshake message may need an answer
            data = self._sock.recv(1 << 16)  # outside the lock: senders go on meanwhile
            if not data:
                return b""
            with self._lock:
                self._in.write(data)


def open_channel(address: Address, tls: TlsOptions, timeout: float) -> Channel:
    """One connection attempt, its TLS handshake included, within `timeout` seconds."""
    sock = _plain_socket(address, max(0.001, timeout))
    try:
        channel = _TlsChannel(sock, tls.context(), tls.server_name or address.host) if address.tls \
            else Channel(sock)
        sock.settimeout(None)
        return channel
    except BaseException:
        sock.close()
        raise


async def open_streams(address: Address, tls: TlsOptions, limit: int) -> tuple[asyncio.StreamReader, Any]:
    """asyncio's (reader, writer) for the address."""
    if address.path is not None:
        return await asyncio.open_unix_connection(address.path, limit=limit)
    if address.tls:
        return await asyncio.open_connection(address.host, address.port, limit=limit, ssl=tls.context(),
                                             server_hostname=tls.server_name or address.host)
    reader, writer = await asyncio.open_connection(address.host, address.port, limit=limit)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer
