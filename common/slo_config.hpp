// Configuration of the SLO policy engine (shared/DESIGN.md section 7b, docs/OPERATIONS.md "SLO
// policies"): the service level objectives droverd watches over a sliding window of the requests
// it served, and the policies that act while an objective is breached. Parsed and validated by
// common/config.cpp; the engine is supervisor/admin/slo_engine.hpp. Off while no policy is
// configured (the shipped config has none).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace drover {

// The objectives; index order of SloTarget.
enum class SloTarget { latency_p95, ttft_p95, error_ratio };
inline constexpr std::array<std::string_view, 3> kSloTargetNames = {"latency_p95", "ttft_p95",
                                                                   "error_ratio"};

// What a policy does while its objective is breached; the value names used in the config.
enum class SloAction {
  shed_low_priority,   // refuse low-priority requests with -32001 + retry_after_ms
  tighten_admission,   // server.max_queue x factor
  lower_batch_target,  // the batch queue's target batch time and size x factor
  add_warm_spare,      // one more warm spare per cooldown, up to max_extra_spares
  recycle_rss_growth,  // drain and replace a worker whose RSS grows too fast (not SLO-bound)
};
inline constexpr std::array<std::string_view, 5> kSloActionNames = {
    "shed_low_priority", "tighten_admission", "lower_batch_target", "add_warm_spare",
    "recycle_rss_growth"};

inline std::string_view to_string(SloTarget t) { return kSloTargetNames[static_cast<std::size_t>(t)]; }
inline std::string_view to_string(SloAction a) { return kSloActionNames[static_cast<std::size_t>(a)]; }

// One policy: an action, the objectives it watches, its cooldown and its dry run.
struct SloPolicySpec {
  SloAction action = SloAction::shed_low_priority;
  // The objective watched; nullopt: every objective the slo block sets ("slo: any").
  std::optional<SloTarget> watch;
  bool dry_run = false;  // decide, log "would ...", count; change nothing
  // No new action of this policy within cooldown of its last one (reverting is never delayed).
  std::chrono::seconds cooldown{30};
  // shed_low_priority: the retry_after_ms hint of a shed request.
  std::int64_t retry_after_ms = 1000;
  // tighten_admission, lower_batch_target: the factor applied (0 < factor < 1).
  double factor = 0.5;
  // add_warm_spare: spares added at most, above workers.warm_spares.
  int max_extra_spares = 1;
  // recycle_rss_growth: a worker whose RSS grows faster than this (least-squares slope over
  // the window) is drained and replaced.
  double max_rss_growth_mb_per_min = 0.0;

  bool operator==(const SloPolicySpec&) const = default;
};

struct SloConfig {
  // Objectives; 0 leaves one unset.
  double latency_p95_ms = 0.0;  // p95 of accepted -> answered
  double ttft_p95_ms = 0.0;     // p95 of accepted -> first output from a worker
  double error_ratio = 0.0;     // share of accepted requests answered with an error
  std::chrono::seconds window{60};
  // How often the objectives and policies are judged.
  std::chrono::milliseconds eval_interval{1000};
  // Minimum sample: an objective is judged only on a window with this many observations
  // (latency / TTFT samples, or requests for error_ratio).
  int min_requests = 100;
  // Hysteresis: a breached objective recovers only once its figure is below recover_ratio x
  // the objective (recycle_rss_growth: the worker's growth below recover_ratio x the bound).
  double recover_ratio = 0.8;
  // One policy per action.
  std::vector<SloPolicySpec> policies;

  bool enabled() const { return !policies.empty(); }
  // The objective of `t` in its figure's unit (seconds or a ratio); 0 when unset.
  double target(SloTarget t) const {
    switch (t) {
      case SloTarget::latency_p95:
        return latency_p95_ms / 1000.0;
      case SloTarget::ttft_p95:
        return ttft_p95_ms / 1000.0;
      case SloTarget::error_ratio:
        return error_ratio;
    }
    return 0.0;
  }
  bool operator==(const SloConfig&) const = default;
};

}  // namespace drover
