# Sourced by the bench/ shell scripts: droverd's configuration for what they measure.
#
# sim_droverd_config FILE SOCK ADMIN BIN [EXTRA_YAML]
#   Writes a config for 2 sim workers at zero service time (--ttft-ms 0 --tokens-per-s 0, so
#   IPC and the supervisor dominate), round-robin, with the client socket SOCK and the admin
#   socket ADMIN; EXTRA_YAML (top-level blocks) is appended as it is.
sim_droverd_config() {
  local file=$1 sock=$2 admin=$3 bin=$4 extra=${5:-}
  cat > "$file" <<YAML
server:
  socket: $sock
  admin_socket: $admin
workers:
  count: 2
  command: [$bin/drover-worker, --ttft-ms, "0", --tokens-per-s, "0"]
  backend: sim
routing:
  strategy: round_robin
$extra
YAML
}
