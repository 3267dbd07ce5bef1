#!/usr/bin/env python3
"""Times droverd's model management with real tinyllm models (stdlib only).

  load      models.load on a worker: (a) cold first load, the file evicted from the page cache
            first; (b) reload after models.unload in the same worker (page cache warm);
            (c) load in a fresh worker (workers.kill, replacement ready, models.load).
            Worker-measured load_ms (mmap + tokenizer + one forward pass) and the admin
            round trip, for a big generated model and the shipped one.
  first     First request latency (unary generate, max_tokens 16): on-demand load with the
            file evicted / in page cache, after model_preload load+warmup, and steady state.
  ttft      Time to first generate.chunk at 1, 4 and 16 concurrent streaming requests on two
            tinyllm workers (--threads 1) serving the shipped model (preloaded), p50/p95/max,
            plus overall tokens/s.

Usage: bench/scenarios/model_timing.py BUILD_DIR [--model PATH] [--runs N] [--only load|first|ttft]
  BUILD_DIR      a build directory: bin/{droverd,drover-worker,drover-make-model}, models/
  --model PATH   big model to measure (llama2.c checkpoint, tokenizer.bin beside it); default:
                 one generated with drover-make-model under /tmp, deleted at the end.
  --runs N       samples per case in the load and first-request tables (default 5)
  --ttft-requests N, --ttft-max-tokens N   per concurrency level (default 160 requests of 64)
Cold cases need the model files evictable: no other process may map them (the shipped model is
copied to a private path for that); eviction is verified with mincore(2) and the tables say so
when it could not be.
Prints markdown tables. Every droverd is stopped and every temp dir removed, also on errors.
"""
import argparse
import ctypes
import mmap
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from droverd_util import Conn, Droverd, call, median_min_max, percentile  # noqa: E402

BIG_SHAPE = ["--dim", "512", "--hidden-dim", "1376", "--layers", "8", "--heads", "8",
             "--kv-heads", "8", "--vocab", "32000", "--seq-len", "256"]
PROMPT = "Once upon a time"


# --- page cache --------------------------------------------------------------------------------

class PageCache:
    """Resident fraction of a file through mincore(2) (libc via ctypes), and eviction through
    posix_fadvise(DONTNEED), which drops clean pages nobody has mapped."""

    def __init__(self):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_long]
            libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
            self.libc = libc
            self.resident(os.path.abspath(__file__))
        except (OSError, AttributeError):
            self.libc = None

    def resident(self, path):
        """Fraction of the file's pages in the page cache (None when mincore is unavailable).
        Mapping the file without touching it faults nothing in."""
        if self.libc is None:
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return 1.0
            addr = self.libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr is None or addr == ctypes.c_void_p(-1).value:
                raise OSError(ctypes.get_errno(), "mmap")
            try:
                pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
                vec = (ctypes.c_ubyte * pages)()
                if self.libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                    raise OSError(ctypes.get_errno(), "mincore")
                return sum(b & 1 for b in bytes(vec)) / pages
            finally:
                self.libc.munmap(ctypes.c_void_p(addr), size)
        finally:
            os.close(fd)

    @staticmethod
    def drop(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages (a freshly written file) cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    @staticmethod
    def read_s(path):
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 22):
                pass
        return time.perf_counter() - t0

    def evict(self, paths, tries=40):
        """Evicts the files; returns (verified, the model file's resident fraction after, how).
        Retries briefly: a worker that just unloaded the model may still be unmapping it."""
        model = paths[0]
        if self.libc is None:
            # No mincore: compare a timed read after eviction with a warm one, then evict again
            # (the timed read brought the file back).
            for p in paths:
                self.drop(p)
            cold = self.read_s(model)
            warm = self.read_s(model)
            for p in paths:
                self.drop(p)
            return cold > 2 * warm, None, f"read timing: evicted {cold*1e3:.0f} ms vs warm {warm*1e3:.0f} ms"
        frac = 1.0
        for _ in range(tries):
            for p in paths:
                self.drop(p)
            frac = self.resident(model)
            if frac < 0.01:
                return True, frac, "mincore"
            time.sleep(0.05)
        return False, frac, "mincore"

    def warm(self, path):
        if self.resident(path) is None or self.resident(path) < 0.999:
            self.read_s(path)


