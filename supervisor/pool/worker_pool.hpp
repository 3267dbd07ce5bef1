// WorkerPool: the worker slots, the warm spares, the queue of calls waiting for a worker, and
// the policies that tie them together — spawn, replace on death (RestartPolicy), promote
// spares, dispatch through the Router past open circuit breakers, retry or fail over what a
// dead worker held (RetryPolicy, poison detection), recycle and drain; hold streams beyond the
// stream concurrency limit (StreamLimiter) until a place frees. Owns every WorkerLink.
// Runs on the supervisor's io_context thread only; no locks.
//
// Time: every decision by time (poison expiry, crash-loop window and restart backoff, breaker
// state when routing, retry_after_ms, stream limiter samples, idle model unload) reads the
// Clock given at construction, which the pool also hands to every WorkerLink it makes, so a
// link's timestamps and the pool's comparisons share one clock. Timers (respawn, retry backoff,
// breaker pump) stay real asio timers. One exception: the queue's priority aging compares the
// pool's now with Call::accepted_at, which the frontend stamps with std::chrono::steady_clock;
// under a fake clock that aging means nothing (PriorityQueue is tested on its own, time passed
// in).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "supervisor/pool/batcher.hpp"
#include "supervisor/pool/call.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/stream_limiter.hpp"
#include "supervisor/pool/priority_queue.hpp"
#include "supervisor/pool/restart_policy.hpp"
#include "supervisor/pool/retry_policy.hpp"
#include "supervisor/pool/worker_link.hpp"
#include "supervisor/routing/router.hpp"

namespace drover::supervisor {

struct WorkerSnapshot {
  int id = 0;
  int pid = 0;
  std::string state;
  std::size_t inflight = 0;
  std::string breaker = "closed";
  std::uint64_t breaker_transitions = 0;  // of this incarnation's breaker
  int restarts = 0;
  double uptime_s = 0;
  std::optional<std::int64_t> heartbeat_age_ms;
  std::int64_t rss_bytes = 0;
  std::vector<std::string> models;
  std::string transport = "socket";  // "shm" when init negotiated the rings
  TransportCounters transport_counters;
};

struct PoolCounts {
  int ready = 0;
  int total = 0;   // configured slots
  int parked = 0;
  int open_breakers = 0;
  int spares_ready = 0;
};

// Counters an operator watches (exported as metrics by the ops work).
struct PoolStats {
  std::uint64_t restarts = 0;
  std::uint64_t crashes = 0;
  std::uint64_t promotions = 0;
  std::uint64_t retries = 0;
  std::uint64_t failovers = 0;  // retries of streams that had already sent chunks
  std::uint64_t retry_budget_exhausted = 0;
  std::uint64_t poisoned = 0;
  std::uint64_t recycled = 0;
  std::uint64_t model_loads = 0;          // load_model requests that succeeded
  std::uint64_t model_load_failures = 0;
  std::uint64_t model_unloads = 0;        // by an operator or idle unload
  std::uint64_t idle_unloads = 0;
};

// Streamed generates under the StreamLimiter (telemetry and metrics).
struct StreamCounts {
  int active = 0;             // streams running on workers
  std::size_t waiting = 0;    // streams held in the queue by the limit
  int limit_total = 0;
  std::map<int, int> limits;  // per worker slot
  std::map<int, int> active_by_worker;
  std::uint64_t waited_total = 0;  // streams that had to wait for a place
  int peak_active = 0;             // most streams running at once since start
  bool adaptive = true;
};

class WorkerPool final : public Pool, public LinkObserver {
 public:
  // Spawns nothing until start(). `clock` must outlive the pool and its links.
  WorkerPool(asio::io_context& io, const WorkersConfig& workers, const CircuitBreakerConfig& breaker,
             const RetryConfig& retry, std::string run_dir, RoutingStrategy strategy,
             const Clock& clock = real_clock());
  ~WorkerPool() override;

  void start();
  // Pool (supervisor/pool/pool.hpp): submit, cancel, on_timeout.
  void submit(std::shared_ptr<Call> call) override;
  void cancel(const std::shared_ptr<Call>& call) override;
  void on_timeout(const std::shared_ptr<Call>& call) override;

