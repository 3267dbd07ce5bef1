// WorkerPool: the fixed set of worker slots, the queue of calls waiting for a worker, and the
// policy that ties them together — spawn, replace on death (with backoff for crash loops),
// dispatch through the Router, retry once what a dead worker held. Owns every WorkerLink.
// Runs on the supervisor's io_context thread only; no locks.
//
// Seams for the resilience work: RestartBackoff (restart policy), retry_or_fail() (retry
// policy), and the ready-candidate filter in pump() (where circuit breakers will sit).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "supervisor/pipeline/call.hpp"
#include "supervisor/pool/worker_link.hpp"
#include "supervisor/routing/router.hpp"

namespace drover::supervisor {

struct WorkerSnapshot {
  int id = 0;
  int pid = 0;
  std::string state;
  std::size_t inflight = 0;
  std::string breaker = "closed";
  int restarts = 0;
  double uptime_s = 0;
  std::optional<std::int64_t> heartbeat_age_ms;
  std::int64_t rss_bytes = 0;
  std::vector<std::string> models;
};

struct PoolCounts {
  int ready = 0;
  int total = 0;  // configured slots
};

class WorkerPool final : public LinkObserver {
 public:
  WorkerPool(asio::io_context& io, const WorkersConfig& config, std::string run_dir,
             RoutingStrategy strategy);
  ~WorkerPool() override;

  void start();
  // Queues a call for the next suitable worker. REQUIRES: call->state() == queued.
  void submit(std::shared_ptr<Call> call);
  // Cancels a call wherever it is: removed from the queue (finished as cancelled unless it
  // already ended), or a cancel sent to the worker holding it (which then answers it).
  void cancel(const std::shared_ptr<Call>& call);
  // Operator kill of one worker slot; false when no such live worker.
  bool kill(int slot, int sig);
  // Graceful stop of every worker; `done` runs once all processes are reaped.
  void shutdown(std::function<void()> done);

  PoolCounts counts() const;
  std::vector<WorkerSnapshot> snapshot() const;
  std::size_t queued() const { return queue_.size(); }

  // LinkObserver
  void on_ready(WorkerLink& link) override;
  void on_capacity(WorkerLink& link) override;
  void on_lost(WorkerLink& link, const std::string& reason,
               std::vector<std::shared_ptr<Call>> orphans) override;
  void on_reaped(WorkerLink& link, const ExitStatus& status) override;

 private:
  struct Slot {
    int id = 0;
    std::shared_ptr<WorkerLink> link;  // current incarnation, null while waiting to respawn
    std::uint64_t generation = 0;
    int restarts = 0;
    int crash_streak = 0;  // consecutive deaths before becoming ready (for backoff)
    std::unique_ptr<asio::steady_timer> respawn_timer;
  };

  void spawn_slot(Slot& slot);
  void schedule_respawn(Slot& slot);
  void pump();
  void retry_or_fail(std::shared_ptr<Call> call, int worker_slot, const std::string& reason);
  Slot* slot_of(const WorkerLink& link);

  asio::io_context& io_;
  WorkersConfig config_;
  std::string run_dir_;
  std::unique_ptr<Router> router_;
  std::vector<Slot> slots_;
  // Dead links waiting to be reaped (kept alive so their process handle can be waited on).
  std::vector<std::shared_ptr<WorkerLink>> retired_;
  std::deque<std::shared_ptr<Call>> queue_;
  bool shutting_down_ = false;
  std::function<void()> on_shutdown_done_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
