// BatchController: adaptive batch sizing for the batch queue (batch_queue.adaptive_sizing).
// Owned by the pool's Batcher; supervisor thread only. Pure: time is passed in, so tests drive
// it with a fake clock.
//
// Each flush reports its batch time (flush sent -> last reply of the batch back). The controller
// averages the samples since its last decision and, once it has at least kMinSamples of them and
// at least kMinInterval has passed since the last decision, scales the size by the first rule
// that matches the mean against the target:
//   mean > 1.5 x target: x0.7     mean > 1.2 x target: x0.85
//   mean < 0.5 x target: x1.5     mean < 0.8 x target: x1.15     otherwise: unchanged
// then clamps to [kMinSize, kMaxSize] and starts a new sample window.
// Worked example, target 10 ms, size 20: ten flushes averaging 16 ms (1.6x) -> 14; a second
// later ten flushes at 13 ms (1.3x) -> 11.9 (used as 12); ten at 4 ms (0.4x) -> 17.85 (18).
// The size is kept as a real number and rounded when read, so x1.15 can climb away from 1
// (1 -> 1.15 -> 1.32 -> 1.52, read as 2) instead of rounding back to 1 forever.
//
// Worker step times (issue 17). A worker that computes its generations together (tinyllm's
// continuous batching) reports in heartbeats how long its steps took (`step_us`, the mean over
// `steps` steps since its last heartbeat). For such a worker the batch time above measures the
// wrong thing: a flush of generates is done when its longest generation is, so its time is
// max_tokens x step time whatever the batch size. What a flush's size does change is the
// worker's next step, which prefills every prompt of the flush at once: so while step reports
// are fresh (the last within kStepReportTtl), the samples are the worker's step times, each
// report weighing as many samples as steps it covers, against the same target (then read as
// "the longest a worker step should take"), and batch times are ignored. Worked example,
// target 10 ms, size 20: one heartbeat of 200 steps at 4 ms (0.4x) -> 30; a second later 150
// steps at 16 ms (1.6x) -> 21. When reports stop for kStepReportTtl, batch times count again.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace drover::supervisor {

class BatchController {
 public:
  using Clock = std::chrono::steady_clock;
  using Micros = std::chrono::microseconds;

  static constexpr int kMinSize = 1;
  static constexpr int kMaxSize = 100;
  static constexpr int kMinSamples = 10;
  static constexpr Clock::duration kMinInterval = std::chrono::seconds(1);
  static constexpr Clock::duration kStepReportTtl = std::chrono::seconds(5);

  // `adaptive` false: the size stays at `initial_size` and samples are only counted.
  BatchController(int initial_size, Micros target, bool adaptive);

  // One flush's batch time. Returns true when this sample changed the size. Ignored while
  // worker step reports are fresh.
  bool record(Micros batch_time, Clock::time_point now);
  // A worker's step report: `steps` steps (> 0) that took `step_time` each on average. Returns
  // true when it changed the size.
  bool record_steps(Micros step_time, std::uint64_t steps, Clock::time_point now);
  // Whether step reports drive the size now (one arrived within kStepReportTtl).
  bool steps_fresh(Clock::time_point now) const {
    return last_step_report_ && now - *last_step_report_ < kStepReportTtl;
  }

  // Requests per flush now, in [kMinSize, kMaxSize].
  int size() const;
  Micros target() const { return target_; }
  bool adaptive() const { return adaptive_; }
  std::uint64_t adjustments() const { return adjustments_; }

  // Operator changes (config.updateAdaptiveTargets, reload). Setting the size restarts the
  // sample window, so the next decision is about the new size only.
  // REQUIRES: target > 0; size in [kMinSize, kMaxSize].
  void set_target(Micros target) { target_ = target; }
  void set_size(int size);
  void set_adaptive(bool adaptive) { adaptive_ = adaptive; }

 private:
  // Adds `weight` samples of `sample_us` each, then decides if due.
  bool add_samples(double sample_us, std::uint64_t weight, Clock::time_point now);

  double size_;
  Micros target_;
  bool adaptive_;
  std::optional<Clock::time_point> last_step_report_;
  std::uint64_t samples_ = 0;
  double sample_sum_us_ = 0;
  std::optional<Clock::time_point> last_decision_;
  std::uint64_t adjustments_ = 0;
};

}  // namespace drover::supervisor
