// RetryPolicy: whether and when a request a dead worker held runs again (Envoy's retry policy
// and retry budget). Attempts are capped by max_attempts; each retry waits full-jitter
// exponential backoff, uniform(0, min(max_delay, base_delay * 2^(attempt-1))); and retries in
// progress may not exceed budget_percent of the requests in progress (min_retry_concurrency
// always allowed), so a failing pool is not hammered by its own retries. Pure; thread-safe.
//
// Worked example (base 10 ms, max 500 ms, budget 20%, min 8): with 100 requests in progress, at
// most max(8, 20) = 20 may be retrying at once; the third attempt waits uniform(0, 20 ms).
#pragma once

#include <cstddef>

#include "common/config.hpp"

namespace drover::supervisor {

class RetryPolicy {
 public:
  explicit RetryPolicy(const RetryConfig& config) : cfg_(config) {}

  // attempts_made: attempts so far (>= 1). u: uniform in [0, 1).
  Millis backoff(int attempts_made, double u) const;
  bool attempts_left(int attempts_made) const { return attempts_made < cfg_.max_attempts; }
  bool budget_allows(std::size_t retries_active, std::size_t requests_active) const;
  const RetryConfig& config() const { return cfg_; }

 private:
  RetryConfig cfg_;
};

}  // namespace drover::supervisor
