// Where droverd's sockets live unless configured: a private run directory, never a shared
// directory another user could have squatted (docs/SECURITY.md "Run directory").
//
//   $XDG_RUNTIME_DIR/drover       when XDG_RUNTIME_DIR is set and non-empty (a login session's
//                                 own 0700 tmpfs)
//   /run/drover                   as root
//   <$TMPDIR or /tmp>/drover-<uid> otherwise: created 0700, and refused when it is a symlink or
//                                 owned by another user
//
// In it: drover.sock (server.socket), admin.sock (server.admin_socket) and droverd's per-run
// directories of worker control sockets (server.run_dir unset). droverd and droverctl resolve
// the same directory from the same environment, so droverctl finds droverd without flags.
// Functions of the environment they are given; ensure_private_dir is for the start-up thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/config.hpp"

namespace drover {

inline constexpr std::string_view kClientSocketName = "drover.sock";
inline constexpr std::string_view kAdminSocketName = "admin.sock";

// The default run directory for a process with effective uid `euid` in environment `env`.
std::string default_run_base(const Environment& env, uid_t euid);

// `base`/drover.sock and `base`/admin.sock.
std::string default_client_socket(const std::string& base);
std::string default_admin_socket(const std::string& base);

// For a client about to connect to a default socket: why `base` must not be trusted (a
// symlink, not a directory, or owned by neither `euid` nor root: someone else may be listening
// there), or "" when it may be (a missing directory too: connecting will simply fail).
std::string untrusted_run_base(const std::string& base, uid_t euid);

// Creates `path` (its parent must exist) with `mode`, or adopts an existing one: opened without
// following a final symlink, then checked through the descriptor, so what is checked is what
// is changed. Refused (std::runtime_error starting with `what`, e.g. "server.run_dir"): a
// symlink, a non-directory, or a directory owned by anyone but the effective uid or `owner`.
// Then chowned to `owner`/`group` (-1: unchanged) and chmodded to `mode`.
void ensure_private_dir(const std::string& path, std::string_view what, mode_t mode, uid_t owner,
                        gid_t group);

}  // namespace drover
