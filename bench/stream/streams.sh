#!/bin/bash
# Stream concurrency under load (docs/PIPELINE.md, "Stream backpressure"): starts droverd with
# one kind of worker and a `streaming` block, runs drover-bench against it, prints the streams
# telemetry, stops droverd. From the repository root, after building droverd, drover-worker,
# droverctl and drover-bench in build/:
#   bench/stream/streams.sh sim "  max_concurrent_per_worker: 4" --stream -c 50 -p 1 -d 10 --max-tokens 32
#   bench/stream/streams.sh tinyllm "  max_concurrent_per_worker: 0" --stream -c 32 -p 1 -d 20 --max-tokens 64
# sim: 2 workers at --ttft-ms 20 --tokens-per-s 100; tinyllm: 1 worker, --threads 1, the shipped model.
set -eu
B=$(pwd)/build/bin
kind=$1; streaming=$2; shift 2
d=$(mktemp -d /tmp/drover-streams.XXXX)
trap 'rm -rf "$d"' EXIT
if [ "$kind" = sim ]; then
  count=2; command="[$B/drover-worker, --ttft-ms, \"20\", --tokens-per-s, \"100\"]"
else
  count=1; command="[$B/drover-worker, --threads, \"1\", --model-path, $(pwd)/build/models/tinyllm.bin]"
fi
cat > "$d/c.yaml" <<Y
server:
  socket: $d/s.sock
  admin_socket: $d/a.sock
workers:
  count: $count
  command: $command
  backend: $kind
  warm_spares: 0
streaming:
$streaming
metrics:
  listen: ""
Y
"$B/droverd" --config "$d/c.yaml" > "$d/droverd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do  # start-up poll, at most 30 s
  [ -S "$d/s.sock" ] && "$B/droverctl" --socket "$d/s.sock" health 2>/dev/null | grep -q "\"workers_ready\": $count" && break
  sleep 0.1
done
echo "== $kind, streaming: $(echo $streaming), drover-bench throughput $*"
"$B/drover-bench" throughput --socket "$d/s.sock" "$@" || true
"$B/droverctl" --socket "$d/s.sock" call telemetry.metrics |
  python3 -c 'import json,sys; t=json.load(sys.stdin); print("streams:", json.dumps(t.get("result", t)["streams"]))'
kill -TERM $pid
wait $pid || true
