#!/usr/bin/env python3
"""Runs a test command as a child subreaper (PR_SET_CHILD_SUBREAPER), so that the workers of a
droverd the test SIGKILLs (they die by PR_SET_PDEATHSIG) are reparented here and reaped, instead
of lingering as zombies of a PID 1 that may not reap. Exits with the command's status; fails if
a descendant outlives the command by more than 30 s (it is then killed).

Usage: run_as_subreaper.py COMMAND [ARGS...]
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
LINGER_S = 30


def children() -> list[int]:
    pids = []
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{tid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return pids


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("run_as_subreaper: prctl failed", file=sys.stderr)
        return 2
    # SIGCHLD stays blocked here so sigtimedwait below can wait for the next exit with a
    # deadline; the command gets an empty mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    child = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ, setsigmask=())
    code = 1
    while True:  # reaps orphans as they die, until the command itself exits
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            break
    deadline = time.monotonic() + LINGER_S
    while children():
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid != 0:
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            left = children()
            print(f"run_as_subreaper: processes outlived the test: {left}; killing them", file=sys.stderr)
            for p in left:
                os.kill(p, signal.SIGKILL)
            code = code or 1
            deadline = time.monotonic() + LINGER_S  # for the SIGKILLed ones to be reaped
            continue
        # The next exit (a pending SIGCHLD returns at once) or the deadline, whichever is first.
        signal.sigtimedwait({signal.SIGCHLD}, remaining)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
