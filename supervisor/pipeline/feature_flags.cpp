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
  }
  return "unknown";
}

int FeatureFlags::bucket(Stage stage, std::string_view request_id) {
  return rollout_bucket(stage_name(stage), request_id);
}

int FeatureFlags::rollout_percent(Stage stage, const FeatureFlagsConfig& f) {
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
  }
  return 0;
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
