// Helpers shared by the shared-memory transport tests: a segment name prefix unique to this test
// process, the /dev/shm leak check, condition waits with deadlines (never sleeps as
// synchronisation), and reaping a forked child with a deadline.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace drover::proto::shm::testing {

// Every test segment is "/drover-test-<pid>-<random>", so the leak check can tell ours apart
// from anything else in /dev/shm (other tests, a running droverd).
inline std::string test_prefix() { return "drover-test"; }
inline std::string leak_prefix() { return test_prefix() + "-" + std::to_string(::getpid()) + "-"; }

inline std::vector<std::string> leaked_segments() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(leak_prefix(), 0) == 0) out.push_back(name);
  }
  return out;
}

// Base fixture: fails a test that leaves one of its segments in /dev/shm (and removes it).
class ShmTest : public ::testing::Test {
 protected:
  void TearDown() override {
    const auto leaked = leaked_segments();
    for (const auto& name : leaked) std::filesystem::remove("/dev/shm/" + name);
    EXPECT_TRUE(leaked.empty()) << "leaked " << leaked.size()
                                << " segment(s), first: " << (leaked.empty() ? "" : leaked.front());
  }
};

// Polls `pred` until it holds or `timeout` passes; true if it held. The poll interval is not a
// synchronisation: correctness never depends on it, only how fast the wait notices.
template <typename Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int i = 0;; ++i) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (i < 1000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

// State letter of a thread or process from /proc (field 3 of stat): 'S' = blocked in the kernel
// (futex_wait, read, ...), 'R' = running.
inline char proc_state(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::string stat;
  std::getline(in, stat);
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return '?';
  return stat[paren + 2];
}
inline char thread_state(pid_t tid) {
  return proc_state("/proc/self/task/" + std::to_string(tid) + "/stat");
}
inline char process_state(pid_t pid) {
  return proc_state("/proc/" + std::to_string(pid) + "/stat");
}

// Waits for `pid` to exit, up to `timeout`; kills (SIGKILL) and reaps it on timeout. Returns the
// wait status, or nullopt if it had to be killed.
inline std::optional<int> reap(pid_t pid,
                               std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  int status = 0;
  const bool exited = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout);
  if (exited) return status;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return std::nullopt;
}

}  // namespace drover::proto::shm::testing
