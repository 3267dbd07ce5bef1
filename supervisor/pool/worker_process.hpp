// WorkerProcess: one spawned worker OS process (Boost.Process v2). Owns the child until it has
// been reaped: the destructor SIGKILLs a child still running, and reaping is asynchronous via a
// pidfd, so no zombie outlives its WorkerProcess. The child gets PR_SET_PDEATHSIG(SIGKILL), so
// it also dies if droverd itself is killed. Used on the supervisor's io_context thread only.
//
// Each worker leads a process group of its own (pgid = its pid): signal() and the destructor
// signal the group, and when the worker exits (for any reason) what is left of its group is
// SIGKILLed before the worker is reaped, so helpers a worker started (a wrapper script's
// children, a Python engine's subprocesses) do not outlive it. Not covered: a descendant that
// leaves the group (setsid, setpgid), and a droverd killed with SIGKILL, which takes only the
// worker itself with it (PR_SET_PDEATHSIG); use a cgroup (systemd KillMode=control-group, the
// default) for those.
#pragma once

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/system/result.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace drover::supervisor {

struct ExitStatus {
  int code = -1;    // exit code when exited normally, else -1
  int signal = 0;   // terminating signal, else 0
  std::string describe() const;
};

// The identity workers run as (workers.user / workers.group), resolved at start by the
// Supervisor; droverd stays root to be able to switch to it in each child.
struct WorkerCredentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (getgrouplist of the user), gid included
};

class WorkerProcess {
 public:
  using Env = std::vector<std::pair<std::string, std::string>>;

  // Starts argv with the supervisor's environment plus `extra_env`. A bare argv[0] (no '/') is
  // looked up next to the running droverd first, then in PATH. With `as`, the child switches
  // to that identity (setgroups, setresgid, setresuid) before exec and fails to start if any
  // step fails, so a worker never runs with droverd's privileges by accident.
  static boost::system::result<std::unique_ptr<WorkerProcess>, std::string> spawn(
      boost::asio::any_io_executor executor, const std::vector<std::string>& argv,
      const Env& extra_env, const std::optional<WorkerCredentials>& as = std::nullopt);

  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  int pid() const { return pid_; }
  bool reaped() const { return reaped_; }
  // Sends a signal to the worker's process group unless the worker has already been reaped
  // (until then neither its pid nor its group id can be reused).
  void signal(int sig);
  // Calls on_exit once, when the child has exited and been reaped.
  // REQUIRES: called at most once.
  void async_wait(std::function<void(ExitStatus)> on_exit);
  // Reads the child's stdout and stderr (one pipe) until it closes, calling on_line for each
  // line (longer lines are split at 16 KiB), so nothing a worker prints is lost.
  // REQUIRES: run at most once; the WorkerProcess outlives the coroutine.
  boost::asio::awaitable<void> forward_output(std::function<void(std::string_view)> on_line);

 private:
  WorkerProcess(boost::process::v2::process proc, boost::asio::readable_pipe output);

  boost::process::v2::process proc_;
  boost::asio::readable_pipe output_;
  boost::asio::posix::stream_descriptor exited_;  // a pidfd of the worker: readable once it exited
  int pid_;
  bool reaped_ = false;
};

// The path of a worker program: argv0 itself when it holds a '/', else the file of that name
// next to /proc/self/exe when it exists, else the PATH lookup.
std::string resolve_program(const std::string& argv0);

}  // namespace drover::supervisor
