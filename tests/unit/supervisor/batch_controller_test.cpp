// BatchController: every sizing rule, the sample and rate limits and the bounds, on a fake
// clock (time points passed in).
#include "supervisor/pool/batch_controller.hpp"

#include <gtest/gtest.h>

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;
using Micros = std::chrono::microseconds;
const auto t0 = std::chrono::steady_clock::time_point() + 1000s;

// Feeds `n` samples of `each` at `at`; returns what the last record() said.
bool feed(BatchController& c, int n, Micros each, std::chrono::steady_clock::time_point at) {
  bool changed = false;
  for (int i = 0; i < n; ++i) changed = c.record(each, at);
  return changed;
}

TEST(BatchController, AboveOnePointFiveTargetShrinksBySevenTenths) {
  BatchController c(20, 10ms, true);
  EXPECT_TRUE(feed(c, 10, 16ms, t0));
  EXPECT_EQ(c.size(), 14);  // 20 x 0.7
}

TEST(BatchController, AboveOnePointTwoTargetShrinksByEightyFivePercent) {
  BatchController c(20, 10ms, true);
  feed(c, 10, 13ms, t0);
  EXPECT_EQ(c.size(), 17);  // 20 x 0.85
}

TEST(BatchController, BelowHalfTargetGrowsByHalf) {
  BatchController c(20, 10ms, true);
  feed(c, 10, 4ms, t0);
  EXPECT_EQ(c.size(), 30);  // 20 x 1.5
}

TEST(BatchController, BelowEightTenthsTargetGrowsByFifteenPercent) {
  BatchController c(20, 10ms, true);
  feed(c, 10, 7ms, t0);
  EXPECT_EQ(c.size(), 23);  // 20 x 1.15
}

