// The run directory: where droverd creates the per-worker control sockets (server.run_dir).
// Configured: created when missing, and used only if it is a real directory (not a symlink)
// owned by droverd's user. Not configured: a fresh directory <base>/drover-<pid>-XXXXXX
// (mkdtemp) in the private run directory `base` (common/run_paths.hpp), which the Supervisor
// removes at exit and a later droverd removes as stale if this one crashed (stale_state.hpp
// knows the same name).
// Start-up thread only; errors throw std::runtime_error naming server.run_dir.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <utility>

namespace drover::supervisor {

// Prefix of everything droverd names after its pid: run directories and shm segments.
inline constexpr std::string_view kStateNamePrefix = "drover-";

// Who may reach the run directory besides droverd: `owner`/`group` (-1: unchanged) take it
// over, for the user droverd drops to (so it can still remove sockets there); `mode` is 0700,
// or 0710 when workers run as another user in `group` (they reach their own control socket by
// name, and cannot list the directory).
struct RunDirAccess {
  uid_t owner = static_cast<uid_t>(-1);
  gid_t group = static_cast<gid_t>(-1);
  mode_t mode = 0700;
};

// Creates (or checks) the run directory. Returns the path.
std::string make_run_dir(const std::string& configured, const std::string& base,
                         const RunDirAccess& access);

// Removes the run directory droverd created itself (server.run_dir not configured) when it goes
// out of scope: at a normal exit, and when start-up fails after creating it (a socket in use,
// a bind error), so no way out leaves it for the next start to clean up. A configured run_dir
// belongs to the operator and is never removed. The owner declares it before anything that
// creates sockets in it, so those are gone first.
class RunDirCleanup {
 public:
  RunDirCleanup() = default;
  RunDirCleanup(const RunDirCleanup&) = delete;
  RunDirCleanup& operator=(const RunDirCleanup&) = delete;
  ~RunDirCleanup();
  void own(std::string path) { path_ = std::move(path); }

 private:
  std::string path_;
};

}  // namespace drover::supervisor
