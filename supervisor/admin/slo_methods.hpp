// The admin socket's slo.status method (shared/DESIGN.md section 7b, docs/OPERATIONS.md "SLO
// policies"), answered by the SloEngine: the window, each objective and each policy with its
// last decision. Supervisor thread only.
#pragma once

#include "supervisor/admin/slo_engine.hpp"
#include "supervisor/frontend/request_handler.hpp"

namespace drover::supervisor {

// REQUIRES: `engine` outlives `handler`'s use of the method.
void register_slo_methods(RequestHandler& handler, const SloEngine& engine);

}  // namespace drover::supervisor
