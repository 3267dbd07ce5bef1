#include "supervisor/pool/retry_policy.hpp"

#include <algorithm>

namespace drover::supervisor {

Millis RetryPolicy::backoff(int attempts_made, double u) const {
  const int shift = std::clamp(attempts_made - 1, 0, 20);
  const auto cap = std::min<std::int64_t>(cfg_.base_delay.count() << shift, cfg_.max_delay.count());
  return Millis(static_cast<std::int64_t>(static_cast<double>(cap) * u));
}

bool RetryPolicy::budget_allows(std::size_t retries_active, std::size_t requests_active) const {
  const double budget = cfg_.budget_percent / 100.0 * static_cast<double>(requests_active);
  const double limit = std::max(budget, static_cast<double>(cfg_.min_retry_concurrency));
  return static_cast<double>(retries_active) < limit;
}

RetryPolicy::Decision RetryPolicy::decide(const Attempt& a, double u) const {
  using V = Decision::Verdict;
  if (a.blamed_losses >= cfg_.poison_threshold) return {V::poison};
  if (!attempts_left(a.attempts_made)) return {V::attempts_exhausted};
  if (a.cause == Cause::failover) return {V::redispatch, Millis(0), false};
  if (!a.counted && !budget_allows(a.retries_active, a.requests_active)) return {V::budget_exhausted};
  return {V::redispatch, backoff(a.attempts_made, u), !a.counted};
}

}  // namespace drover::supervisor
