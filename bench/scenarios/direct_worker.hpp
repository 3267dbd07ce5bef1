// DirectWorker: drover-bench playing the supervisor towards one drover-worker, with nothing in
// between: the physical reference ("direct worker access") the supervised figures are compared
// with. It spawns the worker, plays droverd's side of the set-up (proto/README.md: the
// per-worker control socket in DROVER_CONTROL_SOCKET, or with `stdio` a socketpair on the
// worker's stdin/stdout and `--stdio`), waits for `hello`, sends `init` and waits for its reply,
// then hands the ready link to the load generator, which sends worker-protocol `generate`
// requests on it.
//
// Ownership: a DirectWorker owns the child and its temp directory; link() lends the link. The
// destructor closes the link (a worker exits 0 at end of stream), waits up to 5 s for the exit,
// SIGKILLs past that, reaps the child and removes the temp directory. The child also gets
// PR_SET_PDEATHSIG(SIGKILL), so it never outlives drover-bench. Construct on the main thread
// before other threads exist (it forks). Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "client/rpc_client.hpp"

namespace drover::bench {

struct DirectOptions {
  std::string worker_bin;            // empty: drover-worker beside this program
  std::vector<std::string> worker_args;  // appended to the worker's argv (e.g. --ttft-ms 0)
  bool stdio = false;                // socketpair on stdin/stdout instead of the control socket
  std::string backend = "sim";       // init's backend
  int worker_id = 0;
  std::chrono::milliseconds start_timeout{10'000};  // spawn to init reply
};

class DirectWorker {
 public:
  // Spawns and initialises the worker; throws std::runtime_error (with the reason) when it
  // does not get to ready within start_timeout.
  explicit DirectWorker(DirectOptions options);
  ~DirectWorker();
  DirectWorker(const DirectWorker&) = delete;
  DirectWorker& operator=(const DirectWorker&) = delete;

  // The ready link: worker-protocol requests go out on it, replies and notifications (chunks,
  // heartbeats) come back. Valid until the DirectWorker is destroyed.
  client::RpcClient& link() { return *link_; }
  pid_t pid() const { return pid_; }
  const std::string& transport() const { return transport_; }

 private:
  void spawn(const std::vector<std::string>& argv, int stdio_fd, const std::string& socket_path);
  void handshake();
  // Closes the link, reaps the child (SIGKILL after 5 s) and removes the temp dir. Idempotent.
  void stop();
  // Reaps the child if it has exited; the raw wait status, or nullopt while it runs.
  std::optional<int> poll_exit();

  DirectOptions opt_;
  std::string transport_;
  std::string dir_;  // temp dir of the control socket (socket transport only)
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::optional<client::RpcClient> link_;
};

}  // namespace drover::bench
