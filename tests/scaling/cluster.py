"""Several droverd instances behind HAProxy, for the multi-instance drill (haproxy_drill.py) and
the cache affinity benchmark (bench/scaling/affinity.py); docs/SCALING.md.

No fixed ports: every droverd binds port 0 (JSON-RPC TCP, metrics, OpenAI) and is read back
from its log; HAProxy's clients connect to a Unix-socket frontend (a frontend cannot bind port
0, and a port picked beforehand could be taken before HAProxy binds it); an instance started
again on new ports is pointed to through HAProxy's runtime API (`set server ... addr`,
`check-port`) on its admin socket.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
from droverd import WAIT_S, Droverd, wait_until  # noqa: E402

HAPROXY = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")
BACKEND = "droverd"


class HAProxy:
    """One haproxy in the foreground, its configuration in its own temp dir. `mode`: "tcp"
    (JSON-RPC, servers on each instance's TCP port) or "http" (the OpenAI API). Health checks:
    GET /readyz on each instance's metrics port, every 100 ms, 2 to fall, 2 to rise."""

    def __init__(self, mode: str, servers: list[tuple[str, int, int]], balance: str = "roundrobin",
                 backend_lines: list[str] | None = None):
        self.dir = tempfile.mkdtemp(prefix="drover-haproxy-", dir="/tmp")
        self.frontend = os.path.join(self.dir, "front.sock")
        self.admin_socket = os.path.join(self.dir, "admin.sock")
        self.config = os.path.join(self.dir, "haproxy.cfg")
        self.log = os.path.join(self.dir, "haproxy.log")
        timeouts = ["timeout connect 2s", "timeout client 5m", "timeout server 5m"]
        if mode == "http":
            timeouts.append("timeout http-request 10s")
        lines = [
            "global",
            f"    stats socket {self.admin_socket} mode 600 level admin",
            "    maxconn 2000",
            "defaults",
            f"    mode {mode}",
            *("    " + t for t in timeouts),
            # A connection refused (an instance draining or gone) is tried on another server.
            "    retries 3",
            "    option redispatch",
            "frontend clients",
            f"    bind unix@{self.frontend} mode 600",
            f"    default_backend {BACKEND}",
            f"backend {BACKEND}",
            f"    balance {balance}",
            *("    " + line for line in backend_lines or []),
            "    option httpchk GET /readyz",
            "    default-server inter 100ms fastinter 100ms downinter 100ms fall 2 rise 2 "
            "on-marked-down shutdown-sessions",
        ]
        lines += [f"    server {name} 127.0.0.1:{port} check port {check}" for name, port, check in servers]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HAProxy":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([HAPROXY, "-f", self.config, "-db"], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited {self.proc.returncode}:\n{self.log_text()}")
            return os.path.exists(self.admin_socket) and os.path.exists(self.frontend)
        wait_until(up, what="haproxy listening")
        return self

    def runtime(self, command: str) -> str:
        """One command on the runtime API; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(WAIT_S)
            s.connect(self.admin_socket)
            s.sendall(command.encode() + b"\n")
            out = bytearray()
            while data := s.recv(1 << 16):
                out += data
        return out.decode()

    def statuses(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it: UP, DOWN, MAINT, "UP 1/2"...."""
        text = self.runtime("show stat").lstrip("# ")
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_status(self, server: str, status: str) -> float:
        """Waits until `server` is `status`; the seconds it took."""
        start = time.monotonic()
        wait_until(lambda: self.statuses().get(server) == status, what=f"haproxy to see {server} {status}")
        return time.monotonic() - start

    def point(self, server: str, port: int, check_port: int) -> None:
        """Sends `server`'s traffic and health checks to new ports (an instance started again)."""
        for command in (f"set server {BACKEND}/{server} addr 127.0.0.1 port {port}",
                        f"set server {BACKEND}/{server} check-port {check_port}"):
            answer = self.runtime(command).strip()
            if answer and "changed" not in answer and "health check port updated" not in answer:
                raise AssertionError(f"haproxy refused '{command}': {answer}")

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=WAIT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """`n` droverd instances (sim workers, metrics, JSON-RPC over TCP in "tcp" mode, each in its own temp dir)
    behind one HAProxy; servers are named s0, s1...."""

    def __init__(self, n: int, mode: str = "tcp", balance: str = "roundrobin",
                 backend_lines: list[str] | None = None, workers: int = 2, tokens_per_s: int = 200,
                 extra_yaml: list[str] | None = None):
        self.mode = mode
        self.instances = [Droverd(workers=workers, tokens_per_s=tokens_per_s, tcp=mode == "tcp", metrics=True,
                                  drain_timeout_ms=10_000, extra_yaml=extra_yaml) for _ in range(n)]
        self.names = [f"s{i}" for i in range(n)]
        self.haproxy: HAProxy | None = None
        self._balance = balance
        self._backend_lines = backend_lines

    def start(self) -> "Cluster":
        for d in self.instances:
            d.launch()
        for d in self.instances:
            d.wait_ready()
        self.haproxy = HAProxy(self.mode, [(name, self.serving_port(d), d.metrics_port())
                                           for name, d in zip(self.names, self.instances)],
                               self._balance, self._backend_lines).start()
        for name in self.names:
            self.haproxy.wait_status(name, "UP")
        return self

    def serving_port(self, d: Droverd) -> int:
        return d.openai_port() if self.mode == "http" else int(d.tcp_address().rsplit(":", 1)[1])

    def restart(self, i: int) -> None:
        """Starts instance i again (new ports), points HAProxy to it and waits until it is UP."""
        d = self.instances[i]
        d.launch()
        d.wait_ready()
        self.haproxy.point(self.names[i], self.serving_port(d), d.metrics_port())

    def close(self) -> None:
        try:
            if self.haproxy is not None:
                self.haproxy.close()
        finally:
            for d in self.instances:
                d.close()
