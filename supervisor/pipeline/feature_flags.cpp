#include "supervisor/pipeline/feature_flags.hpp"

#include <string>

#include "common/rollout.hpp"

namespace drover::supervisor {

std::string_view stage_name(Stage stage) {
  switch (stage) {
    case Stage::prompt_cache:
      return "prompt_cache";
    case Stage::request_deduplication:
      return "request_deduplication";
    case Stage::request_coalescing:
      return "request_coalescing";
    case Stage::batch_queue:
      return "batch_queue";
    case Stage::stream_coalescing:
      return "stream_coalescing";
    case Stage::fault_injection:
      return "fault_injection";
  }
  return "unknown";
}

int FeatureFlags::bucket(Stage stage, std::string_view request_id) {
  return rollout_bucket(stage_name(stage), request_id);
}

bool FeatureFlags::admits(Stage stage, bool enabled, const FeatureFlagsConfig& flags,
                          std::string_view request_id) {
  const int percent = rollout_percent(stage, flags);
  const bool in = enabled && in_rollout(stage_name(stage), request_id, percent);
  auto& c = counts_[static_cast<std::size_t>(stage)];
  ++(in ? c.in : c.out);
  return in;
}

}  // namespace drover::supervisor

namespace drover::supervisor {

CohortMask FeatureFlags::cohorts(const Config& c, std::string_view request_id) {
  const bool enabled[kStageCount] = {c.prompt_cache.enabled,       c.request_deduplication.enabled,
                                     c.request_coalescing.enabled, c.batch_queue.enabled,
                                     true,  // stream_coalescing has no block of its own
                                     c.fault_injection.enabled};
  CohortMask mask = 0;
  for (std::size_t i = 0; i < kStageCount; ++i) {
    const auto stage = static_cast<Stage>(i);
    if (enabled[i] && in_rollout(stage_name(stage), request_id, rollout_percent(stage, c.feature_flags))) {
      mask |= cohort_bit(stage);
    }
  }
  return mask;
}

}  // namespace drover::supervisor
