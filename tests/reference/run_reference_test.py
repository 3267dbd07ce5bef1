#!/usr/bin/env python3
"""CTest driver (label `reference`): tinyllm against the plain Python reference.

For each tiny generated model (grouped-query attention with a shared classifier; multi-query
attention with a separate classifier), compares tinyllm's logits at every position of a token
sequence, with 1 and 2 threads, to reference_forward.py's, and compares tinyllm's tokenizer
encode() with the reference encode() on ASCII, UTF-8 and odd inputs. Prints one line per check
and a closing 'N passed, N failed' line; exits non-zero on any failure.

Usage: run_reference_test.py --make-model BIN --probe BIN --workdir DIR
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_forward as ref  # noqa: E402

# Relative tolerance on each logit: float32 accumulation in C++ vs double in Python differ by
# ~1e-6 on these sizes; a real bug (wrong head, wrong rotation, wrong layout) is off by O(1).
RTOL = 1e-4
# Q8_0: measured 1.3e-6, but an activation that sits on a rounding boundary of its
# quantization may round to neighbouring int8 values in float32 (C++) and double (Python): one
# step of one product, hence the margin. Leaving out the activations' quantization (runq.c's
# defining difference from run.c) is off by 0.14; wrong scales or layout by O(1).
RTOL_Q8 = 1e-3

TEXTS = [
    "Once upon a time",
    "",
    " ",
    "  leading and trailing spaces  ",
    "the little dog went home, and the cat said \"hello\"!",
    "line one\nline two\ttabbed",
    "héllo wörld — naïve café",
    "日本語のテキスト",
    "emoji: 🐶🐱 and a flag 🇫🇷",
    "bytes \x01\x7f and ~^`{}|",
    "ThE QuIcK BrOwN FoX jumps over the lazy dog 0123456789",
]


def run(cmd, stdin=None):
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-model", required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        if ok:
            passed += 1
        else:
            failed += 1

    # (preset, Q8_0 group size or None): float32 models, and Q8_0 ones whose group sizes run
    # the int8 kernel's 16-byte blocks with a tail (24) and the tail alone (4).
    for preset, group_size in (("tiny", None), ("tiny-unshared", None), ("tiny", 24),
                               ("tiny-unshared", 4)):
        tokenizer = os.path.join(args.workdir, f"{preset}.tokenizer.bin")
        model = os.path.join(args.workdir, f"{preset}.bin")
        run([args.make_model, "--preset", preset, "--model", model, "--tokenizer", tokenizer])
        rtol = RTOL
        if group_size:
            f32_model = model
            model = os.path.join(args.workdir, f"{preset}.q8_0.bin")
            run([args.make_model, "--quantize", "q8_0", "--group-size", str(group_size),
                 "--from", f32_model, "--model", model])
            preset = f"{preset} Q8_0 group {group_size}"
            rtol = RTOL_Q8
        cfg, weights = ref.read_checkpoint(model)
        vocab, seq_len = cfg["vocab"], cfg["seq_len"]
        # BOS, then ids spread over the vocabulary (specials, bytes, characters, merges), long
        # enough that attention spans many positions but within the context.
        tokens = [1] + [(37 * i + 11) % vocab for i in range(1, min(seq_len, 14))]
        csv = ",".join(map(str, tokens))
        expected = ref.forward_all(cfg, weights, tokens)
        for threads in (1, 2):
            got = json.loads(run([args.probe, "logits", "--model", model, "--tokens", csv,
                                  "--threads", str(threads)]))["logits"]
            worst = 0.0
            ok = len(got) == len(expected)
            for g_row, e_row in zip(got, expected):
                ok = ok and len(g_row) == len(e_row)
                for g, e in zip(g_row, e_row):
                    worst = max(worst, abs(g - e) / max(1.0, abs(e)))
            argmax_ok = all(max(range(len(g)), key=g.__getitem__) == max(range(len(e)), key=e.__getitem__)
                            for g, e in zip(got, expected))
            check(f"{preset} logits at {len(tokens)} positions, {threads} thread(s)",
                  ok and worst <= rtol and argmax_ok,
                  f"max relative error {worst:.2e} (tolerance {rtol:.0e}), argmax equal: {argmax_ok}")
        if group_size:
            continue  # the tokenizer is the float32 model's, checked above

        pieces, scores = ref.read_tokenizer(tokenizer, vocab)
        got = json.loads(run([args.probe, "encode", "--model", model, "--tokenizer", tokenizer],
                             stdin=json.dumps(TEXTS)))
        for text, g in zip(TEXTS, got):
            e = ref.encode(pieces, scores, text)
            check(f"{preset} encode {text[:24]!r}", g == e, "" if g == e else f"tinyllm {g} != reference {e}")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
