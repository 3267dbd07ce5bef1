// StreamLimiter: how many streamed generate requests may run at once, per worker and in total,
// and which streams hold a place. Streams beyond the limit are not refused: the pool keeps
// them queued and starts them as places free up. Pure logic (the caller passes the samples);
// owned by WorkerPool; supervisor thread only.
//
// Limits: streaming.max_concurrent_per_worker > 0 fixes every worker's limit; 0 makes it
// adaptive. streaming.max_concurrent_total > 0 caps the sum; 0 means the sum of the workers'
// limits.
//
// The adaptive rule is a throughput gradient (the rate form of Netflix's Gradient2 concurrency
// limit). From each heartbeat the worker reports its generated tokens/s over the last interval
// and the requests it ran: the streams on it averaged over the time since the previous sample
// (an instant's count swings as short streams come and go) plus the other requests it holds
// now; their ratio is the per-request rate r. The worker's baseline rate
// b is the best r seen; only a sample with a single request running (the uncontended rate)
// can lower it (30% of the way per sample), so a worker that got slower is followed, while
// sustained saturation cannot talk the baseline down and let the limit creep up.
//   gradient = clamp(r / b, 0.5, 1)          1: streams do not slow each other down
//                                             (within 10%, sampling noise, taken as 1)
//   target   = limit * gradient + sqrt(limit) sqrt(limit): headroom to probe upwards
//   limit    = 0.5 * limit + 0.5 * target     smoothed, within [1, max_limit]
// and the limit only grows while it binds (the worker runs at least half its limit of
// streams), so a quiet worker's limit does not drift up unmeasured.
// Samples come once per heartbeat (1 s by default), so the smoothing is light and the
// initial limit generous (Gradient2 starts at 20).
// A worker that computes its generations together states `max_batch` in its init reply
// (tinyllm's continuous batching): its adaptive limit never goes below that (nor above
// max_limit). For such a worker the gradient misreads the signal: sixteen streams sharing each
// step each run at a sixteenth of one alone while the worker's total rises (issue 17: 2x at 16
// streams on a stories15M-shaped model), so the rule above would settle near 6 streams and
// hold back ones the worker serves at little extra cost — and a held stream waits for a place
// before its first token, where an admitted one joins the next step.
// Worked example, initial limit 16: a worker whose streams each run at 100 tokens/s alone
// reports 1600 tokens/s with 16 running: r = 100, gradient 1, target 16 + 4 = 20, limit 18;
// then 20.1, 22.4, 24.8... (+sqrt(limit)/2 per heartbeat) while streams keep full speed. A
// worker that can generate only 400 tokens/s in all reports r = 25 at 16 streams: gradient
// 0.5 (clamped), target 8 + 4 = 12, limit 14; it settles where limit = 4 + sqrt(limit), i.e.
// ~6.6 streams of ~60 tokens/s each, instead of slowing every stream further as more arrive.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>

namespace drover::supervisor {

struct StreamLimiterConfig {
  int per_worker = 0;  // 0: adaptive
  int total = 0;       // 0: sum of the workers' limits
  int max_limit = 256;  // a worker's adaptive limit never exceeds this (workers.max_inflight)
};

class StreamLimiter {
 public:
  using StreamKey = const void*;  // one stream (the pool uses its Call)
  static constexpr double kInitialLimit = 16;

  explicit StreamLimiter(const StreamLimiterConfig& config) : config_(config) {}
  void reconfigure(const StreamLimiterConfig& config);

  // Whether a new stream may start on `slot` now (room there and in total).
  bool can_start(int slot) const;
  // Whether `stream` already holds a place (a stream failing over keeps its place).
  bool holds(StreamKey stream) const { return holders_.contains(stream); }
  using Clock = std::chrono::steady_clock;
  // `stream` runs on `slot` from `now`; a stream that held a place elsewhere moves it.
  void start(StreamKey stream, int slot, Clock::time_point now);
  // `stream` ended: its place is free.
  void end(StreamKey stream, Clock::time_point now);
  // A worker slot in the pool (idempotent); the total limit sums the known workers' limits.
  // `floor` > 0: the worker runs that many generations together (its max_batch), the least its
  // adaptive limit may be.
  void add_worker(int slot, int floor = 0) { worker(slot).floor = floor; }
  // A worker slot left the pool (scaled away).
  void remove_worker(int slot);

  // One heartbeat of `slot` taken at `now`: `tokens_per_s` generated over its last interval;
  // it holds `running` requests now (streams and others). Ignored unless adaptive, and when
  // there is nothing to learn from.
  void on_sample(int slot, double tokens_per_s, std::int64_t running, Clock::time_point now);

  int limit(int slot) const;
  int total_limit() const;
  int active(int slot) const;
  int active_total() const { return static_cast<int>(holders_.size()); }
  // Places free in total (what may start before the total limit binds).
  int total_room() const { return std::max(0, total_limit() - active_total()); }
  bool adaptive() const { return config_.per_worker <= 0; }
  // Workers the limiter knows, by slot: their current limit.
  std::map<int, int> limits() const;

 private:
  struct Worker {
    double limit = kInitialLimit;
    int floor = 0;  // the worker's max_batch, when it states one
    double baseline = 0;  // per-request tokens/s; 0 until the first sample
    int active = 0;
    // Stream-seconds since the last sample, integrated at every start and end.
    double stream_seconds = 0;
    std::optional<Clock::time_point> last_change;
    std::optional<Clock::time_point> last_sample;
  };
  Worker& worker(int slot);
  static void advance(Worker& w, Clock::time_point now);

  StreamLimiterConfig config_;
  std::map<int, Worker> workers_;
  std::unordered_map<StreamKey, int> holders_;  // stream -> slot
};

}  // namespace drover::supervisor