# --- helpers -----------------------------------------------------------------------------------

def ms_since(t0):
    return (time.perf_counter() - t0) * 1000.0


def fmt3(samples, digits=1):
    med, lo, hi = median_min_max(samples)
    return f"{med:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def catalog_yaml(models):
    lines = ["models:"]
    for mid, path in models.items():
        lines.append(f"  {mid}: {{backend: tinyllm, path: {path}, options: {{threads: 1}}}}")
    return "\n".join(lines) + "\n"


def preload_yaml(model_id):
    return ("model_preload:\n  enabled: true\n  models:\n"
            f"    - model_id: {model_id}\n      warmup_requests: 2\n      max_tokens: 16\n"
            f"      warmup_prompts: [\"{PROMPT}\"]\n")


def admin_load(d, model):
    t0 = time.perf_counter()
    r = call(d.admin, "models.load", {"model": model}, timeout=300)
    rtt = ms_since(t0)
    res = r.get("result")
    if not res or res["failed"] or len(res["loaded"]) != 1:
        raise RuntimeError(f"models.load {model}: unexpected answer {r}")
    return res["loaded"][0]["load_ms"], rtt


def admin_unload(d, model):
    r = call(d.admin, "models.unload", {"model": model}, timeout=60)
    if "result" not in r:
        raise RuntimeError(f"models.unload {model}: {r}")
    state = [m for m in call(d.sock, "models.list")["result"]["models"] if m["id"] == model]
    if not state or state[0]["state"] != "unloaded":
        raise RuntimeError(f"{model} still loaded after models.unload: {state}")


