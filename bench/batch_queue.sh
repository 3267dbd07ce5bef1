#!/usr/bin/env bash
# Batch queue on/off benchmark (docs/PIPELINE.md "Batch queue"): droverd with 2 sim workers
# (--ttft-ms 0 --tokens-per-s 0, so IPC dominates) under the same load with each batch_queue
# variant, the variants interleaved rep by rep so machine noise hits them alike.
#
#   bench/batch_queue.sh [BUILD_DIR]     (default: build)
#   env: OUT_DIR (/tmp/drover-batch-bench), DURATION_S (5), WARMUP_S (1), REPS (3),
#        VARIANTS ("on off nofast fixed"), SCENARIOS ("1x1 1x64 8x8")
#
# Variants: on = the shipped defaults (adaptive sizing, adaptive window, fast path);
# off = batch_queue.enabled false (one write per request, the path without a batch queue);
# nofast = on without fast_path (every request waits for the window); fixed = on with
# adaptive_sizing false (size stays max_batch_size 20).
# Prints one line per run and, at the end, the median of each variant and scenario: req/s,
# latency, CPU of droverd + workers per request ("cpu us/req", over the whole drover-bench
# invocation) and requests per worker write ("batch", from telemetry.batchStats).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib/sim_droverd.sh"
BUILD_DIR=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD_DIR/bin
OUT_DIR=${OUT_DIR:-/tmp/drover-batch-bench}
DURATION_S=${DURATION_S:-5}
WARMUP_S=${WARMUP_S:-1}
REPS=${REPS:-3}
VARIANTS=${VARIANTS:-"on off nofast fixed"}
SCENARIOS=${SCENARIOS:-"1x1 1x64 8x8"}

declare -A FLAGS=([1x1]="-c 1 -p 1" [1x64]="-c 1 -p 64" [8x8]="-c 8 -p 8")
declare -A BATCH=(
  [on]="  enabled: true"
  [off]="  enabled: false"
  [nofast]="  enabled: true
  fast_path: false"
  [fixed]="  enabled: true
  adaptive_sizing: false"
)

mkdir -p "$OUT_DIR"
SOCK=$OUT_DIR/c.sock
ADMIN=$OUT_DIR/a.sock
DROVERD=
stop_droverd() {
  if [[ -n $DROVERD ]] && kill -0 "$DROVERD" 2>/dev/null; then
    kill -TERM "$DROVERD"
    wait "$DROVERD" || true
  fi
  DROVERD=
}
trap stop_droverd EXIT

start_droverd() {
  local variant=$1 config=$OUT_DIR/$1.yaml
  sim_droverd_config "$config" "$SOCK" "$ADMIN" "$BIN" "batch_queue:
${BATCH[$variant]}
metrics:
  listen: \"\"
logging:
  level: info"
  "$BIN/droverd" --config "$config" > "$OUT_DIR/droverd.$variant.log" 2>&1 &
  DROVERD=$!
  local deadline=$((SECONDS + 20))
  until "$BIN/drover-bench" throughput --socket "$SOCK" --requests 1 --warmup-s 0 \
      --timeout-s 2 > /dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! kill -0 "$DROVERD" 2>/dev/null; then
      echo "batch_queue.sh: droverd ($variant) did not become ready" >&2
      exit 1
    fi
    sleep 0.1
  done
}

# CPU time (utime + stime, clock ticks) of droverd and its workers: the IPC cost per request
# that batching saves shows here even when latency drowns in the noise of a shared machine.
cpu_ticks() {
  local total=0 pid fields
  for pid in "$DROVERD" $(pgrep -P "$DROVERD"); do
    read -ra fields < "/proc/$pid/stat" || continue
    total=$((total + fields[13] + fields[14]))
  done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

for rep in $(seq 1 "$REPS"); do
  for variant in $VARIANTS; do
    start_droverd "$variant"
    for s in $SCENARIOS; do
      out=$OUT_DIR/$variant.$s.$rep.json
      "$BIN/droverctl" --socket "$SOCK" call telemetry.batchStats > "$out.before" || true
      c0=$(cpu_ticks)
      # shellcheck disable=SC2086  # the flags are meant to split
      "$BIN/drover-bench" throughput --socket "$SOCK" ${FLAGS[$s]} --max-tokens 16 \
        --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --json > "$out"
      c1=$(cpu_ticks)
      "$BIN/droverctl" --socket "$SOCK" call telemetry.batchStats > "$out.after" || true
      python3 - "$out" "$variant" "$s" "$rep" "$((c1 - c0))" "$CLK_TCK" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r["server_cpu_us_per_request"] = int(sys.argv[5]) / int(sys.argv[6]) * 1e6 / max(r["replies_total"], 1)
json.dump(r, open(sys.argv[1], "w"), indent=2)
l = r["latency_ms"]
print(f"{sys.argv[2]:7} {sys.argv[3]:5} rep {sys.argv[4]}: {r['requests_per_s']:9.0f} req/s  "
      f"mean {l['mean']:.4f}  p50 {l['p50']:.4f}  p99 {l['p99']:.3f} ms  "
      f"cpu {r['server_cpu_us_per_request']:.1f} us/req  errors {r['errors']}")
PY
    done
    stop_droverd
  done
done

python3 - "$OUT_DIR" "$VARIANTS" "$SCENARIOS" "$REPS" <<'PY'
import json, statistics, sys
out, variants, scenarios, reps = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
print("\nmedian of", reps, "runs")
print(f"{'variant':7} {'load':5} {'req/s':>9} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} "
      f"{'cpu us/req':>10} {'batch':>6}")
for s in scenarios:
    for v in variants:
        runs = [json.load(open(f"{out}/{v}.{s}.{i}.json")) for i in range(1, reps + 1)]
        med = lambda f: statistics.median(f(r) for r in runs)
        # Requests per worker write during the runs (the telemetry.batchStats deltas).
        def per_flush(i):
            a = json.load(open(f"{out}/{v}.{s}.{i}.json.after"))
            b = json.load(open(f"{out}/{v}.{s}.{i}.json.before"))
            a, b = a.get("result", a), b.get("result", b)
            if a["flushes"] == b["flushes"]:
                raise ValueError("no flushes: batching off")
            return (a["requests"] - b["requests"]) / (a["flushes"] - b["flushes"])
        try:
            batch = f"{statistics.median(per_flush(i) for i in range(1, reps + 1)):.2f}"
        except (OSError, KeyError, ValueError):
            batch = "-"
        print(f"{v:7} {s:5} {med(lambda r: r['requests_per_s']):9.0f} "
              f"{med(lambda r: r['latency_ms']['mean']):8.4f} {med(lambda r: r['latency_ms']['p50']):8.4f} "
              f"{med(lambda r: r['latency_ms']['p99']):8.3f} "
              f"{med(lambda r: r['server_cpu_us_per_request']):10.1f} {batch:>6}")
PY
