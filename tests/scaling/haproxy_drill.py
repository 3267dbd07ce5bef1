"""The multi-instance drill (issue 20, docs/SCALING.md): three droverd instances (sim workers,
JSON-RPC over TCP) behind HAProxy in TCP mode, a client load through HAProxy (the Python
client with retry_safe, seeded generates), then

1. a rolling restart: each instance in turn is SIGTERMed (HAProxy learns of the drain from
   /readyz), waited for (exit 0), started again on new ports, pointed to through HAProxy's
   runtime API, and waited for until HAProxy's health checks see it UP; asserts 0 lost, 0
   errors, every result equal to a quiet run's;
2. a SIGKILL of one instance under load, with unseeded generates (not safe to repeat) in the
   mix: asserts 0 lost and no error other than a typed ConnectionLostError for an unseeded call,
   and records the retries, the typed errors and the time until HAProxy marks it DOWN;
3. the rolling restart again with retry_safe off, for comparison (its errors are printed, not
   asserted: they are what the client would see without the retry).

Prints the figures (one JSON line per phase after "DRILL"). Run by CTest as `haproxy_drill`
under tests/clients/run_as_subreaper.py (the workers of the SIGKILLed droverd are reaped).
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time

from cluster import WAIT_S, Cluster, wait_until
from drover_client import Client, ConnectionLostError, DroverConnectionError, DroverError

KEYS = 24  # distinct (prompt, seed) pairs the load cycles through
MAX_TOKENS = 16  # 80 ms at the sim workers' 200 tokens/s
SEEDED_CLIENTS = 6  # connections through HAProxy, one client each
UNSAFE_CLIENTS = 2  # unseeded generates, in the SIGKILL phase only
PROGRESS = 50  # answers the load must make before and after each step


def params(key: int) -> dict:
    return {"prompt": f"drill request {key}", "max_tokens": MAX_TOKENS, "seed": 1000 + key, "cache": "bypass"}


class Load:
    """Client threads calling through HAProxy's frontend until stopped; counts every outcome."""

    def __init__(self, frontend: str, expected: dict[int, str], unsafe_clients: int = 0, retry_safe: bool = True):
        self.frontend = frontend
        self.expected = expected
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sent = self.answered = self.mismatched = self.unsafe_sent = self.unsafe_answered = 0
        self.unsafe_lost = 0  # typed ConnectionLostError of unseeded calls
        self.errors: list[str] = []
        self.in_call = 0
        self.clients = [Client(frontend, timeout=WAIT_S, connect_timeout=WAIT_S, retry_safe=retry_safe)
                        for _ in range(SEEDED_CLIENTS + unsafe_clients)]
        self.threads = [threading.Thread(target=self.run, args=(i, i >= SEEDED_CLIENTS), daemon=True)
                        for i in range(len(self.clients))]

    def start(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def run(self, i: int, unsafe: bool) -> None:
        c = self.clients[i]
        n = i
        while not self.stopping.is_set():
            n += len(self.clients)
            key = n % KEYS
            with self.lock:
                self.in_call += 1
                if unsafe:
                    self.unsafe_sent += 1
                else:
                    self.sent += 1
            try:
                if unsafe:
                    c.generate(f"unsafe {n}", max_tokens=4 * MAX_TOKENS)
                    with self.lock:
                        self.unsafe_answered += 1
                else:
                    text = c.generate(**params(key))["text"]
                    with self.lock:
                        self.answered += 1
                        if text != self.expected[key]:
                            self.mismatched += 1
            except ConnectionLostError as e:
                with self.lock:
                    if unsafe:
                        self.unsafe_lost += 1
                    else:
                        self.errors.append(repr(e))
            except (DroverError, DroverConnectionError) as e:
                with self.lock:
                    self.errors.append(repr(e))
            finally:
                with self.lock:
                    self.in_call -= 1

    def progress(self, answers: int = PROGRESS) -> None:
        """Waits until the load has made `answers` more answers."""
        target = self.answered + answers
        wait_until(lambda: self.answered >= target, what=f"{answers} more answers through haproxy")

    def stop(self) -> dict:
        """Stops the load; the figures. A call still unanswered WAIT_S after is lost."""
        self.stopping.set()
        deadline = time.monotonic() + WAIT_S
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        lost = self.in_call
        retries = sum(c.retries for c in self.clients)
        for c in self.clients:
            c.close()
        return {"requests": self.sent, "answered": self.answered, "lost": lost, "errors": len(self.errors),
                "mismatched": self.mismatched, "retries": retries, "unsafe_requests": self.unsafe_sent,
                "unsafe_answered": self.unsafe_answered, "unsafe_connection_lost": self.unsafe_lost,
                "error_samples": self.errors[:5]}


def quiet_run(frontend: str) -> dict[int, str]:
    with Client(frontend, timeout=WAIT_S) as c:
        return {key: c.generate(**params(key))["text"] for key in range(KEYS)}


def rolling_restart(cluster: Cluster, expected: dict[int, str], retry_safe: bool = True) -> dict:
    haproxy = cluster.haproxy
    load = Load(haproxy.frontend, expected, retry_safe=retry_safe).start()
    steps = []
    try:
        load.progress()
        for i, (name, d) in enumerate(zip(cluster.names, cluster.instances)):
            t0 = time.monotonic()
            d.workers()  # remembers its worker pids, to wait for them
            d.proc.send_signal(signal.SIGTERM)
            code = d.proc.wait(timeout=WAIT_S)
            if code != 0:
                raise AssertionError(f"{name} exited {code} after SIGTERM:\n{d.log_text()}")
            d.wait_pids_gone()
            t_exit = time.monotonic()
            cluster.restart(i)
            t_ready = time.monotonic()
            haproxy.wait_status(name, "UP")
            t_up = time.monotonic()
            steps.append({"server": name, "drain_exit_s": round(t_exit - t0, 3),
                          "start_ready_s": round(t_ready - t_exit, 3), "to_up_s": round(t_up - t_ready, 3)})
            load.progress()
    finally:
        figures = load.stop()
    figures["steps"] = steps
    return figures


def sigkill(cluster: Cluster, expected: dict[int, str]) -> dict:
    haproxy = cluster.haproxy
    load = Load(haproxy.frontend, expected, unsafe_clients=UNSAFE_CLIENTS).start()
    try:
        load.progress()
        victim = cluster.instances[1]
        victim.workers()
        t0 = time.monotonic()
        victim.proc.kill()
        haproxy.wait_status(cluster.names[1], "DOWN")
        to_down = time.monotonic() - t0
        victim.proc.wait(timeout=WAIT_S)
        load.progress()  # served by the two others
    finally:
        figures = load.stop()
    victim.wait_pids_gone()
    t1 = time.monotonic()
    cluster.restart(1)
    haproxy.wait_status(cluster.names[1], "UP")
    figures.update(time_to_down_s=round(to_down, 3), restart_to_up_s=round(time.monotonic() - t1, 3))
    return figures


def main() -> int:
    cluster = Cluster(3)
    failures = []
    try:
        t0 = time.monotonic()
        cluster.start()
        expected = quiet_run(cluster.haproxy.frontend)
        print(f"DRILL setup {json.dumps({'instances': 3, 'start_s': round(time.monotonic() - t0, 3)})}")
        for phase, run in (("rolling_restart", rolling_restart), ("sigkill", sigkill),
                           ("rolling_restart_without_retry", lambda c, e: rolling_restart(c, e, False))):
            t = time.monotonic()
            figures = run(cluster, expected)
            figures["phase_s"] = round(time.monotonic() - t, 3)
            print(f"DRILL {phase} {json.dumps(figures)}", flush=True)
            if phase.endswith("without_retry"):
                continue  # for comparison: what the same restart costs a client without retry_safe
            if figures["lost"] != 0:
                failures.append(f"{phase}: {figures['lost']} requests lost")
            if figures["errors"] != 0 or figures["mismatched"] != 0:
                failures.append(f"{phase}: {figures['errors']} errors, {figures['mismatched']} wrong results: "
                                f"{figures['error_samples']}")
        if cluster.haproxy.statuses() != {name: "UP" for name in cluster.names}:
            failures.append(f"not every server is UP at the end: {cluster.haproxy.statuses()}")
    finally:
        cluster.close()
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
