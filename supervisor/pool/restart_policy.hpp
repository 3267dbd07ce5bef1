// RestartPolicy: how a worker slot is refilled after a crash (shared/DESIGN.md section 7,
// Erlang/OTP restart intensity). Only crash loops count — a worker that dies through its own
// fault before becoming ready, or within crash_loop_window of it; a worker killed from outside
// or one that ran fine for a while is replaced at once. Crash loops back off exponentially
// with jitter (base * 2^(n-1), capped, times a factor in [0.5, 1)), and more than
// max_restarts crashes inside restart_window park the slot until an operator restarts it.
// Time and randomness are passed in, for tests. Supervisor thread only.
//
// Worked example (base 100 ms, max 10 s, max_restarts 5, window 60 s): crashes at t=0, 0.1,
// 0.3 ... wait ~50-100, ~100-200, ~200-400 ms; the sixth crash within 60 s parks the slot.
#pragma once

#include <chrono>
#include <deque>
#include <optional>

#include "common/config.hpp"

namespace drover::supervisor {

class RestartPolicy {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit RestartPolicy(const WorkersConfig& config) : cfg_(config) {}

  // A crash-loop death at `now`; `jitter` in [0, 1). Returns the delay before the respawn,
  // or nullopt when the slot must be parked.
  std::optional<Millis> on_crash(TimePoint now, double jitter);
  // A death that is not a crash (outside kill, recycling, a long healthy run): replace now.
  void on_clean_death() { streak_ = 0; }
  void reset() {
    streak_ = 0;
    crashes_.clear();
  }
  int streak() const { return streak_; }

 private:
  WorkersConfig cfg_;
  int streak_ = 0;
  std::deque<TimePoint> crashes_;
};

}  // namespace drover::supervisor
