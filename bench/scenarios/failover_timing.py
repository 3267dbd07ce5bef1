#!/usr/bin/env python3
"""Times the resilience paths of droverd with real sim workers (stdlib only).

  promotion  SIGKILL a worker; time until its slot is served by a ready worker again, with
             one warm spare (promotion) and without (cold spawn).
  sigstop    SIGSTOP a worker; time until droverd has killed it and the slot is ready again,
             against workers.heartbeat_timeout_ms.

Usage: bench/scenarios/failover_timing.py BUILD_DIR [--runs N]
Prints one line per scenario with the median, min and max over N runs.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time


def call(path, method, params=None, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
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
    s.close()
    return json.loads(buf)


class Droverd:
    def __init__(self, build, workers_yaml, worker_args=()):
        self.dir = tempfile.mkdtemp(prefix="drover-ft-", dir="/tmp")
        self.sock = os.path.join(self.dir, "c.sock")
        self.admin = os.path.join(self.dir, "a.sock")
        cfg = os.path.join(self.dir, "c.yaml")
        with open(cfg, "w") as f:
            f.write(f"server:\n  socket: {self.sock}\n  admin_socket: {self.admin}\n")
            args = "".join(f", \"{a}\"" for a in worker_args)
            f.write(f"workers:\n  command: [{build}/bin/drover-worker{args}]\n")
            for line in workers_yaml:
                f.write(f"  {line}\n")
            f.write("logging:\n  level: warn\n")
        self.log = open(os.path.join(self.dir, "droverd.log"), "w")
        self.proc = subprocess.Popen([f"{build}/bin/droverd", "--config", cfg],
                                     stdout=self.log, stderr=self.log)
        self.wait(lambda: self.ready_slots() == 2, 30)

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

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()
        subprocess.run(["rm", "-rf", self.dir], check=False)


def replace_time(d, sig, expect_spare):
    if expect_spare:
        d.wait(lambda: d.spares() == 1, 30)
    d.wait(lambda: (d.slot(0) or {}).get("state") == "ready", 30)
    victim = d.slot(0)
    t0 = time.monotonic()
    os.kill(victim["pid"], sig)
    d.wait(lambda: (lambda w: w is not None and w["pid"] != victim["pid"] and w["state"] == "ready")(d.slot(0)), 30)
    return (time.monotonic() - t0) * 1000.0


def report(name, samples):
    print(f"{name:<44} median {statistics.median(samples):8.1f} ms   min {min(samples):8.1f}   "
          f"max {max(samples):8.1f}   (n={len(samples)})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--load-ms", type=int, default=0,
                    help="sim model load time, to see what a spare saves with a real load")
    args = ap.parse_args()
    build = os.path.abspath(args.build)

    # crash_loop_window_s 0: back-to-back SIGSTOPs would otherwise (rightly) look like a crash
    # loop and park the slot.
    base = ["count: 2", "heartbeat_interval_ms: 100", "heartbeat_timeout_ms: 500", "crash_loop_window_s: 0"]
    for spares in (1, 0):
        d = Droverd(build, base + [f"warm_spares: {spares}"], ["--load-ms", str(args.load_ms)])
        try:
            samples = [replace_time(d, signal.SIGKILL, spares == 1) for _ in range(args.runs)]
        finally:
            d.close()
        report(f"SIGKILL -> slot ready ({'warm spare' if spares else 'cold spawn'}, load {args.load_ms} ms)",
               samples)
    d = Droverd(build, base + ["warm_spares: 1"])
    try:
        samples = [replace_time(d, signal.SIGSTOP, True) for _ in range(args.runs)]
    finally:
        d.close()
    report("SIGSTOP -> detected + slot ready (timeout 500 ms)", samples)


if __name__ == "__main__":
    main()
