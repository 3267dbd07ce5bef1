// The `stress` scenario: ramps concurrency until the target breaks. Each step is a short
// throughput run at twice the connections of the one before (1, 2, 4, ... up to
// max_connections, each keeping the same P in flight); the ramp stops at the first step whose
// error ratio passes max_error_ratio, whose p99 passes p99_bound, or that has a client-side
// failure (connection refused or closed, reply timeout). That step is the breaking point and
// its failure mode is reported with the last step that held. Runs on the caller's thread.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bench/scenarios/throughput.hpp"

namespace drover::bench {

struct StressOptions {
  int max_connections = 256;
  std::chrono::milliseconds step{3'000};         // measured time per step
  std::chrono::milliseconds step_warmup{500};    // unmeasured load before each step's window
  double max_error_ratio = 0.01;                 // errors / (ok + errors)
  std::chrono::milliseconds p99_bound{100};
};

struct StressStep {
  int connections = 0;
  ThroughputResult result;
  std::string failure;  // empty when the step held; otherwise why it broke
};

struct StressResult {
  std::vector<StressStep> steps;
  std::optional<std::size_t> breaking;  // index of the first step that broke
};

// Runs one step; drover_bench.cpp passes droverd's or the direct worker's runner.
using StepRunner = std::function<ThroughputResult(const ThroughputOptions&)>;

StressResult run_stress(const ThroughputOptions& base, const StressOptions& options,
                        const StepRunner& run_step);

// Why a step broke under these bounds, or empty when it held. Pure.
std::string stress_failure(const ThroughputResult& result, const StressOptions& options);

std::string format_stress_text(const ThroughputOptions& base, const StressOptions& options,
                               const StressResult& result);
nlohmann::json stress_json(const ThroughputOptions& base, const StressOptions& options,
                           const StressResult& result);

}  // namespace drover::bench
