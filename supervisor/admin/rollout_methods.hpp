// The admin socket's rollouts.* methods (shared/DESIGN.md section 7b), answered by the
// RolloutController: rollouts.status, rollouts.pause {stage}, rollouts.resume {stage},
// rollouts.set {stage, percent}, rollouts.rollback {stage}. Every action answers with the
// stage's status after it. Supervisor thread only.
#pragma once

#include "supervisor/admin/rollout_controller.hpp"
#include "supervisor/frontend/request_handler.hpp"

namespace drover::supervisor {

// REQUIRES: `controller` outlives `handler`'s use of the methods.
void register_rollout_methods(RequestHandler& handler, RolloutController& controller);

}  // namespace drover::supervisor
