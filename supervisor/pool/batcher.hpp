// Batcher: the pool-wide half of the batch queue (batch_queue config block). Each WorkerLink
// keeps its own outbox and flush timer; they all ask this one object when to flush and report
// every flush and every finished batch to it, so the size controller, the adaptive window and
// the statistics (telemetry.batchStats, the batch metrics) see the whole pool. Owned by
// WorkerPool (shared with its links, which may outlive it briefly); supervisor thread only.
//
// When a call enters a link's outbox (`pending` calls now there, `in_flight` earlier flushes of
// that link not fully answered yet), decide() says:
//   - flush now, alone, when batching is off;
//   - flush now (fast path) when the outbox holds just this call and fewer than
//     kBatchesInFlight batches are in flight: a lone request never waits for a window;
//   - flush now when the outbox reached the controller's size;
//   - otherwise wait: the link arms its flush timer (if not armed) for window().
// And when a batch in flight is fully answered while calls wait in the outbox, the link
// flushes at once when fast_path is on (flush_when_batch_done()). Why kBatchesInFlight = 2:
// with one batch in flight (Nagle's rule: hold small writes while one is unanswered) the
// worker idles between its last reply and the next batch; with two it serves one batch while
// the next is already in its socket, and requests are held only while both are busy.
// The window is the adaptive one when adaptive_window is on (fed with each flush's size: the
// depth the outbox reached), else flush_interval_ms; while a worker reports its step time
// (heartbeat `step_us`, fresh within BatchController::kStepReportTtl), never longer than that
// step: a continuously batching worker admits new generations between steps, so a call held
// for longer than one step has surely missed a step it could have joined. The same reports
// feed the size controller (batch_controller.hpp, "Worker step times").
#pragma once

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/config.hpp"
#include "common/metrics.hpp"
#include "proto/jsonrpc.hpp"
#include "supervisor/pool/adaptive_window.hpp"
#include "supervisor/pool/batch_controller.hpp"

namespace drover::supervisor {

class Batcher {
 public:
  using Clock = std::chrono::steady_clock;
  using Micros = std::chrono::microseconds;

  enum class Decision { flush_alone, flush_fast_path, flush_full, wait };
  enum class FlushCause { alone, fast_path, full, window, batch_done };
  static constexpr std::size_t kBatchesInFlight = 2;

  explicit Batcher(const BatchQueueConfig& config);

  // A reloaded configuration: switches, window and the controller's target and size.
  void reconfigure(const BatchQueueConfig& config);
  const BatchQueueConfig& config() const { return config_; }
  bool enabled() const { return config_.enabled; }

  Decision decide(std::size_t pending, std::size_t in_flight) const;
  Micros window(Clock::time_point now) const;
  bool flush_when_batch_done() const { return config_.enabled && config_.fast_path; }
  int size() const { return controller_.size(); }

  // A link sent `requests` calls (tokenize texts counted one by one) in one write, of which
  // `merged_texts` travelled inside merged batch_tokenize requests.
  void on_flush(std::size_t requests, std::size_t merged_texts, FlushCause cause);
  // Every reply of one flush is back, `batch_time` after it was sent.
  void on_batch_done(Micros batch_time, Clock::time_point now);
  // A worker's heartbeat said it ran `steps` steps of `step_time` on average (steps > 0).
  void on_worker_steps(Micros step_time, std::uint64_t steps, Clock::time_point now);

  // config.updateAdaptiveTargets. REQUIRES: target > 0, size in 1..100 (the caller validates).
  void update_targets(std::optional<Micros> target, std::optional<int> size);

  // Prometheus histograms the batch metrics go to (set by the supervisor's wiring).
  void set_histograms(metrics::Histogram* batch_size, metrics::Histogram* batch_time_seconds) {
    size_hist_ = batch_size;
    time_hist_ = batch_time_seconds;
  }

  // telemetry.batchStats; `queue_depth` per priority (high, normal, low) comes from the pool.
  proto::json stats(const std::array<std::size_t, 3>& queue_depth, Clock::time_point now) const;

 private:
  BatchQueueConfig config_;
  BatchController controller_;
  AdaptiveWindow window_;
  Micros worker_step_{0};  // the latest step report's mean step time (any worker)
  std::uint64_t step_reports_ = 0;
  std::uint64_t flushes_ = 0;
  std::uint64_t requests_ = 0;
  std::uint64_t merged_texts_ = 0;
  std::array<std::uint64_t, 5> causes_{};  // by FlushCause
  // The last kTimeSamples batch times, for the summary's quantiles.
  static constexpr std::size_t kTimeSamples = 1024;
  std::vector<double> times_us_;
  std::size_t next_time_ = 0;
  std::uint64_t batches_done_ = 0;
  double time_sum_us_ = 0;
  metrics::Histogram* size_hist_ = nullptr;
  metrics::Histogram* time_hist_ = nullptr;
};

}  // namespace drover::supervisor