TEST(BatchController, NearTargetKeepsTheSize) {
  BatchController c(20, 10ms, true);
  EXPECT_FALSE(feed(c, 10, 10ms, t0));
  feed(c, 10, 11'900us, t0 + 2s);  // 1.19x: not above 1.2
  feed(c, 10, 8ms, t0 + 4s);       // 0.8x: not below 0.8
  EXPECT_EQ(c.size(), 20);
  EXPECT_EQ(c.adjustments(), 0u);
}

TEST(BatchController, ThresholdsCompareTheMeanOfTheWindow) {
  BatchController c(20, 10ms, true);
  // Nine fast samples and one slow one: mean 5.9 ms = 0.59x -> x1.15, not x1.5 nor a shrink.
  feed(c, 9, 5ms, t0);
  c.record(14ms, t0);
  EXPECT_EQ(c.size(), 23);
}

TEST(BatchController, NeedsTenSamples) {
  BatchController c(20, 10ms, true);
  EXPECT_FALSE(feed(c, 9, 30ms, t0));
  EXPECT_EQ(c.size(), 20);
  EXPECT_TRUE(c.record(30ms, t0));
  EXPECT_EQ(c.size(), 14);
}

TEST(BatchController, AdjustsAtMostOncePerSecond) {
  BatchController c(20, 10ms, true);
  feed(c, 10, 30ms, t0);
  ASSERT_EQ(c.size(), 14);
  // Plenty of slow samples within the same second change nothing...
  EXPECT_FALSE(feed(c, 50, 30ms, t0 + 999ms));
  EXPECT_EQ(c.size(), 14);
  // ...the first one a second after the last decision does.
  EXPECT_TRUE(c.record(30ms, t0 + 1s));
  EXPECT_EQ(c.size(), 10);  // 14 x 0.7 = 9.8
}

TEST(BatchController, WorkedExampleFromTheHeader) {
  BatchController c(20, 10ms, true);
  feed(c, 10, 16ms, t0);
  EXPECT_EQ(c.size(), 14);
  feed(c, 10, 13ms, t0 + 1s);
  EXPECT_EQ(c.size(), 12);  // 11.9
  feed(c, 10, 4ms, t0 + 2s);
  EXPECT_EQ(c.size(), 18);  // 17.85
}

TEST(BatchController, StaysWithinOneAndHundred) {
  BatchController low(2, 10ms, true);
  for (int s = 0; s < 10; ++s) feed(low, 10, 1s, t0 + std::chrono::seconds(s));
  EXPECT_EQ(low.size(), 1);
  BatchController high(80, 10ms, true);
  for (int s = 0; s < 10; ++s) feed(high, 10, 1ms, t0 + std::chrono::seconds(s));
  EXPECT_EQ(high.size(), 100);
  EXPECT_EQ(BatchController(500, 10ms, true).size(), 100);
  EXPECT_EQ(BatchController(0, 10ms, true).size(), 1);
}

TEST(BatchController, ClimbsBackFromOne) {
  // x1.15 from 1 must not round back to 1 forever: the size is kept as a real number.
  BatchController c(1, 10ms, true);
  for (int s = 0; s < 3; ++s) feed(c, 10, 7ms, t0 + std::chrono::seconds(s));
  EXPECT_EQ(c.size(), 2);  // 1.52
}

TEST(BatchController, NotAdaptiveKeepsTheConfiguredSize) {
  BatchController c(20, 10ms, false);
  EXPECT_FALSE(feed(c, 100, 50ms, t0));
  EXPECT_EQ(c.size(), 20);
}

TEST(BatchController, OperatorSizeRestartsTheSampleWindow) {
  BatchController c(20, 10ms, true);
  feed(c, 9, 30ms, t0);
  c.set_size(40);
  EXPECT_FALSE(c.record(30ms, t0));  // one sample since the change, not ten
  EXPECT_EQ(c.size(), 40);
  c.set_target(40ms);
  feed(c, 8, 30ms, t0);  // nine samples since the change
  EXPECT_EQ(c.size(), 40);
  c.record(30ms, t0);       // the tenth: 30 ms is 0.75x the new target
  EXPECT_EQ(c.size(), 46);  // 40 x 1.15
}

// Issue 17: a continuously batching worker's step reports replace batch times as samples.
TEST(BatchController, WorkerStepReportsCountAsManySamplesAsSteps) {
  BatchController c(20, 10ms, true);
  // One heartbeat covering 200 steps of 4 ms (0.4x): enough samples for a decision at once.
  EXPECT_TRUE(c.record_steps(4ms, 200, t0));
  EXPECT_EQ(c.size(), 30);  // 20 x 1.5
  EXPECT_TRUE(c.record_steps(16ms, 150, t0 + 1s));
  EXPECT_EQ(c.size(), 21);  // 30 x 0.7
  // A report of fewer steps than kMinSamples waits for more, as batch times do.
  EXPECT_FALSE(c.record_steps(30ms, 5, t0 + 3s));
  EXPECT_EQ(c.size(), 21);
  EXPECT_TRUE(c.record_steps(30ms, 5, t0 + 3s));
  EXPECT_EQ(c.size(), 15);  // 21 x 0.7 = 14.7
}

TEST(BatchController, BatchTimesAreIgnoredWhileStepReportsAreFresh) {
  BatchController c(20, 10ms, true);
  c.record_steps(10ms, 20, t0);  // on target: unchanged, and steps now drive the size
  EXPECT_TRUE(c.steps_fresh(t0 + 1s));
  EXPECT_FALSE(feed(c, 50, 100ms, t0 + 2s));  // a generate flush: 10x target, ignored
  EXPECT_EQ(c.size(), 20);
  // kStepReportTtl without a report: batch times count again.
  const auto stale = t0 + BatchController::kStepReportTtl;
  EXPECT_FALSE(c.steps_fresh(stale));
  EXPECT_TRUE(feed(c, 10, 100ms, stale));
  EXPECT_EQ(c.size(), 14);  // 20 x 0.7
}

TEST(BatchController, SwitchingToStepReportsDropsTheBatchTimeSamples) {
  BatchController c(20, 10ms, true);
  feed(c, 9, 100ms, t0);  // nine slow batch times, one short of a decision
  // The first step report starts a new window: its 10 samples at 0.3x decide alone.
  EXPECT_TRUE(c.record_steps(3ms, 10, t0 + 2s));
  EXPECT_EQ(c.size(), 30);
  EXPECT_FALSE(c.record_steps(3ms, 0, t0 + 4s)) << "a report of no steps is not a sample";
}

}  // namespace
}  // namespace drover::supervisor
