// Integration-test harness: runs the real droverd (with real drover-worker processes) in a
// private temp directory and tears it all down again, so each test gets its own server.
//
// DroverProcess owns one droverd: a fresh mkdtemp directory under /tmp (short, because Unix
// socket paths must fit in 108 bytes), a YAML config written there, the droverd child with its
// stdout/stderr in `droverd.log`, and the sockets. Teardown is SIGTERM, a bounded wait for exit
// (SIGKILL past the deadline), the reap, a check that every worker pid ever seen is gone, and
// removal of the directory. Every wait polls a condition against a deadline: no sleep is used
// as synchronisation.
//
// The test process makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so workers orphaned
// by a droverd that died are reparented here and reaped by the teardown check instead of
// lingering as zombies of a PID 1 that may never reap them.
//
// Thread-safety: a DroverProcess is driven by the test's main thread. client() and admin()
// only read immutable paths, so other threads may call them to open their own connections.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "client/rpc_client.hpp"

namespace drover::test {

using json = client::json;
using client::RpcClient;
using Millis = std::chrono::milliseconds;
using namespace std::chrono_literals;

// Paths of the binaries under test, from CMake ($<TARGET_FILE:...>).
const char* droverd_bin();
const char* worker_bin();
const char* droverctl_bin();

// Generous deadlines: the suite must pass on a loaded 2-core machine.
inline constexpr Millis kStartTimeout = 30s;
inline constexpr Millis kWaitTimeout = 30s;
inline constexpr Millis kReplyTimeout = 30s;

// Polls pred every `poll` until it returns true (-> true) or `timeout` has passed (-> false).
bool wait_until(const std::function<bool()>& pred, Millis timeout = kWaitTimeout,
                Millis poll = 10ms);

// A child process started with fork/exec, stdout and stderr redirected to files. The child
// gets PR_SET_PDEATHSIG(SIGKILL), so nothing survives a test runner that is killed.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& stdout_path,
        const std::string& stderr_path);
  ~Child();  // SIGKILLs and reaps a child still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // The raw wait status once the child has exited (reaping it), or nullopt while it runs.
  std::optional<int> poll_exit();
  // Waits up to `timeout` for the exit; nullopt if it is still running.
  std::optional<int> wait_exit(Millis timeout);
  bool running() { return !poll_exit().has_value(); }
  void signal(int sig);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Runs a program to completion (bounded); for droverctl and a second droverd.
struct RunResult {
  std::optional<int> exit_code;  // nullopt: killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
};
RunResult run_program(const std::vector<std::string>& argv, const std::string& work_dir,
                      Millis timeout = kWaitTimeout);

// Reads a whole file ("" if it cannot be read).
std::string read_file(const std::string& path);

// The absolute path of an executable on PATH (or in /usr/bin, /usr/local/bin, /bin), or "".
std::string find_in_path(const std::string& program);
// promtool's path. It is part of the test contract (scripts/test installs the Debian package
// `prometheus`), so its absence is a test failure, not a skip.
std::string promtool();

struct DroverOptions {
  int workers = 2;
  // Appended to the drover-worker argv in workers.command (sim flags such as --ttft-ms).
  std::vector<std::string> worker_args;
  // The whole workers.command argv instead (e.g. a Python worker); worker_args is then unused.
  std::vector<std::string> command;
  // Extra "key: value" lines for the server and workers blocks (indentation is added).
  std::vector<std::string> server_yaml;
  std::vector<std::string> workers_yaml;
  // Extra top-level YAML, appended as it is.
  std::string extra_yaml;
  std::string log_level = "info";
};

class DroverProcess {
 public:
  // Creates the temp dir and writes the config; does not start anything.
  explicit DroverProcess(DroverOptions options = {});
  // Stops droverd if still running (SIGKILL when it does not exit), removes the temp dir.
  ~DroverProcess();
  DroverProcess(const DroverProcess&) = delete;
  DroverProcess& operator=(const DroverProcess&) = delete;

  // Starts droverd and waits (bounded) until health reports workers_ready == workers.count.
  // Records a gtest failure and returns false when it does not get there.
  bool start();
  // Starts droverd without waiting for anything (for pools that are not expected to be ready).
  void launch();
  // Graceful stop and teardown checks: SIGTERM, wait for exit (SIGKILL after the deadline),
  // expect exit code 0, expect the socket files removed and every worker pid seen gone.
  // Returns the exit code (or -1 when droverd did not exit normally). Idempotent.
  int stop();

  // Sends SIGTERM only (for tests that watch the drain themselves).
  void terminate();
  // Waits for droverd's exit and reaps it; the raw wait status, nullopt on timeout.
  std::optional<int> wait_exit(Millis timeout = kWaitTimeout);
  bool running();
  pid_t pid() const;

  RpcClient client(proto::Framing framing = proto::Framing::ndjson) const;
  RpcClient admin() const;

  // health result object (throws ClientError when droverd does not answer).
  json health();
  // workers.list's `workers` array, via the admin socket. Remembers every pid it reports.
  json workers();
  // Until health says workers_ready == n and workers.list lists n ready workers.
  bool wait_ready(int n, Millis timeout = kStartTimeout);
  // Until every pid in `pids` is gone (kill(pid, 0) -> ESRCH, or reaped here as an orphan).
  static bool wait_pids_gone(const std::set<pid_t>& pids, Millis timeout = kWaitTimeout);

  const std::string& dir() const { return dir_; }
  const std::string& socket_path() const { return socket_; }
  const std::string& admin_path() const { return admin_socket_; }
  const std::string& config_path() const { return config_; }
  const std::string& log_path() const { return log_; }
  const DroverOptions& options() const { return opt_; }
  std::string log() const { return read_file(log_); }
  const std::set<pid_t>& seen_worker_pids() const { return seen_pids_; }

 private:
  void write_config();

  DroverOptions opt_;
  std::string dir_;
  std::string socket_;
  std::string admin_socket_;
  std::string config_;
  std::string log_;
  std::unique_ptr<Child> child_;
  std::optional<int> exit_status_;
  std::set<pid_t> seen_pids_;
  bool stopped_ = false;
};

// Base fixture: each test starts its own droverd via start(); TearDown stops it with the
// teardown checks and prints droverd's log when the test failed.
class DroverTest : public ::testing::Test {
 protected:
  bool start(DroverOptions options = {});
  void TearDown() override;
  DroverProcess& d() { return *drover_; }

  std::unique_ptr<DroverProcess> drover_;
};

// --- small helpers shared by the tests ---

// A JSON-RPC request object.
json request(const json& id, const std::string& method, const json& params = nullptr);
// A notification object (no id).
json notification(const std::string& method, const json& params = nullptr);
// True for a reply that carries `result`.
bool is_result(const json& reply);
// The error code of a reply, or 0 when it is not an error.
int error_code(const json& reply);
// Reads messages until the reply (not a notification) with `id` arrives; notifications and
// other replies read meanwhile are appended to `others` when given. Throws on timeout.
json read_reply(RpcClient& c, const json& id, Millis timeout = kReplyTimeout,
                std::vector<json>* others = nullptr);
// The next message, failing with a ClientError when none comes within the timeout.
json read_one(RpcClient& c, Millis timeout = kReplyTimeout);

}  // namespace drover::test
