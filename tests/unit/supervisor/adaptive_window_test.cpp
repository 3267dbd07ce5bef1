// AdaptiveWindow: bands, EMA smoothing and the 3-observation hysteresis (no clock involved).
#include "supervisor/pool/adaptive_window.hpp"

#include <gtest/gtest.h>

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;

TEST(AdaptiveWindow, BandsByDepth) {
  EXPECT_EQ(AdaptiveWindow::band(0), 750us);
  EXPECT_EQ(AdaptiveWindow::band(1), 750us);
  EXPECT_EQ(AdaptiveWindow::band(2), 1000us);
  EXPECT_EQ(AdaptiveWindow::band(5), 1000us);
  EXPECT_EQ(AdaptiveWindow::band(6), 2000us);
  EXPECT_EQ(AdaptiveWindow::band(100), 2000us);
  EXPECT_EQ(AdaptiveWindow::band(1.4), 750us);  // a smoothed depth rounds to its band
  EXPECT_EQ(AdaptiveWindow::band(5.6), 2000us);
}

TEST(AdaptiveWindow, StartsSparse) { EXPECT_EQ(AdaptiveWindow().window(), 750us); }

TEST(AdaptiveWindow, MovesOnlyAfterThreeObservationsAgree) {
  AdaptiveWindow w;
  w.observe(3);  // seeds the EMA at 3: band 2-5, once
  EXPECT_EQ(w.window(), 750us);
  w.observe(3);  // twice
  EXPECT_EQ(w.window(), 750us);
  w.observe(3);  // three times in a row
  EXPECT_EQ(w.window(), 1000us);
  EXPECT_EQ(w.changes(), 1u);
}

TEST(AdaptiveWindow, ALoneBurstDoesNotFlipIt) {
  AdaptiveWindow w;
  for (int i = 0; i < 5; ++i) w.observe(1);
  w.observe(20);  // EMA 10.5 -> 6+, once
  w.observe(1);   // EMA 5.75 -> 6+, twice
  w.observe(1);   // EMA 3.375 -> 2-5: the streak for 6+ is broken
  w.observe(1);   // EMA 2.19 -> 2-5, twice
  w.observe(1);   // EMA 1.59 -> 2 -> 2-5, three times
  EXPECT_EQ(w.window(), 1000us);
  w.observe(1);  // EMA 1.30 -> 0-1: back towards sparse, once
  EXPECT_EQ(w.window(), 1000us);
  EXPECT_EQ(w.changes(), 1u);
}

TEST(AdaptiveWindow, WorkedExampleFromTheHeader) {
  AdaptiveWindow w;
  w.observe(1);
  w.observe(9);  // EMA 5 -> 2-5
  w.observe(9);  // 7 -> 6+
  w.observe(9);  // 8 -> 6+
  EXPECT_EQ(w.window(), 750us);
  w.observe(9);  // 8.5 -> 6+, third in a row
  EXPECT_EQ(w.window(), 2000us);
  EXPECT_DOUBLE_EQ(w.smoothed_depth(), 8.5);
}

TEST(AdaptiveWindow, ReturnsToSparseWhenTrafficThins) {
  AdaptiveWindow w;
  for (int i = 0; i < 6; ++i) w.observe(10);
  ASSERT_EQ(w.window(), 2000us);
  int steps = 0;
  while (w.window() != 750us && steps < 50) {
    w.observe(0);
    ++steps;
  }
  EXPECT_EQ(w.window(), 750us);
  EXPECT_GE(steps, 3);  // never before three observations
}

}  // namespace
}  // namespace drover::supervisor
