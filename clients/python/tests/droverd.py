"""Test fixture: a real droverd with sim workers in a private temp dir (the Python counterpart
of tests/integration/harness.hpp). Binaries come from the environment CTest sets: DROVERD_BIN,
DROVER_WORKER_BIN, DROVERCTL_BIN. Every wait polls a condition against a deadline.

Run the tests under tests/clients/run_as_subreaper.py (CTest does): workers of a droverd that
a test SIGKILLs are then reaped.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from drover_client import Client, DroverConnectionError, DroverError  # noqa: E402

WAIT_S = 60.0  # generous: a loaded 2-core machine
# droverd's log line for its JSON-RPC TCP listener (server.tcp_listen).
TCP_LOG = re.compile(r"JSON-RPC on ((?:tcp|tls)://\S+?:\d+)")
METRICS_LOG = re.compile(r"metrics and probes on http://\S+?:(\d+) ")
OPENAI_LOG = re.compile(r"OpenAI-compatible API on http://\S+?:(\d+)/v1")


def binary(name: str) -> str:
    path = os.environ.get(name)
    if not path:
        raise RuntimeError(f"{name} is not set (CTest sets it to the built binary)")
    return path


def wait_until(pred: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)  # paces the poll; the condition is what is waited on


class Droverd:
    """One droverd. `tokens_per_s`: the sim workers' rate (so a long stream stays in flight)."""

    def __init__(self, workers: int = 2, tokens_per_s: int = 200, server_yaml: list[str] | None = None,
                 tcp: bool = False, drain_timeout_ms: int = 2000, metrics: bool = False,
                 extra_yaml: list[str] | None = None):
        self.dir = tempfile.mkdtemp(prefix="drover-py-", dir="/tmp")
        self.socket = os.path.join(self.dir, "c.sock")
        self.admin_socket = os.path.join(self.dir, "a.sock")
        self.config = os.path.join(self.dir, "droverd.yaml")
        self.log = os.path.join(self.dir, "droverd.log")
        self.workers_count = workers
        self.proc: subprocess.Popen | None = None
        self.seen_pids: set[int] = set()
        lines = ["server:", f"  socket: {json.dumps(self.socket)}", f"  admin_socket: {json.dumps(self.admin_socket)}",
                 f"  run_dir: {json.dumps(os.path.join(self.dir, 'run'))}"]
        if tcp:  # port 0: the bound port is read from the log (tcp_address)
            lines += ['  tcp_listen: "127.0.0.1:0"']
        lines += ["  " + line for line in server_yaml or []]
        lines += ["workers:", f"  count: {workers}", "  backend: sim",
                  f"  command: [{json.dumps(binary('DROVER_WORKER_BIN'))}, \"--tokens-per-s\", \"{tokens_per_s}\"]",
                  f"  drain_timeout_ms: {drain_timeout_ms}", "metrics:",
                  '  listen: "127.0.0.1:0"' if metrics else '  listen: ""', "logging:", "  level: info"]
        lines += extra_yaml or []
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self) -> "Droverd":
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([binary("DROVERD_BIN"), "--config", self.config], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"droverd exited during start-up:\n{self.log_text()}")
            try:
                ws = self.workers()
            except (DroverConnectionError, DroverError, OSError):
                return False
            return sum(1 for w in ws if w["state"] == "ready") == self.workers_count
        wait_until(ready, what="droverd ready")

    def logged(self, pattern: re.Pattern, what: str) -> str:
        """The last match of `pattern`'s group in the log (of the last start)."""
        found = pattern.findall(self.log_text(whole=True))
        if not found:
            raise AssertionError(f"no {what} in the log:\n{self.log_text()}")
        return found[-1]

    def tcp_address(self) -> str:
        """tcp://HOST:PORT (tls:// with server.tls) of the JSON-RPC TCP listener."""
        return self.logged(TCP_LOG, "TCP listener")

    def metrics_port(self) -> int:
        return int(self.logged(METRICS_LOG, "metrics listener"))

    def openai_port(self) -> int:
        return int(self.logged(OPENAI_LOG, "OpenAI listener"))

    def pin_tcp_port(self) -> None:
        """The next start listens on the port this one got (the client keeps its address)."""
        port = self.tcp_address().rsplit(":", 1)[1]
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(re.sub(r'tcp_listen: "127\.0\.0\.1:\d+"', f'tcp_listen: "127.0.0.1:{port}"', text))

    def admin(self, method: str, params: Any = None) -> Any:
        with Client(self.admin_socket, timeout=WAIT_S, connect_timeout=0.5) as c:
            return c.call(method, params)

    def workers(self) -> list[dict[str, Any]]:
        ws = self.admin("workers.list")["workers"]
        self.seen_pids.update(w["pid"] for w in ws if w.get("pid"))
        return ws

    def inflight(self) -> int:
        return sum(w["inflight"] for w in self.workers())

    def kill(self) -> None:
        """SIGKILLs droverd (a crash): its workers die with it (PR_SET_PDEATHSIG)."""
        self.workers()
        self.proc.kill()
        self.proc.wait(timeout=WAIT_S)
        self.wait_pids_gone()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.workers()
            except (DroverConnectionError, DroverError, OSError):
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("droverd did not exit on SIGTERM")
            if code != 0:
                raise AssertionError(f"droverd exited {code} after SIGTERM:\n{self.log_text()}")
        self.wait_pids_gone()

    def wait_pids_gone(self) -> None:
        def gone(pid: int) -> bool:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie awaiting its reaper
            except OSError:
                return True
        wait_until(lambda: all(gone(p) for p in self.seen_pids), what="worker processes gone")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self, whole: bool = False) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read() if whole else f.read()[-4000:]
        except OSError:
            return ""

    def droverctl(self, *args: str) -> list[Any]:
        """Runs droverctl --json against this droverd; its JSON values, in order."""
        r = subprocess.run([binary("DROVERCTL_BIN"), "--socket", self.socket, "--json", *args],
                           capture_output=True, text=True, timeout=WAIT_S)
        if r.returncode != 0:
            raise AssertionError(f"droverctl {args} exited {r.returncode}: {r.stderr}")
        decoder, text, out, i = json.JSONDecoder(), r.stdout, [], 0
        while i < len(text):
            if text[i].isspace():
                i += 1
                continue
            value, i = decoder.raw_decode(text, i)
            out.append(value)
        return out
