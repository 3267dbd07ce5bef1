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

With --python-worker, the same questions for the Python SDK's example worker
(worker/python/example_worker.py, `workers.command: [python3, .../example_worker.py]`) instead:
  load      worker start (spawn -> ready; the example's init has no load time unless --load-ms),
            replacement after workers.kill, and admin models.load of a catalog model
            (`m2: {backend: example}`: the example's load_model is a no-op, so this is the
            control round trip through droverd and the SDK).
  first     First request latency on one worker: fresh worker, on-demand load_model, after
            model_preload (the worker's own model `markov`), steady state.
  tps       Tokens/s of the unpaced example: 1 worker and 2 workers, unary and streaming, plus
            the CPU time per token of the workers and of droverd.
  ttft      As above, on two Python workers (markov preloaded), repeated --runs times.

Usage: bench/scenarios/model_timing.py BUILD_DIR [--model PATH] [--runs N] [--only load|first|ttft]
       bench/scenarios/model_timing.py BUILD_DIR --python-worker [--python-args "FLAGS"] [--runs N]
                                       [--only load|first|tps|ttft]
  BUILD_DIR      a build directory: bin/{droverd,drover-worker,drover-make-model}, models/
  --model PATH   big model to measure (llama2.c checkpoint, tokenizer.bin beside it); default:
                 one generated with drover-make-model under /tmp, deleted at the end.
  --runs N       samples per case in the load and first-request tables (default 5); with
                 --python-worker also the tokens/s samples per row and the TTFT runs
  --ttft-requests N, --ttft-max-tokens N   per concurrency level (default 160 requests of 64)
  --python-worker    measure the Python example worker (needs only bin/droverd in BUILD_DIR)
  --python PATH      interpreter for it (default python3); --python-args "FLAGS": example flags
  --tps-seconds S, --tps-max-tokens N      per tokens/s sample (default 3 s of requests of 2000)
Cold cases need the model files evictable: no other process may map them (the shipped model is
copied to a private path for that); eviction is verified with mincore(2) and the tables say so
when it could not be.
Prints markdown tables. Every droverd is stopped and every temp dir removed, also on errors.
"""
import argparse
import ctypes
import json
import mmap
import os
import re
import resource
import shlex
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
    # cache: bypass, or from the second request on the prompt cache (on in config/runtime.yaml)
    # answers this repeated temperature-0 request in a fraction of a millisecond and "steady
    # state" measures cache hits instead of inference.
    params = {"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "cache": "bypass"}
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

def ttft_level(d, conc, per_conn, max_tokens, stream=True, seconds=None):
    """Closed loop: `conc` connections, each sending `per_conn` generates one after the other
    (with `seconds`: as many as start within that many seconds, at least one).
    Per request (client ms to its first generate.chunk -- the whole request when not `stream`,
    droverd's timing.ttft_ms, completion tokens, start, end); tokens/s over the level's wall
    time, tokens, wall s, and the client's CPU s."""
    conns = [Conn(d.sock, timeout=120) for _ in range(conc)]
    results = [[] for _ in range(conc)]
    errors = []
    start = threading.Barrier(conc + 1)

    def run(i):
        c = conns[i]
        try:
            start.wait()
            deadline = None if seconds is None else time.perf_counter() + seconds
            for k in range(per_conn):
                if deadline is not None and k > 0 and time.perf_counter() >= deadline:
                    break
                params = {"prompt": PROMPT, "max_tokens": max_tokens, "stream": stream,
                          "seed": 1 + i * 1000 + k, "cache": "bypass"}
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
                if not stream:
                    ttft = ms_since(t0)
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


# --- Python example worker (--python-worker) ---------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "worker", "python", "example_worker.py")
# A catalog model for the Python workers: the example's load_model accepts any id (a no-op).
PY_CATALOG = "models:\n  m2: {backend: example}\n"
READY_RE = re.compile(r"worker_id=(\d+) pid=(\d+) ready in (\d+) ms")
SDK_READY_RE = re.compile(r"pid=(\d+) \| INFO drover\.worker: worker \d+: ready with models .* in ([\d.]+) ms")
SLOW_LOAD_MS = 250


class LoadAverage:
    """Samples the 1-minute load average every `period` s on a thread; since(mark) summarises
    the samples taken after mark() (the machine is shared: the tables say what ran beside)."""

    def __init__(self, period=2.0):
        self.period = period
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self.stop.wait(self.period):
                return

    def mark(self):
        return len(self.samples)

    def since(self, mark):
        s = self.samples[mark:] + [os.getloadavg()[0]]
        return f"load average (1 min) {min(s):.2f}–{max(s):.2f}, median {sorted(s)[len(s) // 2]:.2f}"


def proc_cpu_s(pids):
    """utime + stime of the processes, in seconds (/proc/PID/stat fields 14 and 15)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def wait_log(d, regex, pred=lambda m: True, timeout=10):
    """The first match of regex in droverd's log for which pred holds (worker output reaches
    the log through droverd's pipe, a moment after the event)."""
    found = []

    def look():
        found[:] = [m for m in regex.finditer(d.log_text()) if pred(m)][:1]
        return bool(found)

    d.wait(look, timeout, poll=0.01)
    return found[0]


def py_droverd(build, cmd, count, extra="", **kw):
    kw.setdefault("prefix", "drover-pw-")
    return Droverd(build, [f"count: {count}"], command=cmd, extra_yaml=extra, ready=count, **kw)


def scenario_py_load(build, cmd, runs):
    """Worker start (spawn -> ready, of which the SDK's load()), with the example's defaults and
    with --load-ms; replacement after workers.kill; models.load of a catalog model."""
    rows = {k: ([], []) for k in ("start", "slow", "replace", "first", "reload", "fresh")}
    for _ in range(runs):
        for slow in (False, True):
            argv = cmd + (["--load-ms", str(SLOW_LOAD_MS)] if slow else [])
            with py_droverd(build, argv, 1, PY_CATALOG, log_level="info") as d:
                pid = str(d.slot(0)["pid"])
                spawn_ready = float(wait_log(d, READY_RE, lambda m: m[2] == pid)[3])
                load = float(wait_log(d, SDK_READY_RE, lambda m: m[1] == pid)[2])
                rows["slow" if slow else "start"][0].append(spawn_ready)
                rows["slow" if slow else "start"][1].append(load)
                if slow:
                    continue
                # models.load of m2: the first in this worker, again after models.unload.
                for case in ("first", "reload"):
                    if case == "reload":
                        admin_unload(d, "m2")
                    load_ms, rtt = admin_load(d, "m2")
                    rows[case][0].append(load_ms)
                    rows[case][1].append(rtt)
                # workers.kill: time to a ready replacement, then models.load there.
                t0 = time.perf_counter()
                call(d.admin, "workers.kill", {"id": 0})
                d.wait(lambda: (lambda w: w is not None and str(w["pid"]) != pid and w["state"] == "ready")(d.slot(0)), 60)
                rows["replace"][0].append(ms_since(t0))
                new = str(d.slot(0)["pid"])
                rows["replace"][1].append(float(wait_log(d, READY_RE, lambda m: m[2] == new)[3]))
                load_ms, rtt = admin_load(d, "m2")
                rows["fresh"][0].append(load_ms)
                rows["fresh"][1].append(rtt)
    print(f"\n### P1. Python worker start and models.load (1 worker, {runs} runs; median (min–max) ms)\n")
    print("| case | ms | of which |")
    print("|---|---|---|")
    print(f"| worker start, example defaults: spawn → ready (droverd's log) | {fmt3(rows['start'][0])} | "
          f"load() {fmt3(rows['start'][1], 2)} (SDK's log) |")
    print(f"| worker start with `--load-ms {SLOW_LOAD_MS}`: spawn → ready | {fmt3(rows['slow'][0])} | "
          f"load() {fmt3(rows['slow'][1])} |")
    print(f"| replacement: `workers.kill` → new worker ready (client) | {fmt3(rows['replace'][0])} | "
          f"spawn → ready {fmt3(rows['replace'][1])} |")
    for case, label in (("first", "`models.load m2`, first load in the worker"),
                        ("reload", "`models.load m2` after `models.unload`, same worker"),
                        ("fresh", "`models.load m2` in the replacement worker")):
        print(f"| {label}: admin round trip | {fmt3(rows[case][1], 2)} | "
              f"worker `load_ms` {fmt3(rows[case][0], 3)} |")
    sys.stdout.flush()


def scenario_py_first(build, cmd, runs):
    """First request latency on one Python worker: a fresh worker, on-demand load_model of a
    catalog model in a fresh worker, after model_preload, steady state."""
    s = {k: [] for k in ("cold", "second", "demand", "demand_load", "demand_second", "pre", "steady")}
    for _ in range(runs):
        with py_droverd(build, cmd, 1, PY_CATALOG) as d, Conn(d.sock, timeout=60) as c:
            s["cold"].append(generate(c, None)[0])
            s["second"].append(generate(c, None)[0])
        with py_droverd(build, cmd, 1, PY_CATALOG, log_level="info") as d, Conn(d.sock, timeout=60) as c:
            s["demand"].append(generate(c, "m2")[0])
            s["demand_load"].append(float(wait_log(d, LOADED_RE)[2]))
            s["demand_second"].append(generate(c, "m2")[0])
        with py_droverd(build, cmd, 1, PY_CATALOG + preload_yaml("markov")) as d, \
                Conn(d.sock, timeout=60) as c:
            s["pre"].append(generate(c, None)[0])
            s["steady"].extend(generate(c, None)[0] for _ in range(20))
    print(f"\n### P2. First request latency (1 Python worker; unary generate of its own model, "
          f"max_tokens 16, temperature 0; {runs} runs, a fresh droverd per case and run; ms)\n")
    print("| case | latency median (min–max) | of which load (droverd's log) |")
    print("|---|---|---|")
    print(f"| cold: the first request to a fresh worker (no preload) | {fmt3(s['cold'], 2)} | – (loaded at init) |")
    print(f"| the request after that | {fmt3(s['second'], 2)} | – |")
    print(f"| cold: first request naming catalog model m2 (load_model on demand) | {fmt3(s['demand'], 2)} | "
          f"{fmt3(s['demand_load'], 2)} |")
    print(f"| the m2 request after that | {fmt3(s['demand_second'], 2)} | – |")
    print(f"| first request after model_preload (markov, 2 warmup requests of 16 tokens) | {fmt3(s['pre'], 2)} | – |")
    print(f"| steady state (next 20 requests, pooled over runs) | {fmt3(s['steady'], 2)} | – |")
    sys.stdout.flush()


def scenario_py_tps(build, cmd, runs, seconds, max_tokens):
    """Tokens/s of the unpaced example: 1 and 2 workers, unary and streaming, closed loop."""
    cases = [(1, 1, False), (2, 2, False), (2, 8, False), (1, 1, True), (2, 2, True)]
    res = {c: {"tps": [], "wcpu": [], "dcpu": [], "client": [], "wall": []} for c in cases}
    extra = "routing:\n  strategy: least_busy\n"
    with py_droverd(build, cmd, 1, extra) as d1, py_droverd(build, cmd, 2, extra) as d2:
        for _ in range(runs):
            for case in cases:
                workers, conc, stream = case
                d = d1 if workers == 1 else d2
                pids = [w["pid"] for w in d.workers()]
                w0, dd0 = proc_cpu_s(pids), proc_cpu_s([d.proc.pid])
                _, tps, tokens, wall, cpu = ttft_level(d, conc, 10**9, max_tokens, stream, seconds)
                r = res[case]
                r["tps"].append(tps)
                r["wcpu"].append((proc_cpu_s(pids) - w0) / tokens * 1e6)
                r["dcpu"].append((proc_cpu_s([d.proc.pid]) - dd0) / tokens * 1e6)
                r["client"].append(cpu)
                r["wall"].append(wall)
    print(f"\n### P3. Tokens/s (unpaced example workers, routing least_busy; requests of max_tokens "
          f"{max_tokens}, temperature 0.8, closed loop for {seconds:g} s per sample; {runs} samples per "
          f"row, interleaved; median (min–max))\n")
    print("| workers | requests in flight | mode | tokens/s overall | tokens/s per worker | "
          "worker CPU µs/token | droverd CPU µs/token | client CPU s / wall s (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        workers, conc, stream = case
        r = res[case]
        per = [t / workers for t in r["tps"]]
        print(f"| {workers} | {conc} | {'streaming' if stream else 'unary'} | {fmt3(r['tps'], 0)} | "
              f"{fmt3(per, 0)} | {fmt3(r['wcpu'], 1)} | {fmt3(r['dcpu'], 2)} | "
              f"{sorted(r['client'])[len(r['client']) // 2]:.2f} / {sorted(r['wall'])[len(r['wall']) // 2]:.2f} |")
    sys.stdout.flush()


def scenario_py_ttft(build, cmd, runs, levels, total_requests, max_tokens):
    """TTFT at 1/4/16 concurrent streams on two Python workers, `runs` fresh droverds."""
    extra = "routing:\n  strategy: least_busy\n" + preload_yaml("markov")
    per = {c: {"client": [], "server": [], "p50": [], "tps": [], "tok": [], "cpu": [], "wall": []} for c in levels}
    for _ in range(runs):
        with py_droverd(build, cmd, 2, extra) as d:
            for conc in levels:
                flat, tps, tokens, wall, cpu = ttft_level(d, conc, max(1, total_requests // conc), max_tokens)
                r = per[conc]
                r["client"].extend(x[0] for x in flat)
                r["server"].extend(x[1] for x in flat)
                r["p50"].append(percentile([x[0] for x in flat], 50))
                r["tps"].append(tps)
                r["tok"].append(tokens / len(flat))
                r["cpu"].append(cpu)
                r["wall"].append(wall)
    print(f"\n### P4. TTFT under concurrency (2 Python example workers, markov preloaded + warmed, "
          f"routing least_busy; streaming generate, max_tokens {max_tokens}, temperature 0.8, one "
          f"connection per concurrent request, closed loop; {total_requests} requests per level and "
          f"run, {runs} runs (fresh droverd each); percentiles over all runs' requests)\n")
    print("| concurrent | requests | TTFT ms p50 | p95 | max | per-run p50 range | droverd-side ttft_ms p50 | "
          "tokens/s overall median (min–max) | tokens/request | client CPU s / wall s (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for conc in levels:
        r = per[conc]
        c = r["client"]
        print(f"| {conc} | {len(c)} | {percentile(c, 50):.2f} | {percentile(c, 95):.2f} | {max(c):.2f} | "
              f"{min(r['p50']):.2f}–{max(r['p50']):.2f} | {percentile(r['server'], 50):.2f} | "
              f"{fmt3(r['tps'], 0)} | {sum(r['tok']) / len(r['tok']):.1f} | "
              f"{sorted(r['cpu'])[len(r['cpu']) // 2]:.2f} / {sorted(r['wall'])[len(r['wall']) // 2]:.2f} |")
    sys.stdout.flush()


def python_worker(build, args, la):
    cmd = [args.python, EXAMPLE] + shlex.split(args.python_args)
    parts = args.only or ["load", "first", "tps", "ttft"]
    print("worker: `workers.command: " + json.dumps(cmd) + "`; " + subprocess.run(
        [args.python, "--version"], capture_output=True, text=True).stdout.strip())
    for part, run in (("load", lambda: scenario_py_load(build, cmd, args.runs)),
                      ("first", lambda: scenario_py_first(build, cmd, args.runs)),
                      ("tps", lambda: scenario_py_tps(build, cmd, args.runs, args.tps_seconds,
                                                      args.tps_max_tokens)),
                      ("ttft", lambda: scenario_py_ttft(build, cmd, args.runs, (1, 4, 16),
                                                        args.ttft_requests, args.ttft_max_tokens))):
        if part in parts:
            mark = la.mark()
            run()
            print(f"\n({la.since(mark)} during this table)")
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
    ap.add_argument("--only", choices=["load", "first", "tps", "ttft"], action="append",
                    help="run only these parts (repeatable; tps needs --python-worker)")
    ap.add_argument("--python-worker", action="store_true",
                    help="measure the Python SDK's example worker instead of tinyllm")
    ap.add_argument("--python", default="python3", help="interpreter for --python-worker")
    ap.add_argument("--python-args", default="", help="flags for example_worker.py")
    ap.add_argument("--tps-seconds", type=float, default=3.0)
    ap.add_argument("--tps-max-tokens", type=int, default=2000)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    parts = args.only or ["load", "first", "ttft"]
    if "tps" in parts and not args.python_worker:
        ap.error("--only tps needs --python-worker (tinyllm's tokens/s: drover-tinyllm-probe, docs/MODELS.md)")
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
    la = LoadAverage()
    if args.python_worker:
        python_worker(build, args, la)
        print(f"\nload average at end {os.getloadavg()[0]:.2f}; over the whole run: {la.since(0)}")
        return

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
