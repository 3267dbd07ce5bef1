#!/usr/bin/env bash
# What the client transport costs droverd (docs/PERFORMANCE.md "Client transports"): req/s
# and droverd's CPU per request over the Unix socket, plain TCP and TLS, in one run. Two
# droverds with 2 sim workers at zero service time (bench/lib/sim_droverd.sh): A serves the
# Unix socket and tcp_listen, B tcp_listen with TLS (a throw-away CA and server certificate
# made here with the openssl CLI). ROUNDS rounds of unix(A), tcp(A), tls(B), each a
# drover-bench throughput run (-c CONNECTIONS -p INFLIGHT, --supervisor-pid of its droverd);
# the figures are medians over rounds.
#
#   bench/transport_cost.sh [BUILD_DIR]     (default: build)
#   env: OUT_DIR (/tmp/drover-transport-cost), ROUNDS (3), DURATION_S (5), WARMUP_S (1),
#        CONNECTIONS (8), INFLIGHT (8)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib/sim_droverd.sh"
BUILD_DIR=$(cd "${1:-$ROOT/build}" && pwd)
BIN=$BUILD_DIR/bin
OUT_DIR=${OUT_DIR:-/tmp/drover-transport-cost}
ROUNDS=${ROUNDS:-3}
DURATION_S=${DURATION_S:-5}
WARMUP_S=${WARMUP_S:-1}
CONNECTIONS=${CONNECTIONS:-8}
INFLIGHT=${INFLIGHT:-8}

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
cd "$OUT_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
  -keyout ca.key -out ca.pem 2> /dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout server.key -out server.csr 2> /dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > server.ext
openssl x509 -req -days 1 -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 \
  -extfile server.ext -out server.pem 2> /dev/null

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" || true; done' EXIT
# start_droverd NAME SERVER_YAML: starts it (a child of this shell, so the trap can reap it) and
# waits until it serves; sets PID and ADDRESS (its logged TCP address).
start_droverd() {
  local name=$1 server=$2
  sim_droverd_config "$name.yaml" "$OUT_DIR/$name.sock" "$OUT_DIR/$name.admin" "$BIN" "metrics:
  listen: \"\""
  # The server block's extra keys go right after its first line.
  sed -i "/^server:/a\\
$server" "$name.yaml"
  "$BIN/droverd" --config "$name.yaml" > "$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  local deadline=$((SECONDS + 30))
  ADDRESS=""
  until ADDRESS=$(grep -o 'JSON-RPC on t[a-z]*://127.0.0.1:[0-9]*' "$name.log" 2> /dev/null | sed 's/JSON-RPC on //'); \
      [ -n "$ADDRESS" ] && "$BIN/drover-bench" throughput --socket "$OUT_DIR/$name.sock" \
      --requests 1 --warmup-s 0 --timeout-s 2 > /dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "droverd $name did not become ready" >&2; cat "$name.log" >&2; exit 1; }
    sleep 0.1
  done
}
start_droverd a "  tcp_listen: 127.0.0.1:0"
PID_A=$PID TCP_A=$ADDRESS
start_droverd b "  tcp_listen: 127.0.0.1:0\\
  tls: {cert_file: $OUT_DIR/server.pem, key_file: $OUT_DIR/server.key}"
PID_B=$PID TLS_B=$ADDRESS
export DROVER_TLS_CA=$OUT_DIR/ca.pem

for round in $(seq 1 "$ROUNDS"); do
  for t in unix tcp tls; do
    case $t in
      unix) socket=$OUT_DIR/a.sock pid=$PID_A ;;
      tcp) socket=$TCP_A pid=$PID_A ;;
      tls) socket=$TLS_B pid=$PID_B ;;
    esac
    "$BIN/drover-bench" throughput --socket "$socket" -c "$CONNECTIONS" -p "$INFLIGHT" \
      --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --supervisor-pid "$pid" --json \
      > "$t.$round.json"
  done
done

python3 - "$OUT_DIR" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print(f"{'transport':9} {'req/s':>9} {'droverd us/req':>15}  (medians of {rounds} rounds; errors)")
for t in ("unix", "tcp", "tls"):
    runs = [json.load(open(f"{out}/{t}.{i}.json")) for i in range(1, rounds + 1)]
    rps = statistics.median(r["requests_per_s"] for r in runs)
    cpu = statistics.median(1e6 * r["supervisor_cpu_s"] / r["replies_total"] for r in runs)
    print(f"{t:9} {rps:9.0f} {cpu:15.1f}  ({sum(r['errors'] for r in runs)})")
PY
