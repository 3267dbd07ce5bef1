# Shared by scripts/run and scripts/test: install missing Debian packages, configure, build.
# Sourced, not executed.

DROVER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Debian 12 packages drover needs to build, test and run (shared/DESIGN.md section 3).
DROVER_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libboost1.81-all-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
  libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev libsimdjson-dev
  libssl-dev  # OpenSSL libcrypto: SHA-256 of the prompt cache and dedup keys
  openssl  # the CLI: the TLS tests make their certificates with it
  python3 socat curl  # socat, curl: the README tour and OpenAI examples
  clang-14 libclang-rt-14-dev llvm-14  # fuzz/: clang, libFuzzer, llvm-symbolizer
  prometheus systemd
  haproxy  # tests/scaling: the multi-instance drill and bench/scaling
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_packages() {
  local missing=()
  local p
  for p in "${DROVER_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "drover needs these Debian packages: ${missing[*]}" >&2
    echo "install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

# ensure_npm_modules DIR: install DIR's npm dependencies (package.json, package-lock.json) into
# DIR/node_modules (git-ignored) from the npm registry, once and again when the lock changes.
ensure_npm_modules() {
  local dir="$1" stamp="$1/node_modules/.drover-installed"
  if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ] && [ ! "$dir/package.json" -nt "$stamp" ]; then
    return 0
  fi
  command -v npm >/dev/null || { echo "drover needs Node.js 20 and npm for $dir" >&2; exit 1; }
  log "installing npm packages in $dir"
  if [ -f "$dir/package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  else
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  touch "$stamp"
}

# configure_tree DIR BUILD_TYPE [extra cmake args...]: configure out of tree (once).
configure_tree() {
  local dir="$1" type="$2"
  shift 2
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    log "configuring $dir ($type)"
    cmake -S "$DROVER_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  fi
}

# build_tree DIR BUILD_TYPE [extra cmake args...]: configure (once) and build everything.
build_tree() {
  configure_tree "$@"
  log "building $1"
  cmake --build "$1" --parallel "$(nproc)"
}

# build_targets DIR BUILD_TYPE TARGET...: configure (once, default options) and build only the
# named targets and what they need. The tree stays the one build_tree makes, so scripts/test
# can build the rest in the same directory later.
build_targets() {
  local dir="$1" type="$2"
  shift 2
  configure_tree "$dir" "$type"
  log "building $* in $dir"
  cmake --build "$dir" --parallel "$(nproc)" --target "$@"
}

# The libFuzzer tree (fuzz/README.md): clang, and only common/, proto/ and the fuzz targets.
build_fuzz_tree() {
  build_tree "$1" RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 -DDROVER_BUILD_FUZZ=ON \
    -DDROVER_BUILD_TESTS=OFF -DDROVER_BUILD_BENCH=OFF
}
