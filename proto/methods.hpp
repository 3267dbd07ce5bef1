// Client-facing method names (shared/DESIGN.md section 4) and which of them are admin-only.
// Shared by droverd (to refuse admin methods on the client socket with -32008) and droverctl
// (to send them to the admin socket).
#pragma once

#include <algorithm>
#include <array>
#include <string_view>

namespace drover::proto {

inline constexpr std::array<std::string_view, 17> kAdminMethods = {
    "workers.list",    "workers.kill",   "workers.restart", "workers.drain",
    "workers.scale",   "workers.inject", "models.load",     "models.unload",
    "config.get",      "config.reload",  "config.updateAdaptiveTargets",
    "rollouts.status", "rollouts.pause", "rollouts.resume", "rollouts.set",
    "rollouts.rollback", "slo.status"};

constexpr bool is_admin_method(std::string_view method) {
  return std::find(kAdminMethods.begin(), kAdminMethods.end(), method) != kAdminMethods.end();
}

}  // namespace drover::proto
