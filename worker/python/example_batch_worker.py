#!/usr/bin/env python3
"""An example drover worker whose engine computes requests together: ``generate_batch``.

The engine is example_worker.py's Markov chain, run the way a batching engine (vLLM, MLX,
transformers' ``generate`` on a padded batch) runs a model: one step advances every sequence of
the batch by one word, and a sequence leaves the batch when it has ``max_tokens`` words or is
cancelled. droverd's batch queue (``batch_queue.enabled: true``) sends concurrent calls to this
worker as one JSON-RPC batch of at most ``--max-batch`` calls (the init reply's ``max_batch``);
the SDK hands its unstreamed ``generate`` calls to :meth:`generate_batch` in one call. Streamed
calls go to the per-request ``generate`` inherited from the example, which yields the same
words: a request's text does not depend on the path it took, nor on its batch-mates.

A prompt that is only whitespace has no word to start the chain from: its member of the batch
is answered ``-32602`` and the others are served (the per-member error of generate_batch).
``--log-batches`` logs the size of every batch (on stderr, which droverd's log shows).

Run it under droverd with the batch queue on, e.g.::

    workers:
      count: 1
      command: [python3, /abs/path/worker/python/example_batch_worker.py, --max-batch, "8"]
    batch_queue:
      enabled: true
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from drover_worker import Completion, GenerateRequest, InvalidParams, WorkerError, main
from example_worker import MarkovWorker, request_rng

_log = logging.getLogger("example.batch")


class BatchMarkovWorker(MarkovWorker):
    """The Markov example with a batched engine for unstreamed calls."""

    def __init__(self, model: str, max_batch: int, log_batches: bool) -> None:
        super().__init__(model, tokens_per_s=0.0, ttft_ms=0.0, load_ms=0.0)
        self.max_batch = max_batch
        self._log_batches = log_batches

    def generate_batch(
        self, requests: Sequence[GenerateRequest]
    ) -> list[str | Completion | WorkerError]:
        chain = self._chain
        if chain is None:
            raise RuntimeError("generate before load")
        if self._log_batches:
            _log.info("generate_batch: %d requests", len(requests))
        results: list[str | Completion | WorkerError | None] = [None] * len(requests)
        words: list[list[str]] = [[] for _ in requests]
        state = {}  # index -> (rng, greedy, current word) of the sequences still running
        for i, r in enumerate(requests):
            if not r.prompt.strip():
                results[i] = InvalidParams("prompt must contain a word to start the chain from")
                continue
            greedy = r.temperature == 0.0
            rng = request_rng(r.model, r.prompt, 0 if greedy else r.seed)
            state[i] = (rng, greedy, chain.start(r.prompt, rng))
        # One step per word for the whole batch, as a model's forward pass would be.
        while state:
            for i in list(state):
                rng, greedy, word = state[i]
                r = requests[i]
                if r.cancelled or len(words[i]) >= r.max_tokens:
                    finish = "cancelled" if r.cancelled else "length"
                    results[i] = Completion(" ".join(words[i]), finish, len(words[i]))
                    del state[i]
                    continue
                word = chain.next(word, rng, greedy)
                words[i].append(word)
                state[i] = (rng, greedy, word)
        assert all(res is not None for res in results)
        return results  # type: ignore[return-value]  # every slot was filled above


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="markov", help="model id served (default: markov)")
    parser.add_argument(
        "--max-batch", type=int, default=8, help="most requests computed together (default: 8)"
    )
    parser.add_argument("--log-batches", action="store_true", help="log every batch's size")
    args = parser.parse_args()
    if args.max_batch < 1:
        parser.error("--max-batch must be a positive integer")
    main(BatchMarkovWorker(args.model, args.max_batch, args.log_batches))


if __name__ == "__main__":
    cli()
