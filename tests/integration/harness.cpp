#include "harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace drover::test {
namespace {

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Orphaned workers of a droverd that died come to us, so the teardown check can reap them.
void become_subreaper() {
  static std::once_flag once;
  std::call_once(once, [] { ::prctl(PR_SET_CHILD_SUBREAPER, 1); });
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// YAML is a superset of JSON: a JSON string literal is a safe YAML scalar for any path or flag.
std::string yaml_quote(const std::string& s) { return json(s).dump(); }

}  // namespace

const char* droverd_bin() { return DROVERD_BIN; }
const char* worker_bin() { return DROVER_WORKER_BIN; }
const char* droverctl_bin() { return DROVERCTL_BIN; }

bool wait_until(const std::function<bool()>& pred, Millis timeout, Millis poll) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    // Polling a condition with a deadline: the sleep only paces the poll.
    std::this_thread::sleep_for(poll);
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------------
// Child

Child::Child(const std::vector<std::string>& argv, const std::string& stdout_path,
             const std::string& stderr_path) {
  become_subreaper();
  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int out = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) throw std::runtime_error(errno_text(("open " + stdout_path).c_str()));
  int err = out;
  if (stderr_path != stdout_path) {
    err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err < 0) {
      ::close(out);
      throw std::runtime_error(errno_text(("open " + stderr_path).c_str()));
    }
  }
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(out);
  if (err != out) ::close(err);
  if (devnull >= 0) ::close(devnull);
  if (pid_ < 0) {
    errno = fork_errno;
    throw std::runtime_error(errno_text("fork"));
  }
}

Child::~Child() {
  if (pid_ > 0 && !poll_exit()) {
    ::kill(pid_, SIGKILL);
    if (!wait_exit(10s)) std::cerr << "harness: pid " << pid_ << " survived SIGKILL for 10 s\n";
  }
}

std::optional<int> Child::poll_exit() {
  if (status_ || pid_ <= 0) return status_;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) status_ = st;
  return status_;
}

std::optional<int> Child::wait_exit(Millis timeout) {
  wait_until([this] { return poll_exit().has_value(); }, timeout, 5ms);
  return poll_exit();
}

void Child::signal(int sig) {
  if (!poll_exit()) ::kill(pid_, sig);
}

RunResult run_program(const std::vector<std::string>& argv, const std::string& work_dir,
                      Millis timeout) {
  static std::atomic<int> counter{0};
  const std::string base = work_dir + "/run" + std::to_string(counter++);
  RunResult r;
  {
    Child child(argv, base + ".out", base + ".err");
    const auto status = child.wait_exit(timeout);
    if (!status) {
      r.timed_out = true;
    } else if (WIFEXITED(*status)) {
      r.exit_code = WEXITSTATUS(*status);
    }
  }  // a child still running is killed and reaped here
  r.out = read_file(base + ".out");
  r.err = read_file(base + ".err");
  std::error_code ec;
  std::filesystem::remove(base + ".out", ec);
  std::filesystem::remove(base + ".err", ec);
  return r;
}

// ---------------------------------------------------------------------------------------------
// DroverProcess

DroverProcess::DroverProcess(DroverOptions options) : opt_(std::move(options)) {
  become_subreaper();
  std::string templ = "/tmp/drover-it-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error(errno_text("mkdtemp"));
  dir_ = templ;
  socket_ = dir_ + "/c.sock";
  admin_socket_ = dir_ + "/a.sock";
  config_ = dir_ + "/droverd.yaml";
  log_ = dir_ + "/droverd.log";
  write_config();
}

