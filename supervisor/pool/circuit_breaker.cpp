#include "supervisor/pool/circuit_breaker.hpp"

namespace drover::supervisor {

std::string_view to_string(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::closed: return "closed";
    case CircuitBreaker::State::open: return "open";
    case CircuitBreaker::State::half_open: return "half_open";
  }
  return "closed";
}

CircuitBreaker::CircuitBreaker(const CircuitBreakerConfig& config)
    : cfg_(config), buckets_(static_cast<std::size_t>(std::max<std::int64_t>(config.window.count(), 1))) {}

bool CircuitBreaker::can_accept(TimePoint now) {
  if (!cfg_.enabled) return true;
  switch (state_) {
    case State::closed:
      return true;
    case State::open:
      if (now < open_until_) return false;
      transition(State::half_open, now);
      [[fallthrough]];
    case State::half_open:
      return probes_in_flight_ + probe_successes_ < cfg_.half_open_probes;
  }
  return true;
}

void CircuitBreaker::on_dispatch() {
  if (cfg_.enabled && state_ == State::half_open) ++probes_in_flight_;
}

CircuitBreaker::Bucket& CircuitBreaker::bucket(TimePoint now) {
  const std::int64_t second =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  Bucket& b = buckets_[static_cast<std::size_t>(second) % buckets_.size()];
  if (b.second != second) b = Bucket{second, 0, 0};
  return b;
}

void CircuitBreaker::record(bool success, TimePoint now) {
  if (!cfg_.enabled) return;
  if (state_ == State::half_open) {
    if (probes_in_flight_ > 0) --probes_in_flight_;
    if (!success) {
      transition(State::open, now);
      return;
    }
    if (++probe_successes_ >= cfg_.half_open_probes) transition(State::closed, now);
    return;
  }
  if (state_ == State::open) return;  // late outcome of a request sent before opening
  Bucket& b = bucket(now);
  if (success) {
    ++b.ok;
    consecutive_failures_ = 0;
    return;
  }
  ++b.failed;
  if (++consecutive_failures_ >= cfg_.consecutive_failures) {
    transition(State::open, now);
    return;
  }
  // Failure rate over the buckets still inside the window.
  const std::int64_t current =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  int ok = 0, failed = 0;
  for (const auto& bk : buckets_) {
    if (bk.second >= 0 && current - bk.second < static_cast<std::int64_t>(buckets_.size())) {
      ok += bk.ok;
      failed += bk.failed;
    }
  }
  const int total = ok + failed;
  if (total >= cfg_.min_requests &&
      static_cast<double>(failed) >= cfg_.failure_rate * static_cast<double>(total)) {
    transition(State::open, now);
  }
}

void CircuitBreaker::transition(State to, TimePoint now) {
  state_ = to;
  ++transitions_;
  probes_in_flight_ = 0;
  probe_successes_ = 0;
  if (to == State::open) {
    open_until_ = now + cfg_.open_duration;
  } else if (to == State::closed) {
    consecutive_failures_ = 0;
    for (auto& b : buckets_) b = Bucket{};
  }
}

}  // namespace drover::supervisor
