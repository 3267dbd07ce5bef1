#!/usr/bin/env python3
"""An independent, deliberately plain reference for tinyllm (Python 3 stdlib only).

Reads a llama2.c checkpoint (7 int32 header: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size, seq_len; negative vocab_size = separate classifier; float32 weights in llama2.c
order) and computes the Llama 2 forward pass with lists of Python floats (double precision),
written for readability rather than speed: RMSNorm, rotary embeddings, grouped-query
attention over all previous positions (no KV-cache tricks: keys and values are recomputed
from the stored per-position inputs), SwiGLU, classifier.

Also reads llama2.c's version-2 export (magic "ak42", Q8_0 int8 weights with a float32 scale
per group) and then computes runq.c's forward pass: the weights are the dequantized values,
and every matmul input is first quantized the same way (scale = max|x| / 127 per group,
round half away from zero), i.e. the same products as runq.c's int8 dot products, summed in
double.

Also implements llama2.c's tokenizer encode() the slow, literal way (rescan every pair after
every merge).

Usage:
  reference_forward.py logits MODEL --tokens 1,5,9        -> {"logits": [[...], ...]} (JSON)
  reference_forward.py encode MODEL TOKENIZER < texts.json -> [[ids], ...] (JSON)
"""
import argparse
import array
import json
import math
import struct
import sys


MAGIC = 0x616B3432


