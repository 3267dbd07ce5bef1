#!/usr/bin/env python3
"""A worker that completes the handshake, then sends a heartbeat whose fields have the wrong
JSON types: valid JSON-RPC, garbage content. droverd must replace it, not crash."""
import json
import os
import socket

s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["DROVER_CONTROL_SOCKET"])
f = s.makefile("rwb")


def send(msg):
    f.write((json.dumps(msg) + "\n").encode())
    f.flush()


send({"jsonrpc": "2.0", "method": "hello",
      "params": {"worker_id": 0, "pid": os.getpid(), "protocol": 1, "capabilities": {}}})
init = json.loads(f.readline())
send({"jsonrpc": "2.0", "id": init["id"], "result": {"models": ["sim"]}})
send({"jsonrpc": "2.0", "method": "heartbeat",
      "params": {"inflight": "lots", "queue_depth": [], "rss_bytes": {}, "models": 7}})
f.readline()  # until droverd closes the link