DroverProcess::~DroverProcess() {
  child_.reset();  // kills and reaps droverd if a test left it running
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void DroverProcess::write_config() {
  std::ostringstream y;
  y << "server:\n"
    << "  socket: " << yaml_quote(socket_) << "\n"
    << "  admin_socket: " << yaml_quote(admin_socket_) << "\n"
    << "  run_dir: " << yaml_quote(dir_ + "/run") << "\n";
  for (const auto& line : opt_.server_yaml) y << "  " << line << "\n";
  y << "workers:\n"
    << "  count: " << opt_.workers << "\n"
    << "  command: [";
  if (opt_.command.empty()) {
    y << yaml_quote(worker_bin());
    for (const auto& a : opt_.worker_args) y << ", " << yaml_quote(a);
  } else {
    for (std::size_t i = 0; i < opt_.command.size(); ++i) y << (i ? ", " : "") << yaml_quote(opt_.command[i]);
  }
  y << "]\n";
  for (const auto& line : opt_.workers_yaml) y << "  " << line << "\n";
  y << "logging:\n"
    << "  level: " << opt_.log_level << "\n";
  y << opt_.extra_yaml;
  // Tests run in parallel: unless a test asks for the HTTP endpoints, keep them off so no two
  // droverds race for the default metrics port.
  if (opt_.extra_yaml.find("metrics:") == std::string::npos) y << "metrics:\n  listen: \"\"\n";
  // The same for the OpenAI API's port (it is off by default, but say so in case that changes).
  if (opt_.extra_yaml.find("openai:") == std::string::npos) y << "openai:\n  enabled: false\n";
  std::ofstream out(config_);
  out << y.str();
  if (!out) throw std::runtime_error("cannot write " + config_);
}

void DroverProcess::launch() {
  // droverd's private run directory (common/run_paths.hpp) is this test's own directory, so
  // no default path and no stale-state sweep reaches another test's droverd or the host's.
  child_ = std::make_unique<Child>(
      std::vector<std::string>{"/usr/bin/env", "XDG_RUNTIME_DIR=" + dir_, droverd_bin(),
                               "--config", config_},
      log_, log_);
}

bool DroverProcess::start() {
  launch();
  if (!wait_ready(opt_.workers, kStartTimeout)) {
    if (!running()) {
      ADD_FAILURE() << "droverd " << describe_status(*exit_status_) << " during start-up";
    } else {
      ADD_FAILURE() << "droverd not ready with " << opt_.workers << " workers within "
                    << kStartTimeout.count() << " ms";
    }
    return false;
  }
  return true;
}

bool DroverProcess::running() {
  if (!child_) return false;
  if (auto st = child_->poll_exit()) {
    exit_status_ = st;
    return false;
  }
  return true;
}

pid_t DroverProcess::pid() const { return child_ ? child_->pid() : -1; }

void DroverProcess::terminate() {
  if (child_) child_->signal(SIGTERM);
}

std::optional<int> DroverProcess::wait_exit(Millis timeout) {
  if (!child_) return std::nullopt;
  if (auto st = child_->wait_exit(timeout)) exit_status_ = st;
  return exit_status_;
}

int DroverProcess::stop() {
  if (stopped_ || !child_) return exit_status_ && WIFEXITED(*exit_status_) ? WEXITSTATUS(*exit_status_) : -1;
  stopped_ = true;
  if (running()) {
    try {
      workers();  // remember the pids of the current workers for the check below
    } catch (const std::exception& e) {
      ADD_FAILURE() << "workers.list failed at teardown: " << e.what();
    }
    terminate();
    if (!wait_exit(kWaitTimeout)) {
      ADD_FAILURE() << "droverd did not exit within " << kWaitTimeout.count()
                    << " ms of SIGTERM; killing it";
      child_->signal(SIGKILL);
      wait_exit(10s);
    }
  }
  int code = -1;
  if (!exit_status_) {
    ADD_FAILURE() << "droverd could not be reaped";
  } else if (!WIFEXITED(*exit_status_)) {
    ADD_FAILURE() << "droverd " << describe_status(*exit_status_);
  } else {
    code = WEXITSTATUS(*exit_status_);
    EXPECT_EQ(code, 0) << "droverd should exit 0 after SIGTERM";
    EXPECT_FALSE(path_exists(socket_)) << "client socket left behind: " << socket_;
    EXPECT_FALSE(path_exists(admin_socket_)) << "admin socket left behind: " << admin_socket_;
  }
  EXPECT_TRUE(wait_pids_gone(seen_pids_))
      << "worker processes outlived droverd (pids seen: " << testing::PrintToString(seen_pids_)
      << ")";
  return code;
}

RpcClient DroverProcess::client(proto::Framing framing) const { return RpcClient(socket_, framing); }

RpcClient DroverProcess::admin() const { return RpcClient(admin_socket_); }

json DroverProcess::health() {
  auto c = client();
  const json reply = c.call("health", nullptr, 10s);
  if (!reply.contains("result")) throw client::ClientError("health failed: " + reply.dump());
  return reply["result"];
}

json DroverProcess::workers() {
  auto a = admin();
  const json reply = a.call("workers.list", nullptr, 10s);
  if (!reply.contains("result") || !reply["result"].contains("workers")) {
    throw client::ClientError("workers.list failed: " + reply.dump());
  }
  json list = reply["result"]["workers"];
  for (const auto& w : list) {
    const int pid = w.value("pid", 0);
    if (pid > 0) seen_pids_.insert(pid);
  }
  return list;
}

bool DroverProcess::wait_ready(int n, Millis timeout) {
  bool exited = false;
  const bool ok = wait_until(
      [&] {
        if (!running()) {
          exited = true;
          return true;
        }
        try {
          const json h = health();
          if (h.value("workers_ready", -1) != n) return false;
          int ready = 0;
          for (const auto& w : workers()) ready += w.value("state", "") == "ready" ? 1 : 0;
          return ready == n;
        } catch (const client::ClientError&) {
          return false;  // not listening yet
        }
      },
      timeout, 20ms);
  return ok && !exited;
}

bool DroverProcess::wait_pids_gone(const std::set<pid_t>& pids, Millis timeout) {
  std::set<pid_t> left = pids;
  return wait_until(
      [&] {
        for (auto it = left.begin(); it != left.end();) {
          int st = 0;
          const bool reaped_here = ::waitpid(*it, &st, WNOHANG) == *it;
          const bool gone = reaped_here || (::kill(*it, 0) == -1 && errno == ESRCH);
          it = gone ? left.erase(it) : std::next(it);
        }
        return left.empty();
      },
      timeout);
}

// ---------------------------------------------------------------------------------------------
// Fixture

bool DroverTest::start(DroverOptions options) {
  drover_ = std::make_unique<DroverProcess>(std::move(options));
  return drover_->start();
}

void DroverTest::TearDown() {
  if (!drover_) return;
  drover_->stop();
  if (HasFailure()) {
    std::cerr << "----- droverd log (" << drover_->log_path() << ") -----\n"
              << drover_->log() << "----- end of droverd log -----\n";
  }
  drover_.reset();
}

// ---------------------------------------------------------------------------------------------
// Helpers

json request(const json& id, const std::string& method, const json& params) {
  json r = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
  if (!params.is_null()) r["params"] = params;
  return r;
}

json notification(const std::string& method, const json& params) {
  json r = {{"jsonrpc", "2.0"}, {"method", method}};
  if (!params.is_null()) r["params"] = params;
  return r;
}

bool is_result(const json& reply) { return reply.is_object() && reply.contains("result"); }

int error_code(const json& reply) {
  if (!reply.is_object() || !reply.contains("error")) return 0;
  return reply["error"].value("code", 0);
}

json read_one(RpcClient& c, Millis timeout) {
  auto msg = c.read(timeout);
  if (!msg) throw client::ClientError("no message within " + std::to_string(timeout.count()) + " ms");
  return *msg;
}

json read_reply(RpcClient& c, const json& id, Millis timeout, std::vector<json>* others) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::max(Millis(0), std::chrono::duration_cast<Millis>(
                                              deadline - std::chrono::steady_clock::now()));
    auto msg = c.read(left);
    if (!msg) {
      throw client::ClientError("no reply with id " + id.dump() + " within " +
                                std::to_string(timeout.count()) + " ms");
    }
    const bool reply = msg->is_object() && msg->contains("id") &&
                       (msg->contains("result") || msg->contains("error"));
    if (reply && (*msg)["id"] == id) return *msg;
    if (others) others->push_back(std::move(*msg));
  }
}

std::string find_in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    const std::string candidate = std::string(dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

std::string promtool() {
  const std::string p = find_in_path("promtool");
  EXPECT_FALSE(p.empty()) << "promtool not found: install the Debian package 'prometheus' "
                             "(scripts/test does this)";
  return p;
}

}  // namespace drover::test
