// Stale state: what a droverd that crashed (SIGKILL, OOM kill, power loss of a tmpfs-less run
// directory) left on the host, removed when the next droverd starts.
//
// droverd names its host state after its pid (run_dir.hpp's kStateNamePrefix):
//   <run base>/drover-<pid>-<mkdtemp suffix>   a run directory (default server.run_dir, in the
//                                              private run directory of common/run_paths.hpp)
//   <shm dir>/drover-<pid>-<hex>               a shared-memory segment (proto/shm_segment.hpp)
// An entry is stale when its <pid> is not a live process (kill(pid, 0) fails with ESRCH), or
// is droverd's own pid (in a container droverd may run as the same pid every time; nothing of
// this process exists yet when the sweep runs, except `keep`). Only entries owned by `owner`
// are touched: a run directory must be a real directory (never followed through a symlink),
// a segment a regular file. A segment is removed only when a stale run directory of the same
// pid was found in `run_base` in the same sweep: that ties it to a dead droverd of this run
// base, whereas a dead pid alone does not (droverds with other run bases, and tests running in
// parallel, share /dev/shm). Anything else matching the pattern is left alone.
//
// Limits: liveness is judged in droverd's pid namespace, so droverds in different pid
// namespaces must not share a run base or /dev/shm under the same uid.
// Start-up thread only, before any worker (and so any segment) exists.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace drover::supervisor {

struct StaleStateReport {
  std::vector<std::string> removed;  // paths removed
  std::vector<std::string> failed;   // "path: reason" for stale entries that could not be removed
};

// Sweeps `run_base` for run directories and `shm_dir` for segments, as described above, and
// logs each removal (info) and failure (warn). A directory that cannot be listed is skipped.
StaleStateReport remove_stale_state(const std::string& run_base, const std::string& shm_dir,
                                    uid_t owner, const std::string& keep);

}  // namespace drover::supervisor
