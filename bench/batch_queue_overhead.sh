#!/usr/bin/env bash
# Low-load overhead of the batch queue (docs/PIPELINE.md "Batch queue"): one droverd with 2
# sim workers (--ttft-ms 0), one request at a time (drover-bench -c 1 -p 1), batch_queue
# switched on and off by config.reload between short runs of the same processes, PAIRS times.
# Pairs, the same processes and alternation cancel most of the drift of a shared machine; the
# figure is the median over pairs of (on - off) / off, for the mean and the p50 latency.
#
#   bench/batch_queue_overhead.sh [BUILD_DIR]     (default: build)
#   env: OUT_DIR (/tmp/drover-batch-overhead), PAIRS (20), DURATION_S (1), WARMUP_S (0.2)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib/sim_droverd.sh"
BUILD_DIR=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD_DIR/bin
OUT_DIR=${OUT_DIR:-/tmp/drover-batch-overhead}
PAIRS=${PAIRS:-20}
DURATION_S=${DURATION_S:-1}
WARMUP_S=${WARMUP_S:-0.2}

mkdir -p "$OUT_DIR"
SOCK=$OUT_DIR/c.sock
ADMIN=$OUT_DIR/a.sock
CONFIG=$OUT_DIR/droverd.yaml
write_config() {
  sim_droverd_config "$CONFIG" "$SOCK" "$ADMIN" "$BIN" "batch_queue:
  enabled: $1
metrics:
  listen: \"\""
}

write_config true
"$BIN/droverd" --config "$CONFIG" > "$OUT_DIR/droverd.log" 2>&1 &
DROVERD=$!
trap 'kill -TERM $DROVERD 2>/dev/null; wait $DROVERD || true' EXIT
deadline=$((SECONDS + 20))
until "$BIN/drover-bench" throughput --socket "$SOCK" --requests 1 --warmup-s 0 --timeout-s 2 \
    > /dev/null 2>&1; do
  ((SECONDS < deadline)) || { echo "droverd did not become ready" >&2; exit 1; }
  sleep 0.1
done

for pair in $(seq 1 "$PAIRS"); do
  for enabled in true false; do
    write_config "$enabled"
    "$BIN/droverctl" --admin-socket "$ADMIN" reload > /dev/null
    "$BIN/drover-bench" throughput --socket "$SOCK" -c 1 -p 1 --max-tokens 16 \
      --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --json > "$OUT_DIR/$enabled.$pair.json"
  done
done
"$BIN/droverctl" --socket "$SOCK" call telemetry.batchStats > "$OUT_DIR/batchStats.json"

python3 - "$OUT_DIR" "$PAIRS" <<'PY'
import json, statistics, sys
out, pairs = sys.argv[1], int(sys.argv[2])
load = lambda e, i: json.load(open(f"{out}/{e}.{i}.json"))["latency_ms"]
for key in ("mean", "p50"):
    on = [load("true", i)[key] for i in range(1, pairs + 1)]
    off = [load("false", i)[key] for i in range(1, pairs + 1)]
    diffs = sorted((a - b) / b * 100 for a, b in zip(on, off))
    q = lambda p: diffs[min(len(diffs) - 1, int(p * len(diffs)))]
    print(f"{key:4}: on {statistics.median(on) * 1000:6.1f} us, off {statistics.median(off) * 1000:6.1f} us "
          f"(medians of {pairs} runs); paired (on-off)/off: median {statistics.median(diffs):+5.1f} %, "
          f"quartiles {q(0.25):+5.1f} % .. {q(0.75):+5.1f} %")
s = json.load(open(f"{out}/batchStats.json"))
s = s.get("result", s)
print(f"batch queue while on: {s['requests']} requests in {s['flushes']} flushes, "
      f"flush causes {s['flush_causes']}")
PY
