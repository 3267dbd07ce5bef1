// StreamLimiter: fixed and adaptive stream concurrency limits, places held and moved, and the
// throughput-gradient rule with the worked examples of its header.
#include "supervisor/pipeline/stream_limiter.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace drover::supervisor {
namespace {

// Distinct stream keys.
std::vector<int> g_keys(1000);
StreamLimiter::StreamKey key(int i) { return &g_keys[static_cast<std::size_t>(i)]; }

TEST(StreamLimiter, AFixedPerWorkerLimitHoldsPerWorker) {
  StreamLimiter l({.per_worker = 2});
  l.add_worker(0);
  l.add_worker(1);
  EXPECT_EQ(l.total_limit(), 4);
  l.start(key(0), 0);
  EXPECT_TRUE(l.can_start(0));
  l.start(key(1), 0);
  EXPECT_FALSE(l.can_start(0));
  EXPECT_TRUE(l.can_start(1));
  l.end(key(0));
  EXPECT_TRUE(l.can_start(0));
  l.end(key(0));  // twice: harmless
  EXPECT_EQ(l.active(0), 1);
  EXPECT_EQ(l.active_total(), 1);
}

TEST(StreamLimiter, TheTotalLimitCapsTheSum) {
  StreamLimiter l({.per_worker = 2, .total = 3});
  l.add_worker(0);
  l.add_worker(1);
  l.start(key(0), 0);
  l.start(key(1), 0);
  l.start(key(2), 1);
  EXPECT_FALSE(l.can_start(1)) << "worker 1 has room, the total has not";
  EXPECT_EQ(l.total_room(), 0);
  l.end(key(0));
  EXPECT_TRUE(l.can_start(1));
  EXPECT_EQ(l.total_room(), 1);
}

TEST(StreamLimiter, AStreamFailingOverMovesItsPlace) {
  StreamLimiter l({.per_worker = 1});
  l.add_worker(0);
  l.add_worker(1);
  l.start(key(0), 0);
  EXPECT_TRUE(l.holds(key(0)));
  l.start(key(0), 1);
  EXPECT_EQ(l.active(0), 0);
  EXPECT_EQ(l.active(1), 1);
  EXPECT_EQ(l.active_total(), 1);
  l.end(key(0));
  EXPECT_FALSE(l.holds(key(0)));
  EXPECT_EQ(l.active(1), 0);
}

TEST(StreamLimiter, AFixedLimitIgnoresThroughput) {
  StreamLimiter l({.per_worker = 3});
  for (int i = 0; i < 3; ++i) l.start(key(i), 0);
  for (int i = 0; i < 20; ++i) l.on_sample(0, 1e6, 3);
  EXPECT_EQ(l.limit(0), 3);
}

// The header's first example: streams keep full speed, so the limit grows.
TEST(StreamLimiter, AdaptiveLimitGrowsWhileStreamsKeepFullSpeed) {
  StreamLimiter l({});
  l.add_worker(0);
  EXPECT_EQ(l.limit(0), 8);
  for (int i = 0; i < 8; ++i) l.start(key(i), 0);
  l.on_sample(0, 800, 8);  // 100 tokens/s per stream
  EXPECT_EQ(l.limit(0), 8);  // 8.57
  int started = 8, last = l.limit(0);
  for (int round = 0; round < 40; ++round) {
    while (l.can_start(0)) l.start(key(started++), 0);  // demand: every place is taken
    l.on_sample(0, 100.0 * l.active(0), l.active(0));
    EXPECT_GE(l.limit(0), last);
    last = l.limit(0);
  }
  EXPECT_GT(l.limit(0), 30);
}

// The header's second example: a worker with 400 tokens/s in all.
TEST(StreamLimiter, AdaptiveLimitSettlesWhereStreamsStopGainingThroughput) {
  StreamLimiter l({});
  l.add_worker(0);
  l.start(key(0), 0);
  l.on_sample(0, 100, 1);  // alone: 100 tokens/s, the baseline; 1 of 8 places: no growth
  EXPECT_EQ(l.limit(0), 8);
  for (int i = 1; i < 8; ++i) l.start(key(i), 0);
  l.on_sample(0, 400, 8);  // r = 50: gradient ~0.5, limit 8 -> 7.77
  EXPECT_EQ(l.limit(0), 7);
  int next = 8;
  for (int round = 0; round < 200; ++round) {
    // Streams end and new ones take every free place; the worker's capacity stays 400/s.
    while (l.active(0) > l.limit(0)) l.end(key(--next));
    while (l.can_start(0)) l.start(key(next++), 0);
    l.on_sample(0, 400, l.active(0));
  }
  // Fixed point: limit = 4 + sqrt(limit), ~6.6 streams of ~60 tokens/s each.
  EXPECT_GE(l.limit(0), 5);
  EXPECT_LE(l.limit(0), 7);
}

TEST(StreamLimiter, OnlyASingleRequestSampleLowersTheBaseline) {
  StreamLimiter l({});
  l.start(key(0), 0);
  l.on_sample(0, 100, 1);  // baseline 100
  for (int i = 1; i < 8; ++i) l.start(key(i), 0);
  for (int i = 0; i < 500; ++i) l.on_sample(0, 400, 8);  // saturated: baseline stays 100
  EXPECT_LE(l.limit(0), 7);
  // The worker became slower (alone it now does 50 tokens/s): the baseline follows, so 8
  // streams at 50 each are no longer contended and the limit grows again.
  for (int i = 0; i < 20; ++i) l.on_sample(0, 50, 1);
  const int before = l.limit(0);
  for (int i = 0; i < 5; ++i) l.on_sample(0, 50.0 * l.active(0), l.active(0));
  EXPECT_GT(l.limit(0), before);
}

TEST(StreamLimiter, AQuietWorkersLimitDoesNotDriftUp) {
  StreamLimiter l({});
  l.start(key(0), 0);
  l.start(key(1), 0);
  for (int i = 0; i < 50; ++i) l.on_sample(0, 200, 2);  // full speed, but 2 of 8 places used
  EXPECT_EQ(l.limit(0), 8);
}

TEST(StreamLimiter, SamplesWithoutWorkAreIgnored) {
  StreamLimiter l({});
  for (int i = 0; i < 8; ++i) l.start(key(i), 0);
  l.on_sample(0, 0, 8);
  l.on_sample(0, 500, 0);
  l.on_sample(0, -1, 3);
  EXPECT_EQ(l.limit(0), 8);
}

TEST(StreamLimiter, TheAdaptiveTotalIsTheSumOfTheWorkersLimits) {
  StreamLimiter l({.total = 0, .max_limit = 10});
  l.add_worker(0);
  l.add_worker(1);
  EXPECT_EQ(l.total_limit(), 16);
  for (int i = 0; i < 8; ++i) l.start(key(i), 0);
  for (int i = 0; i < 100; ++i) l.on_sample(0, 800, 8);
  EXPECT_EQ(l.limit(0), 10) << "capped at max_limit";
  EXPECT_EQ(l.total_limit(), 18);
  l.remove_worker(1);
  EXPECT_EQ(l.total_limit(), 10);
  EXPECT_EQ(l.limits(), (std::map<int, int>{{0, 10}}));
}

}  // namespace
}  // namespace drover::supervisor