def generate(conn, model, max_tokens=16):
    params = {"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0}
    if model:
        params["model"] = model
    t0 = time.perf_counter()
    r = conn.request("generate", params)
    ms = ms_since(t0)
    if "result" not in r:
        raise RuntimeError(f"generate {model}: {r}")
    if r["result"]["usage"]["completion_tokens"] != max_tokens:
        raise RuntimeError(f"generate {model}: expected {max_tokens} tokens: {r}")
    return ms, r["result"]


# --- 1. load on a worker -----------------------------------------------------------------------

def scenario_load(build, models, runs, pc):
    """models: {id: (model path, [files to evict])}. One sim worker holds the catalog models."""
    rows = []
    for mid, (path, files) in models.items():
        samples = {k: ([], []) for k in ("cold", "reload", "fresh")}
        evict_notes, resident_after = [], []
        with Droverd(build, ["count: 1"], extra_yaml=catalog_yaml({mid: path}), ready=1,
                     prefix="drover-mt-") as d:
            for _ in range(runs):
                # (a) cold: nobody maps the file (unloaded), evicted, then loaded.
                admin_unload(d, mid)
                ok, frac, how = pc.evict(files)
                evict_notes.append((ok, frac, how))
                load_ms, rtt = admin_load(d, mid)
                samples["cold"][0].append(load_ms)
                samples["cold"][1].append(rtt)
                after = pc.resident(path)
                if after is not None:
                    resident_after.append(after)
                # (b) reload in the same worker: unloaded (unmapped), pages still cached.
                admin_unload(d, mid)
                load_ms, rtt = admin_load(d, mid)
                samples["reload"][0].append(load_ms)
                samples["reload"][1].append(rtt)
                # (c) a fresh worker: kill, wait for the replacement, load there.
                old = d.slot(0)["pid"]
                call(d.admin, "workers.kill", {"id": 0})
                d.wait(lambda: (lambda w: w is not None and w["pid"] != old and w["state"] == "ready")(d.slot(0)), 60)
                load_ms, rtt = admin_load(d, mid)
                samples["fresh"][0].append(load_ms)
                samples["fresh"][1].append(rtt)
        verified = all(ok for ok, _, _ in evict_notes)
        fr = [f for _, f, _ in evict_notes if f is not None]
        how = evict_notes[0][2]
        if fr:
            note = (f"evicted, verified with {how}: max {max(fr)*100:.1f}% resident before load"
                    if verified else f"NOT verified ({how}): up to {max(fr)*100:.1f}% still resident")
            if resident_after:
                note += f"; {min(resident_after)*100:.0f}–{max(resident_after)*100:.0f}% resident after load"
        else:
            note = ("evicted, " if verified else "eviction NOT verified, ") + how
        rows.append((mid, "cold first load (file evicted)", samples["cold"], note))
        rows.append((mid, "reload after models.unload, same worker", samples["reload"], "page cache warm"))
        rows.append((mid, "fresh worker (workers.kill, replacement)", samples["fresh"], "page cache warm"))
    print(f"\n### 1. Model load on a worker (1 sim worker, catalog model, {runs} runs)\n")
    print("| model | case | worker load_ms median (min–max) | admin round trip ms median (min–max) | page cache |")
    print("|---|---|---|---|---|")
    for mid, case, (load, rtt), note in rows:
        print(f"| {mid} | {case} | {fmt3(load)} | {fmt3(rtt)} | {note} |")
    sys.stdout.flush()


# --- 2. first request latency ------------------------------------------------------------------

LOADED_RE = re.compile(r"model (\S+) loaded in ([\d.]+) ms \(worker: ([\d.]+) ms\)")


def scenario_first(build, models, runs, pc):
    base = ["count: 2"]  # sim workers; the tinyllm model comes from the catalog
    print(f"\n### 2. First request latency (2 sim workers + catalog model; unary generate, "
          f"max_tokens 16, temperature 0; {runs} runs, a fresh droverd per sample)\n")
    print("| model | case | latency ms median (min–max) | of which load (droverd-measured) ms |")
    print("|---|---|---|---|")
    for mid, (path, files) in models.items():
        cat = catalog_yaml({mid: path})
        cold_evicted, cold_warm, cold_load_e, cold_load_w = [], [], [], []
        pre_first, steady, second_after_demand = [], [], []
        unverified = 0
        for _ in range(runs):
            for evict in (True, False):
                with Droverd(build, base, extra_yaml=cat, log_level="info", prefix="drover-mt-") as d:
                    if evict:
                        ok, _, _ = pc.evict(files)
                        unverified += not ok
                    else:
                        pc.warm(path)
                    with Conn(d.sock, timeout=300) as c:
                        ms, _ = generate(c, mid)
                        if not evict:
                            second_after_demand.append(generate(c, mid)[0])
                    m = LOADED_RE.findall(d.log_text())
                    load = float(m[0][1]) if m else float("nan")
                    (cold_evicted if evict else cold_warm).append(ms)
                    (cold_load_e if evict else cold_load_w).append(load)
            pc.warm(path)
            with Droverd(build, base, extra_yaml=cat + preload_yaml(mid), start_timeout=120,
                         prefix="drover-mt-") as d:
                with Conn(d.sock, timeout=300) as c:
                    pre_first.append(generate(c, mid)[0])
                    steady.extend(generate(c, mid)[0] for _ in range(20))
        ev = "file evicted" + ("" if unverified == 0 else f", eviction NOT verified in {unverified} runs")
        print(f"| {mid} | cold: on-demand load, {ev} | {fmt3(cold_evicted)} | {fmt3(cold_load_e)} |")
        print(f"| {mid} | cold: on-demand load, file in page cache | {fmt3(cold_warm)} | {fmt3(cold_load_w)} |")
        print(f"| {mid} | second request after an on-demand load | {fmt3(second_after_demand)} | – |")
        print(f"| {mid} | first request after model_preload (load + 2 warmup requests) | {fmt3(pre_first)} | – |")
        print(f"| {mid} | steady state (next 20 requests, pooled over runs) | {fmt3(steady)} | – |")
        sys.stdout.flush()


# --- 3. TTFT under concurrency -----------------------------------------------------------------

def ttft_level(d, conc, per_conn, max_tokens):
    conns = [Conn(d.sock, timeout=120) for _ in range(conc)]
    results = [[] for _ in range(conc)]
    errors = []
    start = threading.Barrier(conc + 1)

    def run(i):
        c = conns[i]
        try:
            start.wait()
            for k in range(per_conn):
                params = {"prompt": PROMPT, "max_tokens": max_tokens, "stream": True,
                          "seed": 1 + i * 1000 + k}
                t0 = time.perf_counter()
                rid = c.send("generate", params)
                ttft = None
                while True:
                    m = c.read()
                    if m.get("method") == "generate.chunk":
                        if ttft is None and m["params"]["id"] == rid:
                            ttft = ms_since(t0)
                        continue
                    if m.get("id") == rid:
                        break
                if "result" not in m or ttft is None:
                    raise RuntimeError(f"stream without chunks or failed: {m}")
                r = m["result"]
                results[i].append((ttft, r["timing"]["ttft_ms"], r["usage"]["completion_tokens"],
                                   t0, time.perf_counter()))
        except BaseException as e:  # reported by the main thread
            errors.append(e)
            try:
                start.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=run, args=(i,)) for i in range(conc)]
    try:
        for t in threads:
            t.start()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        start.wait()
        for t in threads:
            t.join()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        for c in conns:
            c.close()
    if errors:
        raise errors[0]
    flat = [x for r in results for x in r]
    wall = max(x[4] for x in flat) - min(x[3] for x in flat)
    tokens = sum(x[2] for x in flat)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return flat, tokens / wall, tokens, wall, cpu


