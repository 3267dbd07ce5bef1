// RetryPolicy: whether and when a request a lost worker held runs again (Envoy's retry policy
// and retry budget). Two kinds of re-dispatch:
//  - failover: the worker process is gone (crashed, killed, exited) before answering. Its work
//    was never answered, and moving it does not add load (the dead worker's share just moves),
//    so it is re-dispatched at once and outside the retry budget;
//  - retry: the worker was judged failed while alive (no heartbeat, no progress, garbage, drain
//    timeout), i.e. the work timed out or got a broken answer. Each retry waits full-jitter
//    exponential backoff, uniform(0, min(max_delay, base_delay * 2^(attempt-1))), and retries
//    in progress may not exceed budget_percent of the requests in progress
//    (min_retry_concurrency always allowed), so a failing pool is not hammered by its own
//    retries.
// Both are capped by max_attempts, and both stop at poison_threshold workers lost through
// their own fault while running the request. Pure; thread-safe.
//
// Worked example (base 10 ms, max 500 ms, budget 20%, min 8): with 100 requests in progress, at
// most max(8, 20) = 20 may be retrying at once; the third attempt waits uniform(0, 20 ms). A
// SIGKILLed worker holding 30 of them fails all 30 over at once, whatever the budget.
#pragma once

#include <cstddef>

#include "common/config.hpp"

namespace drover::supervisor {

class RetryPolicy {
 public:
  enum class Cause {
    failover,  // the worker process exited (or was killed) holding the request
    retry,     // the worker was failed while alive: timed out, or answered garbage
  };
  struct Attempt {
    Cause cause = Cause::retry;
    int attempts_made = 1;      // >= 1
    int blamed_losses = 0;      // workers lost through their own fault while holding it
    bool counted = false;       // already counted against the budget by an earlier retry
    std::size_t retries_active = 0;   // retries in progress (counted ones)
    std::size_t requests_active = 0;  // requests in progress
  };
  struct Decision {
    enum class Verdict { redispatch, poison, attempts_exhausted, budget_exhausted };
    Verdict verdict = Verdict::redispatch;
    Millis delay{0};                     // redispatch: wait this long first
    bool count_against_budget = false;   // redispatch: it now counts as a retry in progress
  };

  explicit RetryPolicy(const RetryConfig& config) : cfg_(config) {}

  // What to do with a request whose worker was lost. u: uniform in [0, 1) for the jitter.
  Decision decide(const Attempt& a, double u) const;

  // attempts_made: attempts so far (>= 1). u: uniform in [0, 1).
  Millis backoff(int attempts_made, double u) const;
  bool attempts_left(int attempts_made) const { return attempts_made < cfg_.max_attempts; }
  bool budget_allows(std::size_t retries_active, std::size_t requests_active) const;
  const RetryConfig& config() const { return cfg_; }

 private:
  RetryConfig cfg_;
};

}  // namespace drover::supervisor
