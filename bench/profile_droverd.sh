#!/usr/bin/env bash
# perf profile of droverd alone under drover-bench load, and its CPU per request.
#   bench/profile_droverd.sh BIN_DIR LABEL [shm true|false] [CxP 8x8]
# Starts droverd (2 sim workers at zero service time) on a temp config, runs a 7 s
# drover-bench throughput, records droverd with `perf record -g` for 5 s of it, and prints
# req/s, droverd's CPU (utime + stime) per request over those 5 s, the top symbols and the
# share by object. EXTRA='yaml lines' appends to the config (e.g. EXTRA='batch_queue: {enabled: false}').
# Output: LABEL.data and LABEL.top.txt in the current directory. Needs perf (linux-perf).
set -euo pipefail
bin=$(cd "$1" && pwd); label=$2; shm=${3:-false}; load=${4:-8x8}
c=${load%x*}; p=${load#*x}
d=$(mktemp -d /tmp/drover-prof.XXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
cat > "$d/c.yaml" <<Y
server: {socket: $d/s.sock, admin_socket: $d/a.sock}
workers: {count: 2, command: [$bin/drover-worker, --ttft-ms, "0", --tokens-per-s, "0"], backend: sim}
transport: {shm: $shm}
metrics: {enabled: false}
logging: {level: warn}
${EXTRA:-}
Y
"$bin/droverd" --config "$d/c.yaml" > "$d/log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 300); do  # up to 30 s for both workers
  if "$bin/droverctl" --socket "$d/s.sock" health 2>/dev/null | grep -q '"workers_ready": *2'; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "droverd did not get 2 workers ready:"; cat "$d/log"; exit 1; }
"$bin/drover-bench" throughput --socket "$d/s.sock" -c "$c" -p "$p" --duration-s 7 --json > "$d/bench.json" &
b=$!
sleep 1  # into the measured window (warm-up is 1 s)
t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
perf record -F 1999 -g -p "$pid" -o "$label.data" -- sleep 5 >/dev/null 2>&1
t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
wait $b
python3 - "$d/bench.json" "$t0" "$t1" <<'P'
import json, os, sys
r = json.load(open(sys.argv[1])); t0, t1 = float(sys.argv[2]), float(sys.argv[3])
rps = r["requests_per_s"]; hz = os.sysconf("SC_CLK_TCK")
print(f"req/s {rps:,.0f}  droverd CPU {(t1 - t0) / hz / (rps * 5) * 1e6:.1f} us/req (5 s window)")
P
perf report -i "$label.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
  grep -E "^ +[0-9]" | sed -E 's/ +/ /g' | cut -c1-160 | head -25 > "$label.top.txt"
perf report -i "$label.data" --no-children --sort dso --stdio -g none 2>/dev/null |
  grep -E "^ +[0-9]" | head -8 >> "$label.top.txt"
cat "$label.top.txt"
