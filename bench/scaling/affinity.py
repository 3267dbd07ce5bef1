#!/usr/bin/env python3
"""Prompt cache hit ratio of a 3-instance cluster behind HAProxy (HTTP mode, the OpenAI API):
`balance roundrobin` against consistent hashing on a header the client sets from the prompt
(`balance hdr(X-Prompt-Hash)` with `hash-type consistent`); docs/SCALING.md, "Prompt cache and
session affinity".

The workload: PROMPTS distinct seeded completions, each sent REPEATS times, in a shuffled order
(fixed seed), one at a time. Each run starts fresh instances; the hit ratio is
sum(drover_prompt_cache_hits_total) / sum(hits + misses) over the instances' /metrics.
Request deduplication and coalescing are off, so every repeat is a cache lookup.

    python3 bench/scaling/affinity.py --build build [--prompts 60 --repeats 4]
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import socket
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "scaling"))

OPENAI_YAML = ["openai:", "  enabled: true", '  listen: "127.0.0.1:0"',
               "request_deduplication:", "  enabled: false", "request_coalescing:", "  enabled: false"]
POLICIES = {
    "roundrobin": ("roundrobin", []),
    "consistent_hash": ("hdr(X-Prompt-Hash)", ["hash-type consistent"]),
}


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over HAProxy's Unix-socket frontend."""

    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def counter(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def run(policy: str, prompts: int, repeats: int, seed: int) -> dict:
    from cluster import Cluster  # needs DROVERD_BIN and friends in the environment
    balance, lines = POLICIES[policy]
    order = [p for p in range(prompts) for _ in range(repeats)]
    random.Random(seed).shuffle(order)
    cluster = Cluster(3, mode="http", balance=balance, backend_lines=lines, extra_yaml=OPENAI_YAML)
    try:
        cluster.start()
        conn = UnixHTTPConnection(cluster.haproxy.frontend)
        for p in order:
            prompt = f"Shared prefix of an evaluation set, question {p}:"
            body = json.dumps({"model": "sim", "prompt": prompt, "max_tokens": 8, "seed": 7})
            headers = {"Content-Type": "application/json",
                       "X-Prompt-Hash": hashlib.sha256(prompt.encode()).hexdigest()[:16]}
            conn.request("POST", "/v1/completions", body, headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status} for prompt {p}")
        conn.close()
        per = [(counter(d.metrics_port(), "drover_prompt_cache_hits_total"),
                counter(d.metrics_port(), "drover_prompt_cache_misses_total")) for d in cluster.instances]
    finally:
        cluster.close()
    hits, misses = sum(h for h, _ in per), sum(m for _, m in per)
    return {"policy": policy, "requests": len(order), "hits": int(hits), "misses": int(misses),
            "hit_ratio": round(hits / max(1.0, hits + misses), 3),
            "per_instance_lookups": [int(h + m) for h, m in per]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build tree with bin/droverd and bin/drover-worker")
    ap.add_argument("--prompts", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for var, name in (("DROVERD_BIN", "droverd"), ("DROVER_WORKER_BIN", "drover-worker"),
                      ("DROVERCTL_BIN", "droverctl")):
        os.environ.setdefault(var, os.path.abspath(os.path.join(args.build, "bin", name)))
    ideal = round((args.repeats - 1) / args.repeats, 3)
    print(f"{args.prompts} prompts x {args.repeats} repeats, 3 instances; ideal hit ratio {ideal}")
    for policy in POLICIES:
        print(json.dumps(run(policy, args.prompts, args.repeats, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
