#include "supervisor/pool/restart_policy.hpp"

#include <algorithm>

namespace drover::supervisor {

std::optional<Millis> RestartPolicy::on_crash(TimePoint now, double jitter) {
  crashes_.push_back(now);
  while (!crashes_.empty() && now - crashes_.front() > cfg_.restart_window) crashes_.pop_front();
  if (static_cast<int>(crashes_.size()) > cfg_.max_restarts) return std::nullopt;
  ++streak_;
  const int shift = std::min(streak_ - 1, 20);
  const auto raw = std::min<std::int64_t>(cfg_.restart_backoff_base.count() << shift,
                                          cfg_.restart_backoff_max.count());
  return Millis(static_cast<std::int64_t>(static_cast<double>(raw) * (0.5 + 0.5 * jitter)));
}

}  // namespace drover::supervisor
