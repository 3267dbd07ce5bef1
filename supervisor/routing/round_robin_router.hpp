// RoundRobinRouter: each pick takes the next slot id after the previous pick, so workers share
// requests evenly whatever order the pool lists them in and however many are missing.
#pragma once

#include "supervisor/routing/router.hpp"

namespace drover::supervisor {

class RoundRobinRouter final : public Router {
 public:
  std::optional<std::size_t> pick(std::span<const RouteCandidate> candidates) override;

 private:
  int last_slot_ = -1;
};

}  // namespace drover::supervisor
