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
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from droverd_util import Droverd  # noqa: E402


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
