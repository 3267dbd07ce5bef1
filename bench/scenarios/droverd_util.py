"""Helpers shared by the Python scenario scripts (failover_timing.py, model_timing.py); stdlib only.

  call(path, method, params)  one JSON-RPC request on a fresh connection to a droverd socket
  Conn                        a kept-open NDJSON connection (requests, streamed notifications)
  Droverd                     a droverd on a temp config and temp sockets; close() (or `with`)
                              stops it (SIGTERM, wait, SIGKILL on timeout) and removes the dir
  median_min_max, percentile  small statistics
"""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time


def call(path, method, params=None, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        req = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            req["params"] = params
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return json.loads(buf)


class Conn:
    """One NDJSON connection kept open: send() requests, read() messages one at a time."""

    def __init__(self, path, timeout=60):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1

    def send(self, method, params=None):
        rid = self.next_id
        self.next_id += 1
        req = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            req["params"] = params
        self.sock.sendall((json.dumps(req) + "\n").encode())
        return rid

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("droverd closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, method, params=None):
        """Sends a request and returns its reply (notifications before it are dropped)."""
        rid = self.send(method, params)
        while True:
            m = self.read()
            if m.get("id") == rid:
                return m

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Droverd:
    """droverd on a temp config. workers_yaml: lines of the `workers` block besides `command`;
    command: the worker argv (default BUILD/bin/drover-worker), worker_args appended to it;
    extra_yaml: further top-level blocks (models, model_preload, routing, ...). The constructor
    waits until `ready` worker slots are ready; if that fails, it stops droverd and raises."""

    def __init__(self, build, workers_yaml, worker_args=(), extra_yaml="", ready=2,
                 log_level="warn", start_timeout=30, prefix="drover-ft-", command=None):
        self.proc = None
        self.log = None
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        try:
            self.sock = os.path.join(self.dir, "c.sock")
            self.admin = os.path.join(self.dir, "a.sock")
            self.log_path = os.path.join(self.dir, "droverd.log")
            cfg = os.path.join(self.dir, "c.yaml")
            with open(cfg, "w") as f:
                f.write(f"server:\n  socket: {self.sock}\n  admin_socket: {self.admin}\n")
                argv = list(command or [f"{build}/bin/drover-worker"]) + list(worker_args)
                # JSON strings are YAML flow scalars: paths and flags need no further quoting.
                f.write(f"workers:\n  command: [{', '.join(json.dumps(str(a)) for a in argv)}]\n")
                for line in workers_yaml:
                    f.write(f"  {line}\n")
                f.write(extra_yaml)
                if extra_yaml and not extra_yaml.endswith("\n"):
                    f.write("\n")
                # No HTTP endpoints: other droverds on this machine may hold the default port.
                f.write(f"metrics:\n  enabled: false\nlogging:\n  level: {log_level}\n")
            self.log = open(self.log_path, "w")
            self.proc = subprocess.Popen([f"{build}/bin/droverd", "--config", cfg],
                                         stdout=self.log, stderr=self.log)
            self.wait(lambda: self.proc.poll() is not None or self.ready_slots() == ready,
                      start_timeout)
            if self.proc.poll() is not None:
                raise RuntimeError(f"droverd exited with {self.proc.returncode}:\n{self.log_tail()}")
        except BaseException:
            self.close()
            raise

    def log_tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_text(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def workers(self):
        try:
            return call(self.admin, "workers.list")["result"]["workers"]
        except OSError:
            return []

    def slot(self, wid):
        for w in self.workers():
            if w["id"] == wid:
                return w
        return None

    def ready_slots(self):
        return sum(1 for w in self.workers() if w["state"] == "ready" and w["id"] < 1000)

    def spares(self):
        return sum(1 for w in self.workers() if w["state"] == "spare")

    @staticmethod
    def wait(pred, timeout, poll=0.002):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(poll)
        raise TimeoutError("condition not met within %.0f s" % timeout)

    def close(self, timeout=30):
        """SIGTERM, wait up to `timeout` s, then SIGKILL; removes the temp dir. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def median_min_max(samples):
    return statistics.median(samples), min(samples), max(samples)


def percentile(samples, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(samples)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]
