#!/usr/bin/env bash
# The long chaos run of the resilience issue: 64 requests in flight against 4 sim workers,
# SIGKILL of a random worker every second for 60 s (override with DROVER_CHAOS_* variables, see
# tests/chaos/chaos_test.cpp). Prints lost/duplicate violations (the test fails on any),
# errors by code, latency during chaos, throughput against a fault-free phase, and recovery.
#   ./bench/chaos.sh [BUILD_DIR]
set -euo pipefail
BUILD_DIR="${1:-$(dirname "$0")/../build}"
export DROVER_CHAOS_SECONDS="${DROVER_CHAOS_SECONDS:-60}"
export DROVER_CHAOS_STEADY_SECONDS="${DROVER_CHAOS_STEADY_SECONDS:-10}"
export DROVER_CHAOS_INTERVAL_MS="${DROVER_CHAOS_INTERVAL_MS:-1000}"
export DROVER_CHAOS_MODE="${DROVER_CHAOS_MODE:-kill}"
exec "$BUILD_DIR/bin/drover_chaos_tests"
