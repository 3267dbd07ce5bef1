#!/usr/bin/env python3
"""The Python example worker, except that its hello claims capabilities.shm although the SDK
cannot use it: it reads the control socket with plain recv (the descriptors droverd attaches to
init are dropped) and its init reply names no transport. droverd must keep this worker on the
socket, with one warn log, and serve through it as usual."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "worker", "python"))

import drover_worker  # noqa: E402

_send = drover_worker.WorkerRuntime._send


def _send_claiming_shm(self, message):
    if message.get("method") == "hello":
        message = dict(message)
        message["params"] = dict(message["params"])
        message["params"]["capabilities"] = dict(message["params"]["capabilities"], shm=True)
    _send(self, message)


drover_worker.WorkerRuntime._send = _send_claiming_shm

import example_worker  # noqa: E402

example_worker.cli()
