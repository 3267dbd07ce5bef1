#include "supervisor/routing/least_busy_router.hpp"
#include "supervisor/routing/round_robin_router.hpp"

namespace drover::supervisor {

std::unique_ptr<Router> make_router(RoutingStrategy strategy) {
  switch (strategy) {
    case RoutingStrategy::least_busy: return std::make_unique<LeastBusyRouter>();
    case RoutingStrategy::round_robin: break;
  }
  return std::make_unique<RoundRobinRouter>();
}

}  // namespace drover::supervisor
