#!/bin/bash
# tinyllm continuous batching (docs/MODELS.md "Continuous batching: measured"): one droverd with
# tinyllm workers (--threads 1, prompt cache bypassed), streamed generate of 128 tokens from
# drover-bench: for each concurrency C in $STREAMS, C connections each keeping one request in
# flight (REQS requests for one connection, REQS x 4 otherwise); every configuration RUNS times.
# Per run: tokens/s over the run; tokens per CPU-second of the worker processes (from
# /proc/PID/stat: on a shared machine this does not depend on how much of a core the scheduler
# gave them); time to first chunk p95; the slowest request's latency over the fastest's (all
# generate 128 tokens unless a story ends first). Medians at the end. From the repository
# root, after building droverd, drover-worker, droverctl, drover-bench and drover-make-model:
#   bench/stream/tinyllm_batching.sh [BIN_DIR] [shipped|s15|shipped-q8|s15-q8] [RUNS] [REQS]
# BIN_DIR defaults to build/bin (compare builds by pointing it at another build's bin/).
# s15: a stories15M-shaped checkpoint with random weights (dim 288, hidden 768, 6 layers,
# 6 heads, vocab 32000, seq_len 256, own classifier; 98 MB), generated into a temp dir by the
# script and removed at the end; never shipped. -q8: the same model quantized to Q8_0
# (drover-make-model --quantize q8_0, default group size; docs/MODELS.md "Q8_0 weights").
# Environment: STREAMS (default "1 16"), WORKERS (default 1), BATCH_QUEUE (off|on, default off:
# batch_queue.enabled), STREAM_LIMIT (streaming.max_concurrent_per_worker; default 0, the
# adaptive limit droverd ships with; a number fixes it), MAX_TOKENS (default 128).
set -eu
B=$(realpath "${1:-build/bin}")
model=${2:-shipped}
runs=${3:-3}
reqs=${4:-12}
streams=${STREAMS:-1 16}
workers=${WORKERS:-1}
batch_queue=${BATCH_QUEUE:-off}
stream_limit=${STREAM_LIMIT:-0}
max_tokens=${MAX_TOKENS:-128}
d=$(mktemp -d /tmp/drover-batching.XXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
quantize=
case "$model" in *-q8) quantize=--quantize=q8_0; model=${model%-q8} ;; esac
if [ "$model" = s15 ]; then
  "$B/drover-make-model" --dim 288 --hidden-dim 768 --layers 6 --heads 6 --kv-heads 6 --vocab 32000 \
    --seq-len 256 --unshared --model "$d/s15.bin" --tokenizer "$d/tokenizer.bin" $quantize > /dev/null
  path=$d/s15.bin
else
  "$B/drover-make-model" --preset shipped --out-dir "$d" $quantize > /dev/null
  path=$d/tinyllm.bin
fi
enabled=false; [ "$batch_queue" = on ] && enabled=true
cat > "$d/c.yaml" <<Y
server:
  socket: $d/s.sock
  admin_socket: $d/a.sock
workers:
  count: $workers
  command: [$B/drover-worker, --threads, "1", --model-path, $path, --model, m]
  backend: tinyllm
  warm_spares: 0
streaming:
  max_concurrent_per_worker: $stream_limit
batch_queue:
  enabled: $enabled
model_preload:
  enabled: false
metrics:
  listen: ""
Y
"$B/droverd" --config "$d/c.yaml" > "$d/droverd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do  # start-up poll, at most 30 s
  [ -S "$d/s.sock" ] && "$B/droverctl" --socket "$d/s.sock" health 2>/dev/null | grep -q "\"workers_ready\": $workers" && break
  sleep 0.1
done
worker_pids=$(pgrep -P "$pid" drover-worker)
cpu_ticks() { for w in $worker_pids; do awk '{print $14 + $15}' "/proc/$w/stat"; done | awk '{s += $1} END {print s}'; }
echo "== $model, $B, $workers worker(s), batch queue $batch_queue, stream limit $stream_limit," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
for c in $streams; do
  n=$reqs; [ "$c" != 1 ] && n=$((reqs * 4))
  for r in $(seq "$runs"); do
    t0=$(cpu_ticks)
    "$B/drover-bench" throughput --socket "$d/s.sock" --stream --cache-bypass -c "$c" -p 1 \
      -n "$n" --warmup-s 0 --max-tokens "$max_tokens" --prompt "Once upon a time" --json > "$d/run.json"
    t1=$(cpu_ticks)
    line=$(python3 - "$d/run.json" $((t1 - t0)) "$(getconf CLK_TCK)" <<'P'
import json, sys
r = json.load(open(sys.argv[1]))
cpu_s = int(sys.argv[2]) / int(sys.argv[3])
tokens = r["completion_tokens"]
lat, first = r["latency_ms"], r["first_chunk_ms"]
print(f'{r["tokens_per_s"]:.0f} {tokens / cpu_s if cpu_s > 0 else 0:.0f} {first["p95"]:.1f} '
      f'{lat["max"] / lat["min"] if lat["min"] > 0 else 0:.2f} {r["errors"]}')
P
)
    set -- $line
    echo "streams $c run $r: $1 tokens/s, $2 tokens per worker CPU-second, first chunk p95 $3 ms," \
         "slowest/fastest request $4, errors $5"
    echo "$c $line" >> "$d/results"
  done
done
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for c in $streams; do
  col() { awk -v c="$c" -v k="$1" '$1 == c {print $k}' "$d/results" | median; }
  echo "median, $c stream(s): $(col 2) tokens/s, $(col 3) tokens per worker CPU-second," \
       "first chunk p95 $(col 4) ms, slowest/fastest request $(col 5)"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