  // Admin operations; each returns an error text, empty on success.
  std::string kill(int id, int sig);
  std::string inject(int id, const std::string& fault);
  std::string restart(int id);  // graceful: drain the worker, refill its slot; unparks a slot
  std::string scale(int count);
  // Model management (worker_pool_models.cpp): the catalog, affinity routing and idle unload,
  // and the model_preload settings sent in every new worker's init (catalog models among
  // them carry their spec, so the worker loads them before it is ready).
  // transport.shm / transport.ring_bytes for the links started from now on.
  void set_transport(const TransportConfig& transport) { transport_ = transport; }
  // Workers started from now on run as `as` (workers.user / workers.group); nullopt: as droverd.
  void set_worker_credentials(std::optional<WorkerCredentials> as) { worker_credentials_ = std::move(as); }
  void set_models(const ModelPreloadConfig& preload, const std::map<std::string, ModelSpec>& catalog,
                  bool affinity, std::chrono::seconds idle_unload);
  // Stream concurrency limits (streaming.max_concurrent_*); also applied on reload.
  void set_streaming(const StreamingConfig& streaming);
  StreamCounts stream_counts() const;
  // Admin models.load / models.unload on every ready worker; `done` gets the result, or an
  // error object {code, message, data} (null on success).
  using AdminDone = std::function<void(const json& result, const json& error)>;
  void load_model(const std::string& model, AdminDone done);
  void unload_model(const std::string& model, AdminDone done);
  // models.list: per model id, state (loaded / loading / unloaded) and the workers holding it.
  json models_list() const;
  // Applies a reloaded configuration: routing, breaker thresholds and retry policy at once;
  // worker settings (command, timeouts, recycling) for workers started from now on; the
  // worker count by scaling.
  void reconfigure(const WorkersConfig& workers, const CircuitBreakerConfig& breaker,
                   const RetryConfig& retry, RoutingStrategy strategy);
  // Warm spares kept on top of workers.warm_spares (the SLO policy add_warm_spare; 0 removes
  // them again, draining the extra ones).
  void set_extra_spares(int extra);
  int extra_spares() const { return extra_spares_; }
  // Graceful stop of every worker; `done` runs once all processes are reaped.
  void shutdown(std::function<void()> done);

  // The batch_queue block (at start and on reload): batching on the links, and whether the
  // queue orders by priority.
  void set_batching(const BatchQueueConfig& config);
  Batcher& batcher() { return *batcher_; }
  // telemetry.batchStats: the Batcher's figures plus the queue depth per priority.
  json batch_stats() const;

  PoolCounts counts() const;
  std::vector<WorkerSnapshot> snapshot() const;
  const PoolStats& stats() const { return stats_; }
  std::size_t queued() const { return queue_.size() + held_streams_.size(); }
  std::size_t awaiting_load() const {
    std::size_t n = 0;
    for (const auto& [model, calls] : awaiting_) n += calls.size();
    return n;
  }
  // Milliseconds until the first open breaker may take a probe (for retry_after_ms).
  std::int64_t retry_after_ms() const;

  // LinkObserver
  void on_ready(WorkerLink& link) override;
  void on_capacity(WorkerLink& link) override;
  void on_lost(WorkerLink& link, const LinkLoss& loss,
               std::vector<std::shared_ptr<Call>> orphans) override;
  void on_reaped(WorkerLink& link, const ExitStatus& status) override;

 private:
  struct Slot {
    int id = 0;
    std::shared_ptr<WorkerLink> link;  // null while waiting to respawn or parked
    int restarts = 0;
    bool parked = false;
    RestartPolicy policy;
    std::unique_ptr<asio::steady_timer> respawn_timer;
    std::optional<Clock::time_point> vacant_since;  // for promotion / respawn timing
  };

