// FeatureFlags: percentage rollout of the pipeline stages (config block feature_flags). A
// stage applies to a request when its block says `enabled` AND the request falls in the
// stage's rollout percentage, by the stable salted hash of common/rollout.hpp of the request id
// (the client's JSON-RPC id as JSON text, or droverd's internal request id for a notification).
//
// Counts the decisions it makes (in / out per stage) for telemetry. Owned by the
// RequestPipeline; supervisor thread only.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "common/config.hpp"
#include "proto/jsonrpc.hpp"

namespace drover::supervisor {

enum class Stage {
  prompt_cache,
  request_deduplication,
  request_coalescing,
  batch_queue,
  stream_coalescing,
  fault_injection
};
inline constexpr std::size_t kStageCount = 6;

// A request's cohorts: bit (1 << Stage) set when the stage's rollout takes the request (the
// canary cohort), clear when not (the baseline cohort).
using CohortMask = std::uint8_t;
constexpr CohortMask cohort_bit(Stage s) { return static_cast<CohortMask>(1u << static_cast<unsigned>(s)); }

std::string_view stage_name(Stage stage);

class FeatureFlags {
 public:
  // The stage's bucket for `request_id` (0..99).
  static int bucket(Stage stage, std::string_view request_id);

  // Whether `stage` applies to the request, given the stage's `enabled` and the config's
  // rollout percentage; counted.
  bool admits(Stage stage, bool enabled, const FeatureFlagsConfig& flags,
              std::string_view request_id);

  // The config field that holds `stage`'s rollout percentage (const or not: the canary
  // controller writes it).
  template <typename Flags>
  static auto& rollout_field(Flags& f, Stage stage) {
    switch (stage) {
      case Stage::prompt_cache:
        return f.prompt_cache;
      case Stage::request_deduplication:
        return f.request_deduplication;
      case Stage::request_coalescing:
        return f.request_coalescing;
      case Stage::batch_queue:
        return f.batch_queue;
      case Stage::stream_coalescing:
        return f.stream_coalescing;
      case Stage::fault_injection:
        break;
    }
    return f.fault_injection;
  }
  static int rollout_percent(Stage stage, const FeatureFlagsConfig& flags) {
    return rollout_field(flags, stage);
  }

  // Every stage's decision for one request at once, uncounted: a bit set for each stage that
  // is enabled in `config` and whose rollout takes `request_id`. What the cohort metrics and
  // the fault injection stage go by; agrees with admits() for each stage.
  static CohortMask cohorts(const Config& config, std::string_view request_id);

  struct Counts {
    std::uint64_t in = 0;
    std::uint64_t out = 0;
  };
  const Counts& counts(Stage stage) const { return counts_[static_cast<std::size_t>(stage)]; }

 private:
  std::array<Counts, kStageCount> counts_{};
};

}  // namespace drover::supervisor
