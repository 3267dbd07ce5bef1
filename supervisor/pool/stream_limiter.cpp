#include "supervisor/pool/stream_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace drover::supervisor {
namespace {

constexpr double kMinGradient = 0.5;
// A per-request rate within 10% of the baseline counts as uncontended: heartbeat samples are
// noisy (streams in their time to first token generate nothing yet).
constexpr double kNoiseBand = 0.9;
constexpr double kSmoothing = 0.5;
// How far one single-request sample moves the baseline down.
constexpr double kBaselineFollow = 0.3;

}  // namespace

void StreamLimiter::reconfigure(const StreamLimiterConfig& config) { config_ = config; }

StreamLimiter::Worker& StreamLimiter::worker(int slot) {
  const auto [it, fresh] = workers_.try_emplace(slot);
  if (fresh) it->second.limit = std::min(kInitialLimit, static_cast<double>(std::max(1, config_.max_limit)));
  return it->second;
}

int StreamLimiter::limit(int slot) const {
  if (config_.per_worker > 0) return config_.per_worker;
  const auto it = workers_.find(slot);
  double l = kInitialLimit;
  if (it != workers_.end()) l = std::max(it->second.limit, static_cast<double>(it->second.floor));
  return std::clamp(static_cast<int>(l), 1, std::max(1, config_.max_limit));
}

int StreamLimiter::total_limit() const {
  if (config_.total > 0) return config_.total;
  int sum = 0;
  for (const auto& [slot, w] : workers_) sum += limit(slot);
  // Before any worker is known, one worker's worth.
  return workers_.empty() ? limit(-1) : sum;
}

int StreamLimiter::active(int slot) const {
  const auto it = workers_.find(slot);
  return it == workers_.end() ? 0 : it->second.active;
}

std::map<int, int> StreamLimiter::limits() const {
  std::map<int, int> out;
  for (const auto& [slot, w] : workers_) out[slot] = limit(slot);
  return out;
}

bool StreamLimiter::can_start(int slot) const {
  return active(slot) < limit(slot) && active_total() < total_limit();
}

void StreamLimiter::advance(Worker& w, Clock::time_point now) {
  if (w.last_change && now > *w.last_change) {
    w.stream_seconds += w.active * std::chrono::duration<double>(now - *w.last_change).count();
  }
  w.last_change = now;
}

void StreamLimiter::start(StreamKey stream, int slot, Clock::time_point now) {
  const auto [it, fresh] = holders_.try_emplace(stream, slot);
  if (!fresh) {
    if (it->second == slot) return;
    Worker& from = worker(it->second);
    advance(from, now);
    --from.active;
    it->second = slot;
  }
  Worker& w = worker(slot);
  advance(w, now);
  ++w.active;
}

void StreamLimiter::end(StreamKey stream, Clock::time_point now) {
  const auto it = holders_.find(stream);
  if (it == holders_.end()) return;
  Worker& w = worker(it->second);
  advance(w, now);
  --w.active;
  holders_.erase(it);
}

void StreamLimiter::remove_worker(int slot) {
  // Streams the scaled-away worker still finishes (it drains) no longer count.
  for (auto it = holders_.begin(); it != holders_.end();) {
    it = it->second == slot ? holders_.erase(it) : std::next(it);
  }
  workers_.erase(slot);
}

void StreamLimiter::on_sample(int slot, double tokens_per_s, std::int64_t running,
                              Clock::time_point now) {
  Worker& w = worker(slot);
  advance(w, now);
  double streams = w.active;
  if (w.last_sample && now > *w.last_sample) {
    streams = w.stream_seconds / std::chrono::duration<double>(now - *w.last_sample).count();
  }
  w.stream_seconds = 0;
  w.last_sample = now;
  const double requests = streams + static_cast<double>(std::max<std::int64_t>(0, running - w.active));
  if (!adaptive() || requests <= 0 || !(tokens_per_s > 0)) return;
  const double rate = tokens_per_s / requests;
  if (requests < 1.5 && rate < w.baseline) {
    // Alone, a request runs at the worker's uncontended rate: a slower worker lowers it.
    w.baseline += kBaselineFollow * (rate - w.baseline);
  } else {
    w.baseline = std::max(w.baseline, rate);
  }
  const double ratio = rate / w.baseline;
  const double gradient = ratio >= kNoiseBand ? 1.0 : std::max(ratio, kMinGradient);
  const double target = w.limit * gradient + std::sqrt(w.limit);
  // Not binding (fewer than half the places used): the sample says nothing about more streams.
  if (target > w.limit && w.active < w.limit / 2) return;
  w.limit = std::clamp(w.limit * (1 - kSmoothing) + target * kSmoothing,
                       std::max(1.0, static_cast<double>(w.floor)),
                       static_cast<double>(std::max(1, config_.max_limit)));
}

}  // namespace drover::supervisor
