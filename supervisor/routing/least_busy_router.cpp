#include "supervisor/routing/least_busy_router.hpp"

namespace drover::supervisor {

std::optional<std::size_t> LeastBusyRouter::pick(std::span<const RouteCandidate> candidates) {
  if (candidates.empty()) return std::nullopt;
  std::optional<std::size_t> best;
  // Rank: fewer in flight first; then slots after the last pick before slots at or before it;
  // then lower slot ids.
  auto rank = [this](const RouteCandidate& c) {
    return std::tuple(c.inflight, c.slot <= last_slot_, c.slot);
  };
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    if (!best || rank(candidates[i]) < rank(candidates[*best])) best = i;
  }
  last_slot_ = candidates[*best].slot;
  return best;
}

}  // namespace drover::supervisor
