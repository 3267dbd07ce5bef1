#include "supervisor/pipeline/feature_flags.hpp"

#include <string>

#include "supervisor/pipeline/request_key.hpp"

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
  std::string salted(stage_name(stage));
  salted += ':';
  salted += request_id;
  return static_cast<int>(stable_hash(salted) % 100);
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
  // 100 and 0 need no hash; the common case stays cheap.
  const bool in =
      enabled && (percent >= 100 || (percent > 0 && bucket(stage, request_id) < percent));
  auto& c = counts_[static_cast<std::size_t>(stage)];
  ++(in ? c.in : c.out);
  return in;
}

}  // namespace drover::supervisor
