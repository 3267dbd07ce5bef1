// Configuration of fault injection and of the canary controller (shared/DESIGN.md section 7b),
// kept apart from config.hpp's other blocks. Parsed and validated by common/config.cpp.
#pragma once

#include <array>
#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace drover {

// The pipeline stages with a percentage rollout (feature_flags), in the order of the
// supervisor's Stage enum (supervisor/pipeline/feature_flags.hpp).
inline constexpr std::array<std::string_view, 6> kRolloutStages = {
    "prompt_cache", "request_deduplication", "request_coalescing", "batch_queue",
    "stream_coalescing", "fault_injection"};

// Envoy's fault filter as a pipeline stage: requests in its rollout (feature_flags.fault_injection)
// are failed with abort_code (abort_percent of them) or held for delay_ms before going on
// (delay_percent of them). For drills and for testing the canary machinery; off by default.
struct FaultInjectionConfig {
  bool enabled = false;
  double abort_percent = 0.0;
  int abort_code = -32003;  // one of drover's JSON-RPC error codes (common/error_codes.hpp)
  std::chrono::milliseconds delay{0};
  double delay_percent = 0.0;
};

// What rolls a stage back: the canary cohort against the baseline cohort over the current step
// (supervisor/admin/rollout_controller.hpp has the statistical rule). 0 disables a trigger.
struct RolloutTriggers {
  double error_ratio_x = 2.0;          // canary error ratio > x * baseline's
  double p95_x = 1.5;                  // canary p95 latency > x * baseline's
  double ttft_p95_x = 0.0;             // canary p95 time to first token > x * baseline's
  double rss_growth_pct_per_h = 0.0;   // droverd's RSS growing faster than this during a step
  double crash_ratio = 0.001;          // share of canary requests failed by a worker crash
};

// The staged ramp of one stage's rollout percentage.
struct RolloutSpec {
  std::vector<int> steps = {1, 10, 50, 100};  // strictly increasing, 1..100
  std::chrono::seconds step_interval{300};
  int min_requests = 100;  // canary requests a step needs before it is judged
  RolloutTriggers triggers;
  bool dry_run = false;    // decide and log, but change no percentage
};

// rollouts: {STAGE: RolloutSpec}; a stage named here is ramped by the controller, whose
// percentage replaces feature_flags.STAGE.
using RolloutsConfig = std::map<std::string, RolloutSpec>;

}  // namespace drover
