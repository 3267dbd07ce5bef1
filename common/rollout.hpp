// Feature rollout by percentage (the feature_flags block): whether one request is in a stage's
// rollout, decided by a stable hash of its request id, so the answer is the same every time it
// is asked, on every droverd. Each stage salts the hash with its name, so a request left out
// of one stage is not thereby left out of all of them. Pure; any thread.
//
//   bucket = fnv1a("<stage>:<id>") % 100;  in  <=>  bucket < percent
//   e.g. percent 25: ids whose bucket is 0..24 are in (about a quarter), 25..99 out;
//        percent 0: none, 100: all (no hash is computed for either).
#pragma once

#include <cstdint>
#include <string_view>

namespace drover {

// FNV-1a (64 bits): stable across processes, builds and machines, unlike std::hash.
inline std::uint64_t stable_hash(std::string_view text, std::uint64_t h = 0xcbf29ce484222325ULL) {
  for (const unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// The stage's bucket (0..99) of a request id.
inline int rollout_bucket(std::string_view stage, std::string_view request_id) {
  const std::uint64_t h = stable_hash(request_id, stable_hash(":", stable_hash(stage)));
  return static_cast<int>(h % 100);
}

inline bool in_rollout(std::string_view stage, std::string_view request_id, int percent) {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  return rollout_bucket(stage, request_id) < percent;
}

}  // namespace drover
