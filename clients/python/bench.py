#!/usr/bin/env python3
"""Requests per second of drover_client against a raw socket client (newline-delimited JSON, one
json.loads per line: the least a correct client does), one connection each: 1 call in flight
(Client vs a blocking socket) and 64 in flight (AsyncClient vs an asyncio socket). Prompts are
unique and bypass the prompt cache, so every call reaches a worker. Each cell runs `rounds` times,
raw and library alternating, and reports the median (a shared machine's load drifts).

    python3 bench.py [--socket PATH] [--seconds 2] [--rounds 3] [--max-tokens 8]
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from drover_client import AsyncClient, Client, default_socket  # noqa: E402

serial = itertools.count()


def params(max_tokens: int) -> dict:
    return {"prompt": f"bench {os.getpid()} {next(serial)}", "max_tokens": max_tokens, "cache": "bypass"}


def raw_serial(path: str, seconds: float, max_tokens: int) -> float:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rb")
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        done += 1
        msg = {"jsonrpc": "2.0", "id": done, "method": "generate", "params": params(max_tokens)}
        s.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        while "id" not in json.loads(f.readline()):
            pass
    s.close()
    return done / seconds


def lib_serial(path: str, seconds: float, max_tokens: int) -> float:
    with Client(path) as c:
        done, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            c.generate(**params(max_tokens))
            done += 1
    return done / seconds


async def raw_concurrent(path: str, seconds: float, max_tokens: int, inflight: int) -> float:
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 24)
    waiting: dict[int, asyncio.Future] = {}
    ids = itertools.count(1)

    async def read() -> None:
        while line := await reader.readline():
            m = json.loads(line)
            if "id" in m and m["id"] in waiting:
                waiting.pop(m["id"]).set_result(m)

    reading = asyncio.ensure_future(read())
    end = time.monotonic() + seconds
    done = 0

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < end:
            i = next(ids)
            waiting[i] = asyncio.get_running_loop().create_future()
            msg = {"jsonrpc": "2.0", "id": i, "method": "generate", "params": params(max_tokens)}
            writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
            await waiting[i]
            done += 1

    await asyncio.gather(*(loop() for _ in range(inflight)))
    writer.close()
    reading.cancel()
    return done / seconds


async def lib_concurrent(path: str, seconds: float, max_tokens: int, inflight: int) -> float:
    async with AsyncClient(path) as c:
        end = time.monotonic() + seconds
        done = 0

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < end:
                await c.generate(**params(max_tokens))
                done += 1

        await asyncio.gather(*(loop() for _ in range(inflight)))
    return done / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", default=default_socket())
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=8)
    a = ap.parse_args()
    lib_serial(a.socket, 0.5, a.max_tokens)  # warm-up
    print(f"socket {a.socket}, median of {a.rounds} x {a.seconds} s per cell, max_tokens {a.max_tokens}, "
          "one connection each")
    print("in flight | raw socket req/s | drover_client req/s | library cost | client CPU µs/req raw / library")
    cells = {
        1: (lambda: raw_serial(a.socket, a.seconds, a.max_tokens),
            lambda: lib_serial(a.socket, a.seconds, a.max_tokens)),
        64: (lambda: asyncio.run(raw_concurrent(a.socket, a.seconds, a.max_tokens, 64)),
             lambda: asyncio.run(lib_concurrent(a.socket, a.seconds, a.max_tokens, 64))),
    }
    def measured(cell):
        # req/s, and this process's CPU time per call (µs), which droverd's speed and the
        # machine's load do not change.
        cpu0 = time.process_time()
        rate = cell()
        return rate, (time.process_time() - cpu0) * 1e6 / (rate * a.seconds)

    for inflight, (raw_cell, lib_cell) in cells.items():
        raws, libs = [], []
        for _ in range(a.rounds):
            raws.append(measured(raw_cell))
            libs.append(measured(lib_cell))
        raw, lib = statistics.median(r for r, _ in raws), statistics.median(r for r, _ in libs)
        cpu_raw, cpu_lib = statistics.median(c for _, c in raws), statistics.median(c for _, c in libs)
        print(f"{inflight:>9} | {raw:>16.0f} | {lib:>19.0f} | {(raw - lib) / raw * 100:>10.1f} % | "
              f"{cpu_raw:.1f} / {cpu_lib:.1f}")


if __name__ == "__main__":
    main()
