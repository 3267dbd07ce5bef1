// Feature rollout by percentage (feature_flags.* in the config): whether one request is in a
// stage's rollout, decided by a stable hash of its request id, so the decision is the same
// every time it is asked for that request. Pure; any thread.
#pragma once

#include <cstdint>
#include <string_view>

namespace drover {

// True for about `percent` (0..100) of request ids: FNV-1a of the id, modulo 100, below
// `percent`. 0 includes none, 100 all.
inline bool in_rollout(std::string_view request_id, int percent) {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  std::uint64_t h = 1469598103934665603ULL;
  for (const unsigned char c : request_id) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return static_cast<int>(h % 100) < percent;
}

}  // namespace drover
