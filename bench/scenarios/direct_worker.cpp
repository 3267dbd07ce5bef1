#include "bench/scenarios/direct_worker.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "proto/worker_codec.hpp"

extern char** environ;

namespace drover::bench {
namespace {

using Clock = std::chrono::steady_clock;
namespace wm = proto::worker::method;

std::runtime_error sys_error(const std::string& what) {
  return std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
}

std::string default_worker_bin() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("drover-worker") : (self.parent_path() / "drover-worker").string();
}

std::chrono::milliseconds left_until(Clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return fmt::format("wait status {}", status);
}

}  // namespace

DirectWorker::DirectWorker(DirectOptions options) : opt_(std::move(options)) {
  if (opt_.worker_bin.empty()) opt_.worker_bin = default_worker_bin();
  transport_ = opt_.stdio ? "stdio" : "socket";
  std::vector<std::string> argv = {opt_.worker_bin};
  if (opt_.stdio) argv.push_back("--stdio");
  argv.insert(argv.end(), opt_.worker_args.begin(), opt_.worker_args.end());
  const auto deadline = Clock::now() + opt_.start_timeout;
  int listener = -1;
  try {
    if (opt_.stdio) {
      // A socketpair, as Node (libuv) gives its children for stdio pipes: one end becomes the
      // worker's fd 0 and fd 1, the other is our link.
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw sys_error("socketpair");
      link_.emplace(client::RpcClient::adopt(sv[0]));
      try {
        spawn(argv, sv[1], {});
      } catch (...) {
        ::close(sv[1]);
        throw;
      }
      ::close(sv[1]);
    } else {
      // What droverd does per worker: a private control socket the worker connects to.
      char dir[] = "/tmp/drover-bench-XXXXXX";
      if (!::mkdtemp(dir)) throw sys_error("mkdtemp");
      dir_ = dir;
      const std::string path = dir_ + "/control.sock";
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
      listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (listener < 0) throw sys_error("socket");
      if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        throw sys_error("bind " + path);
      }
      if (::listen(listener, 1) != 0) throw sys_error("listen");
      spawn(argv, -1, path);
      for (;;) {
        if (auto st = poll_exit()) {
          throw std::runtime_error(fmt::format("worker {} before connecting", describe_status(*st)));
        }
        if (Clock::now() >= deadline) throw std::runtime_error("worker did not connect in time");
        pollfd p{listener, POLLIN, 0};
        // Short slices, so a worker that dies before connecting is noticed promptly.
        const int r = ::poll(&p, 1, 50);
        if (r < 0 && errno != EINTR) throw sys_error("poll");
        if (r > 0) break;
      }
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) throw sys_error("accept");
      link_.emplace(client::RpcClient::adopt(fd));
      ::close(listener);
      listener = -1;
      ::unlink(path.c_str());
    }
    handshake();
  } catch (...) {
    if (listener >= 0) ::close(listener);
    stop();
    throw;
  }
}

void DirectWorker::spawn(const std::vector<std::string>& argv, int stdio_fd,
                         const std::string& socket_path) {
  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string_view kv(*e);
    if (kv.starts_with("DROVER_WORKER_ID=") || kv.starts_with("DROVER_CONTROL_SOCKET=")) continue;
    env_strings.emplace_back(kv);
  }
  env_strings.push_back(fmt::format("{}={}", proto::worker::kEnvWorkerId, opt_.worker_id));
  if (!socket_path.empty()) {
    env_strings.push_back(fmt::format("{}={}", proto::worker::kEnvControlSocket, socket_path));
  }
  std::vector<char*> args, env;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env_strings) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // drover-bench died before prctl
    if (stdio_fd >= 0) {
      ::dup2(stdio_fd, 0);
      ::dup2(stdio_fd, 1);
    } else if (devnull >= 0) {
      ::dup2(devnull, 0);
    }
    ::execvpe(args[0], args.data(), env.data());
    ::_exit(127);
  }
  const int fork_errno = errno;
  if (devnull >= 0) ::close(devnull);
  if (pid_ < 0) {
    errno = fork_errno;
    throw sys_error("fork");
  }
}

void DirectWorker::handshake() {
  const auto deadline = Clock::now() + opt_.start_timeout;
  try {
    auto hello = link_->read(left_until(deadline));
    if (!hello) throw std::runtime_error("no hello from the worker in time");
    if (hello->value("method", std::string()) != wm::kHello) {
      throw std::runtime_error("the worker's first message is not hello: " + hello->dump());
    }
    const client::json init = {{"worker_id", opt_.worker_id},
                               {"generation", 1},
                               {"backend", opt_.backend},
                               {"heartbeat_interval_ms", 1000},
                               {"transport", transport_},
                               {"preload", {{"enabled", false}}}};
    const client::json reply = link_->call(wm::kInit, init, left_until(deadline));
    if (!reply.contains("result")) throw std::runtime_error("init failed: " + reply.dump());
  } catch (const client::ClientError& e) {
    std::string why = e.what();
    if (auto st = poll_exit()) why += " (worker " + describe_status(*st) + ")";
    throw std::runtime_error("worker set-up failed: " + why);
  }
}

std::optional<int> DirectWorker::poll_exit() {
  if (status_ || pid_ <= 0) return status_;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
  return status_;
}

DirectWorker::~DirectWorker() { stop(); }

void DirectWorker::stop() {
  // End of stream is the worker's signal to exit (it answers what it holds first).
  link_.reset();
  if (pid_ > 0 && !status_) {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    // Polling the exit against a deadline; the sleep only paces the poll.
    while (!poll_exit() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!status_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      if (::waitpid(pid_, &status, 0) == pid_) status_ = status;
    }
  }
  pid_ = -1;
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
}

}  // namespace drover::bench
