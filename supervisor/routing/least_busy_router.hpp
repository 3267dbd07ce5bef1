// LeastBusyRouter: the candidate holding the fewest requests; among equals, the next slot after
// the previous pick, so an idle pool still spreads work instead of piling onto slot 0.
#pragma once

#include "supervisor/routing/router.hpp"

namespace drover::supervisor {

class LeastBusyRouter final : public Router {
 public:
  std::optional<std::size_t> pick(std::span<const RouteCandidate> candidates) override;

 private:
  int last_slot_ = -1;
};

}  // namespace drover::supervisor
