#include "supervisor/pool/worker_process.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <unistd.h>

#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/stdio.hpp>
// Boost 1.81's header-only Process v2 forgets to include the definition of
// process_environment::on_setup; it is compiled here, in this one file.
#include <boost/process/v2/impl/environment.ipp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>

extern char** environ;

namespace drover::supervisor {
namespace bp = boost::process::v2;
namespace {

// Runs in the child between fork and exec: lead a process group of its own (so droverd can
// signal the worker and whatever it starts as one), take the workers' identity when one is
// configured, and die with droverd. Only async-signal-safe calls: the names were resolved
// before the fork.
struct WorkerSetup {
  pid_t droverd;  // getpid() before the fork
  const std::optional<WorkerCredentials>* as;

  template <typename Launcher>
  boost::system::error_code on_exec_setup(Launcher&, const bp::filesystem::path&,
                                          const char* const*(&)) {
    // Before exec, so the group exists before the spawn returns (Boost waits for the exec).
    ::setpgid(0, 0);
    if (*as) {
      const WorkerCredentials& c = **as;
      // Groups first: after setresuid the child could no longer change them. Real, effective
      // and saved ids all change, so the worker keeps nothing to switch back to.
      if (::setgroups(c.groups.size(), c.groups.data()) != 0 ||
          ::setresgid(c.gid, c.gid, c.gid) != 0 || ::setresuid(c.uid, c.uid, c.uid) != 0) {
        return {errno, boost::system::system_category()};
      }
      if (::setuid(0) == 0) return {EPERM, boost::system::system_category()};
    }
    // After the credential change, which clears the parent-death signal.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // If droverd died between fork and prctl, the child would never get the signal. Compared
    // with droverd's pid, not with 1: an orphan is reparented to the nearest subreaper
    // (systemd --user, a container's init, a test runner), which is rarely pid 1.
    if (::getppid() != droverd) ::_exit(127);
    close_inherited_on_exec();
    return {};
  }

  // Boost 1.81's close_all_fds closes only the descriptors above its last whitelisted one, so
  // the worker would inherit droverd's listening sockets: after SIGTERM a TCP port would still
  // accept connections into a backlog nobody serves, reset when the workers exit. Stdio is in
  // place by now (process_stdio runs first); nothing else is meant to be inherited.
  static void close_inherited_on_exec() {
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
    const long max = ::sysconf(_SC_OPEN_MAX);  // kernels before 5.11
    for (int fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); ++fd) {
      const int flags = ::fcntl(fd, F_GETFD);
      if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
  }
};

}  // namespace

std::string ExitStatus::describe() const {
  if (signal != 0) return fmt::format("killed by signal {} ({})", signal, ::strsignal(signal));
  return fmt::format("exited with code {}", code);
}

std::string resolve_program(const std::string& argv0) {
  if (argv0.find('/') != std::string::npos) return argv0;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto sibling = self.parent_path() / argv0;
    if (::access(sibling.c_str(), X_OK) == 0) return sibling.string();
  }
  const auto found = bp::environment::find_executable(argv0);
  return found.empty() ? argv0 : found.string();
}