def f32(v):
    """v rounded to float32 (the C++ side quantizes float32 values)."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def read_q8_checkpoint(data):
    """llama2.c version 2: 256-byte header, float32 norms, then each matrix as int8 + scales."""
    version, = struct.unpack("<i", data[4:8])
    if version != 2:
        raise SystemExit(f"version {version}: only 2 (Q8_0) is read here")
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", data[8:36])
    shared = data[36] == 1
    group_size, = struct.unpack("<i", data[37:41])
    head_size = dim // n_heads
    kv_dim = head_size * n_kv_heads
    at = 256

    def floats(count):
        nonlocal at
        out = array.array("f")
        out.frombytes(data[at:at + 4 * count])
        if sys.byteorder != "little":
            out.byteswap()
        at += 4 * count
        return [float(x) for x in out]

    def matrix(rows, cols):
        nonlocal at
        q = array.array("b")
        q.frombytes(data[at:at + rows * cols])
        at += rows * cols
        scales = floats(rows * cols // group_size)
        flat = [q[i] * scales[i // group_size] for i in range(rows * cols)]
        return [flat[r * cols:(r + 1) * cols] for r in range(rows)]

    w = {}
    flat = floats(n_layers * dim)
    w["rms_att"] = [flat[i * dim:(i + 1) * dim] for i in range(n_layers)]
    flat = floats(n_layers * dim)
    w["rms_ffn"] = [flat[i * dim:(i + 1) * dim] for i in range(n_layers)]
    w["rms_final"] = floats(dim)
    w["embedding"] = matrix(vocab, dim)
    for name, rows, cols in (("wq", dim, dim), ("wk", kv_dim, dim), ("wv", kv_dim, dim),
                             ("wo", dim, dim), ("w1", hidden, dim), ("w2", dim, hidden),
                             ("w3", hidden, dim)):
        w[name] = [matrix(rows, cols) for _ in range(n_layers)]
    w["classifier"] = w["embedding"] if shared else matrix(vocab, dim)
    if at != len(data):
        raise SystemExit(f"{len(data) - at} bytes left over; not the expected layout")
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv_heads, vocab=vocab, seq_len=seq_len, group_size=group_size)
    return cfg, w


def read_checkpoint(path):
    with open(path, "rb") as f:
        data = f.read()
    if struct.unpack("<I", data[:4])[0] == MAGIC:
        return read_q8_checkpoint(data)
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    floats = array.array("f")
    floats.frombytes(data[28:])
    if sys.byteorder != "little":
        floats.byteswap()
    head_size = dim // n_heads
    kv_dim = head_size * n_kv_heads
    at = 0

    def take(count):
        nonlocal at
        out = floats[at:at + count]
        at += count
        return [float(x) for x in out]

    def matrices(rows, cols):
        """n_layers matrices of rows x cols, as lists of row lists."""
        out = []
        for _ in range(n_layers):
            flat = take(rows * cols)
            out.append([flat[r * cols:(r + 1) * cols] for r in range(rows)])
        return out

    def vectors(size):
        return [take(size) for _ in range(n_layers)]

    w = {}
    flat = take(vocab * dim)
    w["embedding"] = [flat[t * dim:(t + 1) * dim] for t in range(vocab)]
    w["rms_att"] = vectors(dim)
    w["wq"] = matrices(dim, dim)
    w["wk"] = matrices(kv_dim, dim)
    w["wv"] = matrices(kv_dim, dim)
    w["wo"] = matrices(dim, dim)
    w["rms_ffn"] = vectors(dim)
    w["w1"] = matrices(hidden, dim)
    w["w2"] = matrices(dim, hidden)
    w["w3"] = matrices(hidden, dim)
    w["rms_final"] = take(dim)
    take(seq_len * head_size)  # legacy freq_cis_real and freq_cis_imag tables (unused)
    if shared:
        w["classifier"] = w["embedding"]
    else:
        flat = take(vocab * dim)
        w["classifier"] = [flat[t * dim:(t + 1) * dim] for t in range(vocab)]
    if at != len(floats):
        raise SystemExit(f"{path}: {len(floats) - at} floats left over; not the expected layout")
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv_heads, vocab=vocab, seq_len=seq_len)
    return cfg, w


def matvec(m, x):
    return [sum(a * b for a, b in zip(row, x)) for row in m]


def q8_round_trip(x, group_size):
    """x quantized to Q8_0 and back (runq.c's quantize(), then q * scale)."""
    out = []
    for g in range(0, len(x), group_size):
        group = [f32(v) for v in x[g:g + group_size]]
        scale = f32(max(abs(v) for v in group) / 127.0)
        for v in group:
            q = 0 if scale == 0 else math.floor(abs(f32(v / scale)) + 0.5) * (1 if v >= 0 else -1)
            out.append(q * scale)
    return out


def rmsnorm(x, weight):
    mean_square = sum(v * v for v in x) / len(x)
    scale = 1.0 / math.sqrt(mean_square + 1e-5)
    return [wi * v * scale for wi, v in zip(weight, x)]


def softmax(xs):
    m = max(xs)
    e = [math.exp(v - m) for v in xs]
    s = sum(e)
    return [v / s for v in e]


def rope(vec, pos, head_size):
    """Rotates each (2i, 2i+1) pair inside each head by pos * 10000^(-2i/head_size)."""
    out = list(vec)
    for start in range(0, len(vec), head_size):
        for i in range(head_size // 2):
            theta = pos * 10000.0 ** (-(2.0 * i) / head_size)
            c, s = math.cos(theta), math.sin(theta)
            a, b = vec[start + 2 * i], vec[start + 2 * i + 1]
            out[start + 2 * i] = a * c - b * s
            out[start + 2 * i + 1] = a * s + b * c
    return out


def forward_all(cfg, w, tokens):
    """Logits after each prefix of `tokens`: list of len(tokens) lists of vocab floats."""
    dim, n_heads, n_kv_heads = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    head_size = dim // n_heads
    group_size = cfg.get("group_size")

    def mm(m, x):  # Q8_0 models: the input is quantized first, as in runq.c
        return matvec(m, q8_round_trip(x, group_size) if group_size else x)

    group = n_heads // n_kv_heads
    # Residual stream of every position, layer by layer (full causal attention each time).
    xs = [list(w["embedding"][t]) for t in tokens]
    for layer in range(cfg["n_layers"]):
        normed = [rmsnorm(x, w["rms_att"][layer]) for x in xs]
        qs = [rope(mm(w["wq"][layer], h), p, head_size) for p, h in enumerate(normed)]
        ks = [rope(mm(w["wk"][layer], h), p, head_size) for p, h in enumerate(normed)]
        vs = [mm(w["wv"][layer], h) for h in normed]
        new_xs = []
        for p, x in enumerate(xs):
            attended = []
            for h in range(n_heads):
                kvh = h // group
                q = qs[p][h * head_size:(h + 1) * head_size]
                scores = []
                for t in range(p + 1):
                    k = ks[t][kvh * head_size:(kvh + 1) * head_size]
                    scores.append(sum(a * b for a, b in zip(q, k)) / math.sqrt(head_size))
                weights = softmax(scores)
                head_out = [0.0] * head_size
                for t in range(p + 1):
                    v = vs[t][kvh * head_size:(kvh + 1) * head_size]
                    for i in range(head_size):
                        head_out[i] += weights[t] * v[i]
                attended.extend(head_out)
            x = [a + b for a, b in zip(x, mm(w["wo"][layer], attended))]
            h = rmsnorm(x, w["rms_ffn"][layer])
            gate = mm(w["w1"][layer], h)
            up = mm(w["w3"][layer], h)
            act = [g / (1.0 + math.exp(-g)) * u for g, u in zip(gate, up)]
            x = [a + b for a, b in zip(x, mm(w["w2"][layer], act))]
            new_xs.append(x)
        xs = new_xs
    return [mm(w["classifier"], rmsnorm(x, w["rms_final"])) for x in xs]


def read_tokenizer(path, vocab_size):
    with open(path, "rb") as f:
        data = f.read()
    at = 4  # max_token_length
    pieces, scores = [], []
    for _ in range(vocab_size):
        score, length = struct.unpack("<fi", data[at:at + 8])
        at += 8
        pieces.append(data[at:at + length])
        scores.append(score)
        at += length
    return pieces, scores


def encode(pieces, scores, text, bos=True):
    """llama2.c encode(): BOS, dummy prefix, code points or byte fallback, best-score merges."""
    def lookup(b):
        for i, p in enumerate(pieces):
            if p == b:
                return i
        return -1

    data = text.encode("utf-8")
    tokens = [1] if bos else []
    if data:
        tokens.append(lookup(b" "))
    i = 0
    while i < len(data):
        j = i + 1
        while j < len(data) and (data[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        cp = data[i:j]
        t = lookup(cp)
        if t >= 0:
            tokens.append(t)
        else:
            tokens.extend(b + 3 for b in cp)
        i = j
    while True:
        best, best_id, best_idx = -1e10, -1, -1
        for k in range(len(tokens) - 1):
            t = lookup(pieces[tokens[k]] + pieces[tokens[k + 1]])
            # float32 scores compare as float32 in C; Python doubles hold them exactly
            if t != -1 and scores[t] > best:
                best, best_id, best_idx = scores[t], t, k
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("logits")
    lg.add_argument("model")
    lg.add_argument("--tokens", required=True)
    en = sub.add_parser("encode")
    en.add_argument("model")
    en.add_argument("tokenizer")
    args = ap.parse_args()
    cfg, w = read_checkpoint(args.model)
    if args.cmd == "logits":
        tokens = [int(t) for t in args.tokens.split(",")]
        print(json.dumps({"tokens": tokens, "logits": forward_all(cfg, w, tokens)}))
    else:
        pieces, scores = read_tokenizer(args.tokenizer, cfg["vocab"])
        texts = json.load(sys.stdin)
        print(json.dumps([encode(pieces, scores, t) for t in texts]))


if __name__ == "__main__":
    main()
