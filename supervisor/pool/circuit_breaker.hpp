// CircuitBreaker: per-worker outlier detection (Envoy's consecutive-5xx and failure-rate
// ejection, with an explicit half-open state). An open breaker keeps its worker out of
// rotation; after open_duration it lets half_open_probes requests through and closes only when
// they all succeed. Time is passed in, so tests drive it with a fake clock. Not thread-safe:
// owned by a WorkerLink on the supervisor thread.
//
// Worked example (consecutive_failures 5, failure_rate 0.5, min_requests 20, window 10 s,
// open 5 s, probes 2): five failed requests in a row open it at t; from t+5 s the first two
// requests routed to the worker are probes; both succeed -> closed; one fails -> open again
// until t'+5 s. Independently, 12 failures among 20 requests within 10 s (60% >= 50%) open it
// even if failures and successes alternate.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/config.hpp"

namespace drover::supervisor {

class CircuitBreaker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  enum class State { closed, open, half_open };

  explicit CircuitBreaker(const CircuitBreakerConfig& config);

  // Whether a request may be routed to this worker now (moves open -> half_open when the open
  // period is over; in half_open, only while probe slots remain).
  bool can_accept(TimePoint now);
  // A request was routed here (takes a probe slot when half-open).
  void on_dispatch();
  // The outcome of a request routed here. A failure is what the worker is to blame for:
  // an internal error reply or a timeout; client errors and cancels are not recorded.
  void record(bool success, TimePoint now);

  // New thresholds from a reload; the current state and counts carry over.
  void reconfigure(const CircuitBreakerConfig& config) { cfg_ = config; }

  State state() const { return state_; }
  TimePoint open_until() const { return open_until_; }
  std::uint64_t transitions() const { return transitions_; }

 private:
  struct Bucket {
    std::int64_t second = -1;
    int ok = 0;
    int failed = 0;
  };
  void transition(State to, TimePoint now);
  Bucket& bucket(TimePoint now);

  CircuitBreakerConfig cfg_;
  State state_ = State::closed;
  int consecutive_failures_ = 0;
  int probes_in_flight_ = 0;
  int probe_successes_ = 0;
  TimePoint open_until_{};
  std::vector<Bucket> buckets_;  // one per second of the window, indexed by second % size
  std::uint64_t transitions_ = 0;
};

std::string_view to_string(CircuitBreaker::State s);

}  // namespace drover::supervisor
