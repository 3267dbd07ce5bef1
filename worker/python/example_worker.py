#!/usr/bin/env python3
"""An example drover worker: a tiny deterministic word-level Markov "engine" on the Python SDK.

It stands in for a real model so the SDK can be run, tested and measured anywhere:

- generate: a bigram chain over a short built-in text. Each request gets its own PRNG seeded
  from (model, prompt, seed), so the same request always produces the same text (droverd's
  stream failover relies on that) and different seeds usually differ. The chain starts from the
  prompt's last word when the text knows it. ``temperature`` 0 is greedy (the most frequent
  successor; the seed does not matter). The generator never ends by itself: the SDK stops it at
  ``max_tokens`` or a stop string. One piece per word, with a leading space after the first.
- tokenize: the UTF-8 bytes of the text; detokenize: bytes back to text (invalid sequences
  become U+FFFD); a token outside 0..255 is -32602.
- load_model / unload_model: any model id is accepted (all share the chain, seeded apart).

Run it under droverd with ``workers.command: [python3, /abs/path/worker/python/example_worker.py]``
and optionally ``--tokens-per-s N`` (pace generation so streaming and cancel are observable),
``--ttft-ms MS`` (delay before the first word), ``--load-ms MS`` (slow init) and ``--model ID``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from drover_worker import GenerateRequest, InitSettings, InvalidParams, Worker, main

# Written for drover; any text works. Words keep their punctuation, so sentences come out.
CORPUS = """
The drover rose before dawn and walked the herd down to the river. The cattle drank slowly
while the light came up over the hills, and the wind carried dust from the long road behind
them. By noon the herd moved across the plains at a steady pace, and the drover counted every
head twice, because a lost calf in the grass is a lost week of pay. At dusk they made camp near
the water. The fire burned low, the stars came out one by one, and the night was quiet except
for the cattle and the wind. In the morning the rain came, cold and grey, and the road turned
to mud. Still the drover walked the herd on, over the hills and down to the next river, because
the market does not wait for the weather and the cattle do not wait for the market.
"""


class MarkovChain:
    """Word bigrams of a text: for each word, the words that follow it (with repeats)."""

    def __init__(self, text: str) -> None:
        words = text.split()
        self.words: list[str] = words
        self.successors: dict[str, list[str]] = {}
        # The text wraps around, so every word has a successor and the chain never dead-ends.
        for current, following in zip(words, words[1:] + words[:1]):
            self.successors.setdefault(current, []).append(following)
        self._greedy: dict[str, str] = {
            w: max(set(nexts), key=lambda n: (nexts.count(n), -nexts.index(n)))
            for w, nexts in self.successors.items()
        }

    def start(self, prompt: str, rng: random.Random) -> str:
        tail = prompt.split()[-1:] or [""]
        return tail[0] if tail[0] in self.successors else rng.choice(self.words)

    def next(self, word: str, rng: random.Random, greedy: bool) -> str:
        return self._greedy[word] if greedy else rng.choice(self.successors[word])


def request_rng(model: str, prompt: str, seed: int) -> random.Random:
    """A PRNG that depends only on its inputs (hash() of str is salted per process)."""
    digest = hashlib.blake2b(f"{model}\0{seed}\0{prompt}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


class MarkovWorker(Worker):
    """The example engine: a Markov chain per request, UTF-8 bytes as tokens."""

    def __init__(self, model: str, tokens_per_s: float, ttft_ms: float, load_ms: float) -> None:
        self._default_model = model
        self._tokens_per_s = tokens_per_s
        self._ttft_s = ttft_ms / 1000.0
        self._load_s = load_ms / 1000.0
        self._chain: MarkovChain | None = None

    def load(self, settings: InitSettings) -> Sequence[str]:
        time.sleep(self._load_s)  # stands in for reading weights
        self._chain = MarkovChain(CORPUS)
        return [self._default_model]

    def generate(self, request: GenerateRequest) -> Iterator[str]:
        chain = self._chain
        if chain is None:
            raise RuntimeError("generate before load")
        greedy = request.temperature == 0.0
        rng = request_rng(request.model, request.prompt, 0 if greedy else request.seed)
        # Pacing is scheduled from the start, so per-word overhead does not lower the rate;
        # wait_cancelled returns at once when droverd cancels.
        next_at = time.monotonic() + self._ttft_s
        interval = 1.0 / self._tokens_per_s if self._tokens_per_s > 0 else 0.0
        word = chain.start(request.prompt, rng)
        first = True
        while True:
            delay = next_at - time.monotonic()
            if delay > 0 and request.wait_cancelled(delay):
                return
            word = chain.next(word, rng, greedy)
            yield word if first else " " + word
            first = False
            next_at += interval

    def tokenize(self, model: str, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def detokenize(self, model: str, tokens: Sequence[int]) -> str:
        if any(t < 0 or t > 255 for t in tokens):
            raise InvalidParams("tokens must be bytes (0..255) for this model")
        return bytes(tokens).decode("utf-8", errors="replace")

    def load_model(self, model: str, params: Mapping[str, Any]) -> None:
        pass  # every model id shares the chain; requests are seeded apart by model id

    def unload_model(self, model: str) -> None:
        pass


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="markov", help="model id served (default: markov)")
    parser.add_argument(
        "--tokens-per-s", type=float, default=0.0, help="pace generation (0: as fast as it goes)"
    )
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first word")
    parser.add_argument("--load-ms", type=float, default=0.0, help="time init takes")
    args = parser.parse_args()
    if args.tokens_per_s < 0 or args.ttft_ms < 0 or args.load_ms < 0:
        parser.error("--tokens-per-s, --ttft-ms and --load-ms must not be negative")
    return args


def cli() -> None:
    args = parse_args()
    main(MarkovWorker(args.model, args.tokens_per_s, args.ttft_ms, args.load_ms))


if __name__ == "__main__":
    cli()
