// The run directory: where droverd creates the per-worker control sockets (server.run_dir).
// Configured: created when missing, and used only if it is a real directory (not a symlink)
// owned by droverd's user. Not configured: a fresh private directory
// <temp_dir()>/drover-<pid>-XXXXXX (mkdtemp), which the Supervisor removes at exit and a later
// droverd removes as stale if this one crashed (stale_state.hpp knows the same name).
// Start-up thread only; errors throw std::runtime_error naming server.run_dir.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace drover::supervisor {

// Prefix of everything droverd names after its pid: run directories and shm segments.
inline constexpr std::string_view kStateNamePrefix = "drover-";

// $TMPDIR when set and non-empty, else /tmp.
std::string temp_dir();

// Creates (or checks) the run directory, mode 0700. `owner`/`group` (-1: unchanged) hand it to
// the user droverd will drop to, so it can still create and remove sockets there. Returns the
// path.
std::string make_run_dir(const std::string& configured, uid_t owner, gid_t group);

}  // namespace drover::supervisor
