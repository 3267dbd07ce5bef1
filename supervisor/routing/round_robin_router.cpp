#include "supervisor/routing/round_robin_router.hpp"

namespace drover::supervisor {

std::optional<std::size_t> RoundRobinRouter::pick(std::span<const RouteCandidate> candidates) {
  if (candidates.empty()) return std::nullopt;
  // The candidate with the smallest slot greater than the last pick; wrap to the smallest.
  std::optional<std::size_t> after, lowest;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const int slot = candidates[i].slot;
    if (!lowest || slot < candidates[*lowest].slot) lowest = i;
    if (slot > last_slot_ && (!after || slot < candidates[*after].slot)) after = i;
  }
  const std::size_t chosen = after ? *after : *lowest;
  last_slot_ = candidates[chosen].slot;
  return chosen;
}

}  // namespace drover::supervisor
