#!/bin/bash
# A client that reads its stream only once the worker has finished it (docs/PIPELINE.md):
# frames and bytes it gets with chunk coalescing at PERCENT (0 or 100). From the repository
# root, after building droverd, drover-worker and droverctl:  bench/stream/slow_reader.sh 100
set -eu
B=$(pwd)/build/bin
pct=$1
d=$(mktemp -d /tmp/drover-slow.XXXX)
trap 'rm -rf "$d"' EXIT
cat > "$d/c.yaml" <<Y
server:
  socket: $d/s.sock
  admin_socket: $d/a.sock
workers:
  count: 1
  command: [$B/drover-worker, --tokens-per-s, "4000"]
  backend: sim
  warm_spares: 0
streaming:
  high_watermark_bytes: 16384
  low_watermark_bytes: 4096
feature_flags:
  stream_coalescing: $pct
metrics:
  listen: ""
Y
"$B/droverd" --config "$d/c.yaml" > "$d/droverd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  [ -S "$d/s.sock" ] && "$B/droverctl" --socket "$d/s.sock" health 2>/dev/null | grep -q '"workers_ready": 1' && break
  sleep 0.1
done
echo "== stream_coalescing: $pct"
python3 "$(dirname "$0")/slow_reader.py" "$d/s.sock" "$B/droverctl"
kill -TERM $pid
wait $pid || true
