// Router: picks the worker for the next request among the candidates the pool offers (ready,
// not draining, below their in-flight limit). Interface plus factory; implementations are
// stateful (a cursor) but only touched from the supervisor's io_context thread.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>

#include "common/config.hpp"

namespace drover::supervisor {

struct RouteCandidate {
  int slot = 0;          // worker slot id
  int inflight = 0;      // requests it holds now
};

class Router {
 public:
  virtual ~Router() = default;
  // Index into candidates of the chosen worker, or nullopt when candidates is empty.
  virtual std::optional<std::size_t> pick(std::span<const RouteCandidate> candidates) = 0;
};

// round_robin: slots in turn, skipping those not offered. least_busy: fewest in flight, ties
// broken round-robin so equal workers share load.
std::unique_ptr<Router> make_router(RoutingStrategy strategy);

}  // namespace drover::supervisor
