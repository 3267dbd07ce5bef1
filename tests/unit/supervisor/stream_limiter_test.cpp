// StreamLimiter: fixed and adaptive stream concurrency limits, places held and moved, and the
// throughput-gradient rule with the worked examples of its header.
#include "supervisor/pool/stream_limiter.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace drover::supervisor {
namespace {

// Distinct stream keys.
std::vector<int> g_keys(1000);
StreamLimiter::StreamKey key(int i) { return &g_keys[static_cast<std::size_t>(i)]; }

// The injected clock: streams start and end at `t`; each heartbeat sample comes 1 s later.
StreamLimiter::Clock::time_point t = StreamLimiter::Clock::time_point{} + std::chrono::hours(1);
void sample(StreamLimiter& l, int slot, double tokens_per_s, std::int64_t running) {
  t += std::chrono::seconds(1);
  l.on_sample(slot, tokens_per_s, running, t);
}

TEST(StreamLimiter, AFixedPerWorkerLimitHoldsPerWorker) {
  StreamLimiter l({.per_worker = 2});
  l.add_worker(0);
  l.add_worker(1);
  EXPECT_EQ(l.total_limit(), 4);
  l.start(key(0), 0, t);
  EXPECT_TRUE(l.can_start(0));
  l.start(key(1), 0, t);
  EXPECT_FALSE(l.can_start(0));
  EXPECT_TRUE(l.can_start(1));
  l.end(key(0), t);
  EXPECT_TRUE(l.can_start(0));
  l.end(key(0), t);  // twice: harmless
  EXPECT_EQ(l.active(0), 1);
  EXPECT_EQ(l.active_total(), 1);
}

TEST(StreamLimiter, TheTotalLimitCapsTheSum) {
  StreamLimiter l({.per_worker = 2, .total = 3});
  l.add_worker(0);
  l.add_worker(1);
  l.start(key(0), 0, t);
  l.start(key(1), 0, t);
  l.start(key(2), 1, t);
  EXPECT_FALSE(l.can_start(1)) << "worker 1 has room, the total has not";
  EXPECT_EQ(l.total_room(), 0);
  l.end(key(0), t);
  EXPECT_TRUE(l.can_start(1));
  EXPECT_EQ(l.total_room(), 1);
}

TEST(StreamLimiter, AStreamFailingOverMovesItsPlace) {
  StreamLimiter l({.per_worker = 1});
  l.add_worker(0);
  l.add_worker(1);
  l.start(key(0), 0, t);
  EXPECT_TRUE(l.holds(key(0)));
  l.start(key(0), 1, t);
  EXPECT_EQ(l.active(0), 0);
  EXPECT_EQ(l.active(1), 1);
  EXPECT_EQ(l.active_total(), 1);
  l.end(key(0), t);
  EXPECT_FALSE(l.holds(key(0)));
  EXPECT_EQ(l.active(1), 0);
}

TEST(StreamLimiter, AFixedLimitIgnoresThroughput) {
  StreamLimiter l({.per_worker = 3});
  for (int i = 0; i < 3; ++i) l.start(key(i), 0, t);
  for (int i = 0; i < 20; ++i) sample(l, 0, 1e6, 3);
  EXPECT_EQ(l.limit(0), 3);
}

// The header's first example: streams keep full speed, so the limit grows.
TEST(StreamLimiter, AdaptiveLimitGrowsWhileStreamsKeepFullSpeed) {
  StreamLimiter l({});
  l.add_worker(0);
  EXPECT_EQ(l.limit(0), 16);
  for (int i = 0; i < 16; ++i) l.start(key(i), 0, t);
  sample(l, 0, 1600, 16);  // 100 tokens/s per stream
  EXPECT_EQ(l.limit(0), 18);
  int started = 16, last = l.limit(0);
  for (int round = 0; round < 40; ++round) {
    while (l.can_start(0)) l.start(key(started++), 0, t);  // demand: every place is taken
    sample(l, 0, 100.0 * l.active(0), l.active(0));
    EXPECT_GE(l.limit(0), last);
    last = l.limit(0);
  }
  EXPECT_GT(l.limit(0), 100);
}

// The header's second example: a worker with 400 tokens/s in all.
TEST(StreamLimiter, AdaptiveLimitSettlesWhereStreamsStopGainingThroughput) {
  StreamLimiter l({});
  l.add_worker(0);
  l.start(key(0), 0, t);
  sample(l, 0, 100, 1);  // alone: 100 tokens/s, the baseline; 1 of 16 places: no growth
  EXPECT_EQ(l.limit(0), 16);
  for (int i = 1; i < 16; ++i) l.start(key(i), 0, t);
  sample(l, 0, 400, 16);  // r = 25: gradient 0.5 (clamped), target 12, limit 14
  EXPECT_EQ(l.limit(0), 14);
  int next = 16;
  for (int round = 0; round < 200; ++round) {
    // Streams end and new ones take every free place; the worker's capacity stays 400/s.
    while (l.active(0) > l.limit(0)) l.end(key(--next), t);
    while (l.can_start(0)) l.start(key(next++), 0, t);
    sample(l, 0, 400, l.active(0));
  }
  // Fixed point: limit = 4 + sqrt(limit), ~6.6 streams of ~60 tokens/s each.
  EXPECT_GE(l.limit(0), 5);
  EXPECT_LE(l.limit(0), 7);
}

// Issue 17: a worker that states max_batch (it steps that many generations together) keeps at
// least that many places whatever the per-stream rate says, and may still grow above it.
TEST(StreamLimiter, ABatchingWorkersMaxBatchIsTheLeastItsAdaptiveLimitGoesTo) {
  StreamLimiter l({});
  l.add_worker(0, 24);
  EXPECT_EQ(l.limit(0), 24) << "the floor applies from the start";
  l.start(key(0), 0, t);
  sample(l, 0, 100, 1);
  int next = 1;
  for (int round = 0; round < 50; ++round) {
    // The same saturated worker as above (400 tokens/s in all): without the floor, ~6.6.
    while (l.can_start(0)) l.start(key(next++), 0, t);
    sample(l, 0, 400, l.active(0));
  }
  EXPECT_EQ(l.limit(0), 24);
  EXPECT_EQ(l.active(0), 24);
  // Streams at full speed still grow it past the floor.
  StreamLimiter g({});
  g.add_worker(0, 4);
  for (int i = 0; i < 16; ++i) g.start(key(i), 0, t);
  sample(g, 0, 1600, 16);  // 100 tokens/s each, as alone
  EXPECT_GT(g.limit(0), 16);
  // A fixed per-worker limit is the operator's and ignores the floor.
  StreamLimiter f({.per_worker = 8});
  f.add_worker(0, 24);
  EXPECT_EQ(f.limit(0), 8);
}

TEST(StreamLimiter, OnlyASingleRequestSampleLowersTheBaseline) {
  StreamLimiter l({});
  l.start(key(0), 0, t);
  sample(l, 0, 100, 1);  // baseline 100
  for (int i = 1; i < 8; ++i) l.start(key(i), 0, t);
  for (int i = 0; i < 500; ++i) sample(l, 0, 400, 8);  // saturated: baseline stays 100
  const int saturated = l.limit(0);
  EXPECT_LE(saturated, 7);
  // The worker became slower: alone it now does 50 tokens/s. The baseline follows, so 8
  // streams at 50 tokens/s each are no longer a sign of contention and the limit grows.
  for (int i = 1; i < 8; ++i) l.end(key(i), t);
  for (int i = 0; i < 20; ++i) sample(l, 0, 50, 1);
  for (int i = 1; i < 8; ++i) l.start(key(i), 0, t);
  for (int i = 0; i < 5; ++i) sample(l, 0, 400, 8);
  EXPECT_GT(l.limit(0), saturated);
}

TEST(StreamLimiter, TheRateIsPerStreamAveragedOverTheInterval) {
  StreamLimiter l({});
  for (int i = 0; i < 16; ++i) l.start(key(i), 0, t);
  sample(l, 0, 1600, 16);  // 100 tokens/s each: the baseline
  const int before = l.limit(0);
  // Half the streams ran for half of the next second: 12 on average, not the 8 left now, so
  // 1200 tokens/s is still 100 each (1200 / 8 = 150 would inflate the baseline).
  t += std::chrono::milliseconds(500);
  for (int i = 8; i < 16; ++i) l.end(key(i), t);
  t += std::chrono::milliseconds(500);
  l.on_sample(0, 1200, 8, t);
  for (int i = 8; i < 16; ++i) l.start(key(i), 0, t);
  sample(l, 0, 1600, 16);  // 100 each again: were the baseline 150, this would shrink the limit
  EXPECT_GE(l.limit(0), before);
}

TEST(StreamLimiter, AQuietWorkersLimitDoesNotDriftUp) {
  StreamLimiter l({});
  l.start(key(0), 0, t);
  l.start(key(1), 0, t);
  for (int i = 0; i < 50; ++i) sample(l, 0, 200, 2);  // full speed, but 2 of 16 places used
  EXPECT_EQ(l.limit(0), 16);
}

TEST(StreamLimiter, SamplesWithoutWorkAreIgnored) {
  StreamLimiter l({});
  sample(l, 0, 500, 0);  // nothing running
  for (int i = 0; i < 8; ++i) l.start(key(i), 0, t);
  sample(l, 0, 0, 8);    // nothing generated
  sample(l, 0, -1, 8);
  EXPECT_EQ(l.limit(0), 16);
}

TEST(StreamLimiter, TheAdaptiveTotalIsTheSumOfTheWorkersLimits) {
  StreamLimiter l({.total = 0, .max_limit = 10});
  l.add_worker(0);
  l.add_worker(1);
  EXPECT_EQ(l.total_limit(), 20) << "the initial 16 capped at max_limit";
  for (int i = 0; i < 8; ++i) l.start(key(i), 0, t);
  for (int i = 0; i < 100; ++i) sample(l, 0, 800, 8);
  EXPECT_EQ(l.limit(0), 10) << "capped at max_limit";
  l.start(key(8), 1, t);
  l.start(key(9), 1, t);
  for (int i = 0; i < 100; ++i) sample(l, 1, 200, 2);  // r = 100; 2 of 10 places: no growth
  for (int i = 0; i < 100; ++i) sample(l, 1, 200, 10);  // r = 20, a fifth of the baseline: shrinks
  EXPECT_LT(l.limit(1), 10);
  EXPECT_EQ(l.total_limit(), 10 + l.limit(1));
  l.remove_worker(1);
  EXPECT_EQ(l.total_limit(), 10);
  EXPECT_EQ(l.limits(), (std::map<int, int>{{0, 10}}));
}

}  // namespace
}  // namespace drover::supervisor
