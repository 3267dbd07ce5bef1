// The `regression` scenario: compares a run with a stored baseline (a `drover-bench throughput
// --json` or `ttft --json` object, e.g. bench/baselines/<date>-<commit>/unary_8x8.1.json) and
// fails when a figure moved the wrong way by more than the tolerance (10 % by default):
//
//   requests_per_s      regressed when current < baseline * (1 - tolerance)
//   latency_ms.p50/p99  regressed when current > baseline * (1 + tolerance)
//   first_chunk_ms.p50  the same, when both runs were streamed
//   errors              regressed when the baseline had none and the current run has some
//
// Worked example, tolerance 0.10: baseline 65 000 req/s and p99 1.82 ms; a run of 60 000 req/s
// (-7.7 %) and p99 2.10 ms (+15.4 %) passes on throughput and regresses on p99 (> 2.002 ms).
// Moving the right way by more than the tolerance is reported as "improved" (time to store a new
// baseline), never as a failure. The run repeats the baseline's load (connections, in flight,
// max_tokens, streaming, framing, window): compare_runs refuses runs of different shapes. Pure.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/scenarios/throughput.hpp"

namespace drover::bench {

struct RegressionCheck {
  std::string metric;
  double baseline = 0;
  double current = 0;
  bool higher_is_better = false;
  std::string verdict;  // "ok", "improved" or "regressed"
};

struct RegressionReport {
  std::vector<RegressionCheck> checks;
  bool regressed() const;
};

// Copies the baseline's load shape into `options` (connections, inflight, max_tokens, stream,
// framing, warm-up, and duration or request count). Throws std::runtime_error when the baseline
// is not a drover-bench throughput/ttft object.
void apply_baseline_options(const nlohmann::json& baseline, ThroughputOptions& options);

// Throws std::invalid_argument when the two runs do not have the same load shape, and
// std::runtime_error when either is not a drover-bench --json result.
RegressionReport compare_runs(const nlohmann::json& baseline, const nlohmann::json& current,
                              double tolerance);

std::string format_regression_text(const RegressionReport& report, double tolerance);
nlohmann::json regression_json(const RegressionReport& report, double tolerance,
                               const nlohmann::json& current);

}  // namespace drover::bench