  std::shared_ptr<WorkerLink> make_link(int slot, int worker_id);
  void fill_slot(Slot& slot);
  void spawn_spare();
  int spares_wanted() const { return config_.warm_spares + extra_spares_; }
  // Spawns or drains spares until there are spares_wanted().
  void fit_spares();
  void vacate(Slot& slot, const LinkLoss* loss);
  void retire(const std::shared_ptr<WorkerLink>& link);
  void maybe_recycle(WorkerLink& link);
  void pump();
  void arm_breaker_pump();
  // A stream takes its place under the limiter on `slot` (released when it finishes).
  void start_stream(const std::shared_ptr<Call>& call, int slot);
  // Feeds the workers' heartbeat throughput to the limiter, every heartbeat interval.
  void arm_stream_sampling();
  void sample_streams();
  void retry_or_fail(std::shared_ptr<Call> call, const LinkLoss& loss, int worker_slot);
  void check_shutdown_done();
  // Affinity routing for a call that names a model: narrows `candidates` to the workers that
  // hold it and returns true, or parks the call until a load finishes (starting one when
  // needed), or fails it with -32006, and returns false.
  bool route_by_model(std::shared_ptr<Call>& call, std::vector<RouteCandidate>& candidates);
  void start_load(WorkerLink& link, const ModelSpec& spec);
  // Parked calls go back to the queue once a worker holding their model can take them, or
  // no load of it is in progress any more (the queue then decides again).
  void release_awaiting();
  void fail_awaiting(const std::string& model, const json& data);
  bool loading_anywhere(const std::string& model) const;
  bool held_anywhere(const std::string& model) const;
  void arm_idle_unload();
  void unload_idle();
  Slot* slot_of(const WorkerLink& link);
  Slot* slot_by_id(int id);
  std::shared_ptr<WorkerLink> find_link(int id);
  double uniform();
  std::uint64_t fingerprint(const Call& call) const;

  asio::io_context& io_;
  const Clock& clock_;
  WorkersConfig config_;
  CircuitBreakerConfig breaker_config_;
  RetryPolicy retry_;
  std::string run_dir_;
  RoutingStrategy strategy_;
  proto::json preload_ = proto::json::object();
  TransportConfig transport_;
  std::optional<WorkerCredentials> worker_credentials_;
  std::map<std::string, ModelSpec> catalog_;
  bool affinity_ = true;
  std::chrono::seconds idle_unload_{0};
  // Calls waiting for their model to finish loading somewhere, by model.
  std::map<std::string, std::deque<std::shared_ptr<Call>>> awaiting_;
  std::unique_ptr<asio::steady_timer> idle_timer_;
  std::unique_ptr<Router> router_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::shared_ptr<WorkerLink>> spares_;
  // Links out of rotation that are still alive (draining) or waiting to be reaped.
  std::vector<std::shared_ptr<WorkerLink>> retired_;
  // Calls waiting for a worker, by priority (supervisor/pool/priority_queue.hpp).
  PriorityQueue<std::shared_ptr<Call>> queue_;
  std::shared_ptr<Batcher> batcher_ = std::make_shared<Batcher>(BatchQueueConfig{});
  // Streams waiting for a place under the stream limit, in arrival order; they start before
  // anything in queue_. Shared with the streams' finish hooks, which may outlive the pool.
  std::deque<std::shared_ptr<Call>> held_streams_;
  std::shared_ptr<StreamLimiter> stream_limiter_ = std::make_shared<StreamLimiter>(StreamLimiterConfig{});
  std::map<int, Clock::time_point> stream_sampled_;  // slot -> heartbeat last sampled
  asio::steady_timer stream_sample_timer_;
  std::uint64_t streams_waited_ = 0;
  int streams_peak_ = 0;
  // Requests in the pool and retries among them; shared with the calls' finish hooks, which
  // may run after the pool is gone.
  struct CallCounters {
    std::size_t active = 0;
    std::size_t retrying = 0;
  };
  std::shared_ptr<CallCounters> counters_ = std::make_shared<CallCounters>();
  std::unordered_map<std::uint64_t, Clock::time_point> poison_;  // fingerprint -> expiry
  std::uint64_t next_generation_ = 0;
  int next_spare_id_ = 0;
  int extra_spares_ = 0;
  std::unique_ptr<asio::steady_timer> spare_respawn_timer_;
  RestartPolicy spare_policy_;
  asio::steady_timer breaker_timer_;
  bool breaker_timer_armed_ = false;
  std::mt19937_64 rng_{std::random_device{}()};
  PoolStats stats_;
  bool shutting_down_ = false;
  std::function<void()> on_shutdown_done_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
