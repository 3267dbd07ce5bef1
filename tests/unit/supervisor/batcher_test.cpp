// Batcher: the flush decision (off, fast path, full, wait), the window it hands the links, and
// what flushes and batch times do to the controller and the statistics. Time is passed in.
#include "supervisor/pool/batcher.hpp"

#include <gtest/gtest.h>

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;
using D = Batcher::Decision;
const auto t0 = std::chrono::steady_clock::time_point() + 1000s;

BatchQueueConfig config() {
  BatchQueueConfig c;
  c.enabled = true;  // off by default
  c.max_batch_size = 4;
  c.flush_interval = 2000us;
  c.target_batch_time = 10ms;
  return c;
}

TEST(Batcher, OffSendsEveryCallAlone) {
  auto c = config();
  c.enabled = false;
  Batcher b(c);
  EXPECT_EQ(b.decide(1, 0), D::flush_alone);
  EXPECT_EQ(b.decide(3, 10), D::flush_alone);
}

TEST(Batcher, FastPathWhileFewerThanTwoBatchesAreInFlight) {
  Batcher b(config());
  EXPECT_EQ(b.decide(1, 0), D::flush_fast_path);  // a lone request never waits
  EXPECT_EQ(b.decide(1, 1), D::flush_fast_path);  // the next one travels behind the first
  EXPECT_EQ(b.decide(1, 2), D::wait);             // two batches busy: gather companions
  EXPECT_EQ(b.decide(2, 0), D::wait);             // others already wait for the window
  EXPECT_TRUE(b.flush_when_batch_done());
}

TEST(Batcher, NoFastPathWaitsEvenWhenIdle) {
  auto c = config();
  c.fast_path = false;
  Batcher b(c);
  EXPECT_EQ(b.decide(1, 0), D::wait);
  EXPECT_FALSE(b.flush_when_batch_done());
}

TEST(Batcher, FlushesWhenTheBatchIsFull) {
  Batcher b(config());
  EXPECT_EQ(b.decide(3, 5), D::wait);
  EXPECT_EQ(b.decide(4, 5), D::flush_full);
}

TEST(Batcher, WindowIsAdaptiveOrTheFlushInterval) {
  auto c = config();
  Batcher adaptive(c);
  EXPECT_EQ(adaptive.window(t0), 750us);
  for (int i = 0; i < 3; ++i) adaptive.on_flush(8, 0, Batcher::FlushCause::full);
  EXPECT_EQ(adaptive.window(t0), 2000us);
  c.adaptive_window = false;
  Batcher fixed(c);
  EXPECT_EQ(fixed.window(t0), 2000us);
}

// Issue 17: a worker's step reports cap the window at one step while they are fresh, and drive
// the size instead of batch times (which, for generates, measure generation length).
TEST(Batcher, AWorkersStepTimeCapsTheWindowAndDrivesTheSize) {
  auto c = config();
  c.adaptive_window = false;  // 2 ms
  Batcher b(c);
  b.on_worker_steps(1500us, 200, t0);  // 0.15x the 10 ms target
  EXPECT_EQ(b.window(t0 + 1s), 1500us) << "held longer than a step, a call misses one";
  EXPECT_EQ(b.size(), 6);  // 4 x 1.5
  // Batch times of 10x the target do not count while steps are reported...
  for (int i = 0; i < 20; ++i) b.on_batch_done(100ms, t0 + 2s);
  EXPECT_EQ(b.size(), 6);
  b.on_worker_steps(10ms, 50, t0 + 3s);  // on target (size kept), longer than the window
  EXPECT_EQ(b.window(t0 + 3s), 2000us);
  EXPECT_EQ(b.size(), 6);
  const auto s = b.stats({0, 0, 0}, t0 + 3s);
  EXPECT_EQ(s["size_source"], "worker_steps");
  EXPECT_DOUBLE_EQ(s["worker_step_ms"].get<double>(), 10.0);
  EXPECT_EQ(s["worker_step_reports"], 2);
  // ...and do again once reports stop: the window is uncapped and batch times size.
  const auto later = t0 + 3s + BatchController::kStepReportTtl;
  b.on_worker_steps(1ms, 0, later);  // an idle worker's heartbeat: no steps, no report
  EXPECT_EQ(b.window(later), 2000us);
  EXPECT_EQ(b.stats({0, 0, 0}, later)["size_source"], "batch_time");
  for (int i = 0; i < 10; ++i) b.on_batch_done(100ms, later);
  EXPECT_EQ(b.size(), 4);  // 6 x 0.7 = 4.2
}

TEST(Batcher, BatchTimesDriveTheSize) {
  Batcher b(config());
  for (int i = 0; i < 10; ++i) b.on_batch_done(2ms, t0);  // 0.2x target
  EXPECT_EQ(b.size(), 6);                                 // 4 x 1.5
  b.update_targets(std::nullopt, 40);
  EXPECT_EQ(b.size(), 40);
  b.update_targets(1ms, std::nullopt);
  for (int i = 0; i < 10; ++i) b.on_batch_done(2ms, t0 + 1s);  // 2x the new target
  EXPECT_EQ(b.size(), 28);                                     // 40 x 0.7
}

TEST(Batcher, StatsSummariseFlushesAndBatchTimes) {
  Batcher b(config());
  b.on_flush(1, 0, Batcher::FlushCause::fast_path);
  b.on_flush(4, 3, Batcher::FlushCause::full);
  b.on_flush(1, 0, Batcher::FlushCause::window);
  for (int i = 1; i <= 100; ++i) b.on_batch_done(std::chrono::microseconds(i * 100), t0);
  const auto s = b.stats({1, 2, 3}, t0);
  EXPECT_EQ(s["flushes"], 3);
  EXPECT_EQ(s["requests"], 6);
  EXPECT_DOUBLE_EQ(s["mean_batch_size"].get<double>(), 2.0);
  EXPECT_EQ(s["flush_causes"]["fast_path"], 1);
  EXPECT_EQ(s["flush_causes"]["full"], 1);
  EXPECT_EQ(s["flush_causes"]["window"], 1);
  EXPECT_EQ(s["tokenize_texts_merged"], 3);
  EXPECT_EQ(s["batch_time"]["count"], 100);
  EXPECT_DOUBLE_EQ(s["batch_time"]["p50_ms"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(s["batch_time"]["p99_ms"].get<double>(), 9.9);
  EXPECT_DOUBLE_EQ(s["batch_time"]["max_ms"].get<double>(), 10.0);
  EXPECT_EQ(s["queue_depth"]["high"], 1);
  EXPECT_EQ(s["queue_depth"]["low"], 3);
  EXPECT_EQ(s["size_source"], "batch_time");
  // The first ten batch times (0.1..1 ms, far below the 10 ms target) grew the size 4 -> 6.
  EXPECT_EQ(s["size"], 6);
}

TEST(Batcher, ReloadKeepsALearntSizeUnlessTheFileChangesIt) {
  auto c = config();
  Batcher b(c);
  for (int i = 0; i < 10; ++i) b.on_batch_done(2ms, t0);
  ASSERT_EQ(b.size(), 6);
  b.reconfigure(c);
  EXPECT_EQ(b.size(), 6);
  c.max_batch_size = 9;
  b.reconfigure(c);
  EXPECT_EQ(b.size(), 9);
}

}  // namespace
}  // namespace drover::supervisor
