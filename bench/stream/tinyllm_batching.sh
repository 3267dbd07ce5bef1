#!/bin/bash
# tinyllm continuous batching (docs/MODELS.md "Continuous batching: measured"): one droverd with
# ONE tinyllm worker (--threads 1, stream limits off, prompt cache bypassed), streamed generate
# of 128 tokens from drover-bench: 1 connection (REQS requests), then 16 connections (4 x REQS
# requests), each keeping one request in flight; every configuration RUNS times. Per run:
# tokens/s over the run, and tokens per CPU-second of the worker process (from /proc/PID/stat:
# on a shared machine this does not depend on how much of a core the scheduler gave it).
# Medians at the end. From the repository root, after building droverd, drover-worker,
# droverctl, drover-bench and drover-make-model:
#   bench/stream/tinyllm_batching.sh [BIN_DIR] [shipped|s15|shipped-q8|s15-q8] [RUNS] [REQS]
# BIN_DIR defaults to build/bin (compare builds by pointing it at another build's bin/).
# s15: a stories15M-shaped checkpoint with random weights (dim 288, hidden 768, 6 layers,
# 6 heads, vocab 32000, seq_len 256, own classifier; 98 MB), generated into a temp dir by the
# script and removed at the end; never shipped. -q8: the same model quantized to Q8_0
# (drover-make-model --quantize q8_0, default group size; docs/MODELS.md "Q8_0 weights").
set -eu
B=$(realpath "${1:-build/bin}")
model=${2:-shipped}
runs=${3:-3}
reqs=${4:-12}
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
cat > "$d/c.yaml" <<Y
server:
  socket: $d/s.sock
  admin_socket: $d/a.sock
workers:
  count: 1
  command: [$B/drover-worker, --threads, "1", --model-path, $path, --model, m]
  backend: tinyllm
  warm_spares: 0
streaming:
  max_concurrent_per_worker: 0
model_preload:
  enabled: false
metrics:
  listen: ""
Y
"$B/droverd" --config "$d/c.yaml" > "$d/droverd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do  # start-up poll, at most 30 s
  [ -S "$d/s.sock" ] && "$B/droverctl" --socket "$d/s.sock" health 2>/dev/null | grep -q '"workers_ready": 1' && break
  sleep 0.1
done
worker=$(pgrep -P "$pid" drover-worker)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$worker/stat"; }
echo "== $model, $B, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for c in 1 16; do
  n=$reqs; [ "$c" = 16 ] && n=$((reqs * 4))
  for r in $(seq "$runs"); do
    t0=$(cpu_ticks)
    out=$("$B/drover-bench" throughput --socket "$d/s.sock" --stream --cache-bypass -c "$c" -p 1 \
          -n "$n" --warmup-s 0 --max-tokens 128 --prompt "Once upon a time")
    t1=$(cpu_ticks)
    tps=$(echo "$out" | sed -n 's/^throughput: .* req\/s, \([0-9]*\) tokens\/s$/\1/p')
    win=$(echo "$out" | sed -n 's/^window: .* warm-up, \([0-9.]*\) s$/\1/p')
    cpu_tps=$(awk -v t="$tps" -v w="$win" -v c=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
              'BEGIN {printf "%.0f", (c > 0 ? t * w / (c / hz) : 0)}')
    echo "streams $c run $r: $tps tokens/s, $cpu_tps tokens per worker CPU-second"
    echo "$c $tps $cpu_tps" >> "$d/results"
  done
done
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for c in 1 16; do
  echo "median, $c stream(s): $(awk -v c="$c" '$1 == c {print $2}' "$d/results" | median) tokens/s," \
       "$(awk -v c="$c" '$1 == c {print $3}' "$d/results" | median) tokens per worker CPU-second"
done
