#!/usr/bin/env bash
# Closing figures of the request pipeline (docs/PIPELINE.md): prompt-cache hit vs miss latency,
# and deduplication / coalescing / cache savings on a workload with repeats. Starts its own
# droverd per run (temp dir, sim or tinyllm workers), drives it with drover-bench and reads
# worker executions from telemetry.metrics. Usage: bench/scenarios/pipeline_figures.sh [BUILD]
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
BIN=$BUILD/bin
DURATION=${DURATION:-8}
TMP=$(mktemp -d /tmp/drover-pipe.XXXXXX)
PID=
cleanup() { [[ -n "$PID" ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# start_droverd NAME WORKER_COMMAND_YAML EXTRA_YAML
start_droverd() {
  local dir=$TMP/$1
  mkdir -p "$dir"
  cat > "$dir/config.yaml" <<YAML
server:
  socket: $dir/d.sock
  admin_socket: $dir/a.sock
  run_dir: $dir/run
workers:
  count: 2
  warm_spares: 0
$2
logging:
  level: warn
metrics:
  listen: ""
$3
YAML
  "$BIN/droverd" --config "$dir/config.yaml" > "$dir/droverd.log" 2>&1 &
  PID=$!
  SOCK=$dir/d.sock
  for _ in $(seq 300); do
    if "$BIN/droverctl" --socket "$SOCK" --json health 2>/dev/null | grep -q '"workers_ready": *2'; then return 0; fi
    sleep 0.1  # polling droverd's readiness from a script, not synchronising a test
  done
  echo "droverd did not get ready: $(cat "$dir/droverd.log")" >&2
  exit 1
}
stop_droverd() { kill -TERM "$PID"; wait "$PID" || true; PID=; }
pipeline() { "$BIN/droverctl" --socket "$SOCK" --json call telemetry.metrics | python3 -c '
import json,sys; p=json.load(sys.stdin)["pipeline"]
print("executions=%d dedup_shared=%d coalesced=%d cache_hits=%d cache_misses=%d bypassed=%d" % (
  p["executions_total"], p["request_deduplication"]["shared_total"],
  p["request_coalescing"]["coalesced_total"], p["prompt_cache"]["hits_total"],
  p["prompt_cache"]["misses_total"], p["bypassed_total"]))'; }
bench() { echo "+ drover-bench throughput $*"; "$BIN/drover-bench" throughput --socket "$SOCK" "$@" | grep -E "requests/s|latency|ok|errors" ; }

echo "== 1. cache hit vs miss latency (tinyllm, 1 x 1 in flight, 64 tokens)"
TINY="  backend: tinyllm
  command: [$BIN/drover-worker, --threads, \"1\", --model-path, $BUILD/models/tinyllm.bin, --tokenizer-path, $BUILD/models/tokenizer.bin]"
start_droverd tiny "$TINY" ""
bench -c 1 -p 1 -n 200 --warmup-s 0 --max-tokens 64 --distinct-prompts 1000000
pipeline
bench -c 1 -p 1 -n 2000 --warmup-s 0.5 --max-tokens 64 --distinct-prompts 1
pipeline
stop_droverd

# Capacity-bound sim workers: 2 workers x max_inflight 2, each run ~130 ms (50 ms to the first
# token, 16 tokens at 200/s), so the pool completes at most ~30 runs/s whatever the load.
SIM="  backend: sim
  max_inflight: 2
  command: [$BIN/drover-worker, --ttft-ms, \"50\", --tokens-per-s, \"200\"]"
LOAD="-c 8 -p 4 -d $DURATION --warmup-s 1 --max-tokens 16 --distinct-prompts 8"
OFF="prompt_cache:
  enabled: false
request_deduplication:
  enabled: false
request_coalescing:
  enabled: false"
for mode in unary stream; do
  extra=""; [[ $mode == stream ]] && extra="--stream"
  echo "== 2. $mode, 8 distinct prompts, 32 in flight: every stage off"
  start_droverd off-$mode "$SIM" "$OFF"
  bench $LOAD $extra; pipeline; stop_droverd
  echo "== 3. $mode: deduplication / coalescing only (cache: bypass)"
  start_droverd share-$mode "$SIM" ""
  bench $LOAD $extra --cache-bypass; pipeline; stop_droverd
  echo "== 4. $mode: every stage on (prompt cache too)"
  start_droverd all-$mode "$SIM" ""
  bench $LOAD $extra; pipeline; stop_droverd
done