boost::system::result<std::unique_ptr<WorkerProcess>, std::string> WorkerProcess::spawn(
    boost::asio::any_io_executor executor, const std::vector<std::string>& argv,
    const Env& extra_env, const std::optional<WorkerCredentials>& as) {
  using R = boost::system::result<std::unique_ptr<WorkerProcess>, std::string>;
  if (argv.empty()) return R(boost::system::in_place_error, "empty worker command");
  const std::string program = resolve_program(argv[0]);
  if (::access(program.c_str(), X_OK) != 0) {
    return R(boost::system::in_place_error,
             fmt::format("worker program '{}' not found or not executable", argv[0]));
  }
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry(*e);
    const auto eq = entry.find('=');
    const std::string_view name = entry.substr(0, eq);
    bool overridden = false;
    for (const auto& [k, v] : extra_env) overridden = overridden || k == name;
    if (!overridden) env.emplace_back(entry);
  }
  for (const auto& [k, v] : extra_env) env.push_back(k + "=" + v);
  std::vector<std::string> args(argv.begin() + 1, argv.end());
  // One pipe for the child's stdout and stderr; the read end stays here (close-on-exec), the
  // write end becomes the child's fds 1 and 2 and is closed here after the spawn.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return R(boost::system::in_place_error, fmt::format("pipe2: {}", std::strerror(errno)));
  }
  boost::asio::readable_pipe output(executor);
  output.assign(fds[0]);
  try {
    bp::process proc(executor, program, args, bp::process_environment(env),
                     bp::process_stdio{nullptr, fds[1], fds[1]}, WorkerSetup{::getpid(), &as});
    ::close(fds[1]);
    return std::unique_ptr<WorkerProcess>(new WorkerProcess(std::move(proc), std::move(output)));
  } catch (const boost::system::system_error& e) {
    ::close(fds[1]);
    return R(boost::system::in_place_error, fmt::format("cannot start '{}': {}", program, e.what()));
  }
}

WorkerProcess::WorkerProcess(bp::process proc, boost::asio::readable_pipe output)
    : proc_(std::move(proc)),
      output_(std::move(output)),
      exited_(output_.get_executor()),
      pid_(proc_.id()) {}

boost::asio::awaitable<void> WorkerProcess::forward_output(std::function<void(std::string_view)> on_line) {
  constexpr std::size_t kMaxLine = 16 * 1024;
  std::string pending;
  char buf[4096];
  for (;;) {
    auto [ec, n] = co_await output_.async_read_some(boost::asio::buffer(buf),
                                                    boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) break;
    pending.append(buf, n);
    std::size_t start = 0;
    for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      on_line(std::string_view(pending).substr(start, nl - start));
    }
    pending.erase(0, start);
    while (pending.size() > kMaxLine) {
      on_line(std::string_view(pending).substr(0, kMaxLine));
      pending.erase(0, kMaxLine);
    }
  }
  if (!pending.empty()) on_line(pending);
}

// The group first (while the worker is unreaped its pid, and so its group id, cannot be
// reused); then bp::process's destructor kills the worker if still running and reaps it, so no
// zombie remains.
WorkerProcess::~WorkerProcess() {
  if (!reaped_) ::kill(-pid_, SIGKILL);
}

void WorkerProcess::signal(int sig) {
  if (reaped_) return;
  // The whole group: a worker's helpers go with it. A worker that left the group (setsid)
  // is signalled alone.
  if (::kill(-pid_, sig) != 0) ::kill(pid_, sig);
}

void WorkerProcess::async_wait(std::function<void(ExitStatus)> on_exit) {
  auto reap = [this, on_exit = std::move(on_exit)] {
    proc_.async_wait([this, on_exit](boost::system::error_code ec, int) {
      if (ec == boost::asio::error::operation_aborted) return;
      reaped_ = true;
      const int raw = proc_.native_exit_code();
      ExitStatus status;
      if (WIFSIGNALED(raw)) {
        status.signal = WTERMSIG(raw);
      } else if (WIFEXITED(raw)) {
        status.code = WEXITSTATUS(raw);
      }
      on_exit(status);
    });
  };
  // The exit is seen on a pidfd of our own before Boost reaps: while the worker is a zombie its
  // pid cannot be reused, so what is left of its group (children it started) is killed without
  // any risk of hitting an unrelated process group.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd < 0) return reap();  // no pidfd (kernel < 5.3): reaped without the group sweep
  boost::system::error_code ec;
  exited_.assign(pidfd, ec);
  if (ec) {
    ::close(pidfd);
    return reap();
  }
  exited_.async_wait(boost::asio::posix::descriptor_base::wait_read,
                     [this, reap = std::move(reap)](boost::system::error_code e) {
                       if (e == boost::asio::error::operation_aborted) return;
                       ::kill(-pid_, SIGKILL);
                       reap();
                     });
}

}  // namespace drover::supervisor