def scenario_ttft(build, levels, total_requests, max_tokens):
    workers = ["count: 2", "backend: tinyllm"]
    extra = "routing:\n  strategy: least_busy\n" + preload_yaml("tinyllm")
    print(f"\n### 3. TTFT under concurrency (2 tinyllm workers `[drover-worker, --threads, \"1\"]`, "
          f"shipped model preloaded + warmed, routing least_busy; streaming generate, "
          f"max_tokens {max_tokens}, temperature 0.8, one connection per concurrent request, "
          f"closed loop)\n")
    print("| concurrent | requests | TTFT ms p50 | p95 | max | droverd-side ttft_ms p50 | "
          "tokens/s overall | tokens/request | client CPU s / wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    with Droverd(build, workers, worker_args=["--threads", "1"], extra_yaml=extra,
                 start_timeout=60, prefix="drover-mt-") as d:
        for conc in levels:
            per_conn = max(1, total_requests // conc)
            flat, tps, tokens, wall, cpu = ttft_level(d, conc, per_conn, max_tokens)
            client = [x[0] for x in flat]
            server = [x[1] for x in flat]
            print(f"| {conc} | {len(flat)} | {percentile(client, 50):.2f} | {percentile(client, 95):.2f} | "
                  f"{max(client):.2f} | {percentile(server, 50):.2f} | {tps:,.0f} | "
                  f"{tokens / len(flat):.1f} | {cpu:.2f} / {wall:.2f} |")
            sys.stdout.flush()


# --- main --------------------------------------------------------------------------------------

def machine():
    info = {"nproc": len(os.sched_getaffinity(0))}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for key in ("Model name", "CPU family", "Model", "Hypervisor vendor"):
            m = re.search(rf"^{key}:\s*(.+)$", out, re.M)
            if m:
                info[key] = m.group(1).strip()
    except OSError:
        pass
    return info


def describe(path):
    """Shape and size from the llama2.c header (7 int32: dim, hidden, layers, heads, kv heads,
    vocab (negative: separate classifier), seq_len)."""
    with open(path, "rb") as f:
        dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", f.read(28))
    kv_dim = dim * kv // heads
    params = (abs(vocab) * dim * (2 if vocab < 0 else 1) + dim
              + layers * (2 * dim + 2 * dim * dim + 2 * dim * kv_dim + 3 * dim * hidden))
    return (f"{os.path.getsize(path):,} bytes, {params / 1e6:.1f} M params (dim {dim}, hidden {hidden}, "
            f"{layers} layers, {heads}/{kv} heads, vocab {abs(vocab)}"
            f"{', separate classifier' if vocab < 0 else ''}, seq_len {seq})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--model", help="big model to use instead of generating one")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ttft-requests", type=int, default=160,
                    help="requests per concurrency level in the TTFT table")
    ap.add_argument("--ttft-max-tokens", type=int, default=64)
    ap.add_argument("--only", choices=["load", "first", "ttft"], action="append",
                    help="run only these parts (repeatable)")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    parts = args.only or ["load", "first", "ttft"]
    # A SIGTERM must still stop the droverds and remove the temp dirs (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    m = machine()
    print(f"machine: nproc {m['nproc']}, {m.get('Model name', '?')} (CPU family {m.get('CPU family', '?')}, "
          f"model {m.get('Model', '?')}{', ' + m['Hypervisor vendor'] + ' guest' if 'Hypervisor vendor' in m else ''}), "
          f"kernel {os.uname().release}; load average at start {os.getloadavg()[0]:.2f}")
    print("command: " + " ".join(["bench/scenarios/model_timing.py"] + sys.argv[1:]))
    print("Python threads take the time stamps; their overhead (tens of µs per message) is small "
          "against ms-scale latencies, but the client shares the machine's cores with droverd and "
          "the workers (its CPU time is in the TTFT table).")

    tmp = tempfile.mkdtemp(prefix="drover-mt-models-", dir="/tmp")
    pc = PageCache()
    try:
        if args.model:
            big = os.path.abspath(args.model)
            big_tok = os.path.join(os.path.dirname(big), "tokenizer.bin")
        else:
            big = os.path.join(tmp, "big", "model.bin")
            big_tok = os.path.join(tmp, "big", "tokenizer.bin")
            os.makedirs(os.path.dirname(big))
            subprocess.run([f"{build}/bin/drover-make-model", "--model", big] + BIG_SHAPE,
                           check=True, stdout=subprocess.DEVNULL)
        # A private copy of the shipped model: other processes may map build/models/tinyllm.bin
        # (other droverds on this machine), and mapped pages cannot be evicted.
        shipped = os.path.join(tmp, "shipped", "tinyllm.bin")
        os.makedirs(os.path.dirname(shipped))
        shutil.copyfile(f"{build}/models/tinyllm.bin", shipped)
        shutil.copyfile(f"{build}/models/tokenizer.bin", os.path.join(tmp, "shipped", "tokenizer.bin"))
        models = {"big": (big, [big, big_tok]), "shipped": (shipped, [shipped, os.path.join(tmp, "shipped", "tokenizer.bin")])}
        hdr = {}
        for mid, (path, _) in models.items():
            shown = path if (args.model and mid == "big") else os.path.relpath(path, tmp)
            hdr[mid] = f"{mid}: {shown}, {describe(path)}"
        print("models: " + "; ".join(hdr.values()) + " (files under a temp dir, removed at the end)")
        if pc.libc is None:
            print("note: mincore(2) unavailable through ctypes; eviction is checked by read timing")

        if "load" in parts:
            scenario_load(build, models, args.runs, pc)
        if "first" in parts:
            scenario_first(build, models, args.runs, pc)
        if "ttft" in parts:
            scenario_ttft(build, (1, 4, 16), args.ttft_requests, args.ttft_max_tokens)
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
