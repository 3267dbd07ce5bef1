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

  // `adaptive` false: the size stays at `initial_size` and samples are only counted.
  BatchController(int initial_size, Micros target, bool adaptive);

  // One flush's batch time. Returns true when this sample changed the size.
  bool record(Micros batch_time, Clock::time_point now);

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
  double size_;
  Micros target_;
  bool adaptive_;
  int samples_ = 0;
  double sample_sum_us_ = 0;
  std::optional<Clock::time_point> last_decision_;
  std::uint64_t adjustments_ = 0;
};

}  // namespace drover::supervisor
