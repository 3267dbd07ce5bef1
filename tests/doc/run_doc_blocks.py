#!/usr/bin/env python3
"""Doc tests: the shell blocks README.md, docs/OPERATIONS.md and docs/MODELS.md tell a user to
run are run against a real droverd, so a changed flag, message or exit code fails the suite
instead of misleading a user (issue 21, "Keep them true").

Every ```sh block in those files carries a marker on the line before its fence (an HTML
comment, invisible when the Markdown is rendered):

    <!-- doctest: run NAME -->                      run it
    <!-- doctest: run NAME; without: ./scripts/run, $EDITOR -->
                                                    run it except the lines starting with these
                                                    (the server this runner starts stands in
                                                    for ./scripts/run; an editor is not a test)
    <!-- doctest: skip NAME: REASON -->             not runnable here (systemd, Docker, sudo):
                                                    reported by name, never silently

A block without a marker fails the run, so a new block cannot slip past the tests unnoticed.

How a block runs: from the repository root, line by line (a line ending in a backslash
continues; nothing carries over from one line to the next, so a block must not rely on `export`
or `cd`), each with `bash -euo pipefail -c`, a 60 s bound and exit status 0 required; build/bin
is first in PATH so a bare `droverctl` is the one just built. Before the first runnable block the
runner starts `build/bin/droverd --config config/runtime.yaml` (the shipped config, tinyllm
workers and the shipped model, as ./scripts/run does) with XDG_RUNTIME_DIR set to a temp dir,
so its default sockets land in the private run directory $XDG_RUNTIME_DIR/drover, where the
blocks' droverctl (same rule, same environment) and "${XDG_RUNTIME_DIR:-/run}/drover/..."
paths find them, as they would for a user; metrics are off (DROVER_METRICS_LISTEN=, so parallel
tests cannot collide on :9464), the OpenAI API is on a port the kernel picks
(DROVER_OPENAI_LISTEN=127.0.0.1:0, read back from droverd's log) and 127.0.0.1:8000 in the
blocks becomes that address, and build/bin/ in the blocks becomes the build directory under
test (e.g. build-address/bin/).
It waits until every worker is ready and stops droverd with SIGTERM at the end, expecting exit 0.

Usage: run_doc_blocks.py --source DIR --build DIR [--list]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

DOCS = ("README.md", "docs/OPERATIONS.md", "docs/MODELS.md")
MARKER = re.compile(r"^<!--\s*doctest:\s*(run|skip)\s+([A-Za-z0-9_.-]+)\s*(?:[:;]\s*(.*?))?\s*-->\s*$")
LINE_TIMEOUT_S = 60
READY_TIMEOUT_S = 120


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    name: str = ""
    action: str = ""  # run | skip | "" (unmarked)
    detail: str = ""  # skip reason, or "without: ..." for run
    commands: list[str] = field(default_factory=list)


def extract(source: str, doc: str) -> list[Block]:
    lines = open(os.path.join(source, doc), encoding="utf-8").read().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("```sh", "```bash", "```shell"):
            b = Block(doc, i + 1)
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            m = MARKER.match(lines[j].strip()) if j >= 0 else None
            if m:
                b.action, b.name, b.detail = m.group(1), m.group(2), m.group(3) or ""
            i += 1
            pending = ""
            while i < len(lines) and lines[i].strip() != "```":
                text = lines[i]
                if text.rstrip().endswith("\\"):
                    pending += text.rstrip()[:-1] + " "
                else:
                    command = (pending + text).strip()
                    pending = ""
                    if command and not command.startswith("#"):
                        b.commands.append(command)
                i += 1
            blocks.append(b)
        i += 1
    return blocks


def without_prefixes(detail: str) -> list[str]:
    m = re.match(r"without:\s*(.*)$", detail)
    return [p.strip() for p in m.group(1).split(",") if p.strip()] if m else []


class Droverd:
    def __init__(self, source: str, build: str, tmp: str):
        self.source, self.build, self.tmp = source, build, tmp
        self.log_path = os.path.join(tmp, "droverd.log")
        # The defaults under test: no socket path may come from the caller's environment.
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DROVER_SERVER_SOCKET", "DROVER_SERVER_ADMIN_SOCKET")}
        self.env.update({
            "PATH": os.path.join(build, "bin") + os.pathsep + os.environ.get("PATH", ""),
            "XDG_RUNTIME_DIR": tmp,
            "DROVER_METRICS_LISTEN": "",
            "DROVER_OPENAI_LISTEN": "127.0.0.1:0",
            "TMPDIR": tmp,
        })
        self.proc: subprocess.Popen | None = None
        self.openai = "127.0.0.1:8000"  # the OpenAI API's host:port once started

    def start(self) -> None:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [os.path.join(self.build, "bin", "droverd"), "--config", "config/runtime.yaml"],
            cwd=self.source, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"droverd exited with {self.proc.returncode} at start:\n{self.log()}")
            r = subprocess.run([os.path.join(self.build, "bin", "droverctl"), "health"], env=self.env,
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                h = json.loads(r.stdout)
                if h.get("workers_total", 0) > 0 and h.get("workers_ready") == h.get("workers_total"):
                    with open(self.log_path, encoding="utf-8", errors="replace") as f:
                        m = re.search(r"OpenAI-compatible API on http://(127\.0\.0\.1:\d+)/v1", f.read())
                    if not m:
                        raise RuntimeError(f"droverd did not log its OpenAI API address:\n{self.log()}")
                    self.openai = m.group(1)
                    return
            try:  # the next look after 0.2 s, unless droverd exits first (checked above)
                self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        raise RuntimeError(f"droverd not ready within {READY_TIMEOUT_S} s:\n{self.log()}")

    def stop(self) -> int:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -1

    def log(self) -> str:
        try:
            return open(self.log_path, encoding="utf-8", errors="replace").read()[-4000:]
        except OSError:
            return ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--list", action="store_true", help="list the blocks and what would run")
    args = ap.parse_args()
    source, build = os.path.abspath(args.source), os.path.abspath(args.build)

    blocks = [b for doc in DOCS for b in extract(source, doc)]
    unmarked = [b for b in blocks if not b.action]
    for b in blocks:
        state = b.action or "UNMARKED"
        print(f"{b.doc}:{b.line}: {state} {b.name} {b.detail}".rstrip())
    if unmarked:
        print(f"\n{len(unmarked)} shell block(s) without a doctest marker (see tests/doc/run_doc_blocks.py):",
              file=sys.stderr)
        for b in unmarked:
            print(f"  {b.doc}:{b.line}", file=sys.stderr)
        return 1
    if args.list:
        return 0

    runnable = [b for b in blocks if b.action == "run"]
    failures: list[str] = []
    tmp = tempfile.mkdtemp(prefix="drover-doctest-")
    d = Droverd(source, build, tmp)
    try:
        if runnable:
            d.start()
        for b in runnable:
            skipped = without_prefixes(b.detail)
            for command in b.commands:
                if any(command.startswith(p) for p in skipped):
                    print(f"[{b.name}] not run (stands in: {command})")
                    continue
                line = (command.replace("127.0.0.1:8000", d.openai)
                        .replace("build/bin/", os.path.join(build, "bin") + "/"))
                print(f"[{b.name}] $ {command}", flush=True)
                try:
                    r = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=source, env=d.env,
                                       capture_output=True, text=True, timeout=LINE_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    failures.append(f"{b.doc}:{b.line} [{b.name}] timed out after {LINE_TIMEOUT_S} s: {command}")
                    continue
                out = (r.stdout + r.stderr).strip()
                if out:
                    print("    " + out[:2000].replace("\n", "\n    "))
                if r.returncode != 0:
                    failures.append(f"{b.doc}:{b.line} [{b.name}] exit {r.returncode}: {command}\n{out[:2000]}")
        code = d.stop()
        if runnable and code != 0:
            failures.append(f"droverd exited with {code} after SIGTERM (expected 0):\n{d.log()}")
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    skips = [b for b in blocks if b.action == "skip"]
    print(f"\n{len(runnable)} block(s) run, {len(skips)} skipped by name:")
    for b in skips:
        print(f"  skipped {b.name} ({b.doc}:{b.line}): {b.detail}")
    if failures:
        print("\nFAILED:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
