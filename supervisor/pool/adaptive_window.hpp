// AdaptiveWindow: how long the batch queue holds a request for companions
// (batch_queue.adaptive_window), chosen from the queue depth. Owned by the pool's Batcher;
// supervisor thread only. Pure: no clock, observations are counted.
//
// Bands: depth 0-1 -> 750 us, 2-5 -> 1 ms, 6 and more -> 2 ms. A short window when traffic is
// sparse (few companions will come, so waiting buys little), a longer one when it is dense (a
// batch fills up before the window ends anyway, so the window only bounds the wait).
//
// Smoothing: each observation updates an exponential moving average (alpha kAlpha, the first
// observation seeds it); the EMA, rounded, picks a band. The window moves to a new band only
// after kHysteresis consecutive observations pick that same band, so a lone burst or gap does
// not flip it back and forth.
// Worked example (alpha 0.5): window 750 us, EMA 1. Observations 9, 9, 9: EMA 5, 7, 8 -> bands
// 2-5, 6+, 6+ — no band three times in a row yet, window stays 750 us; a fourth 9: EMA 8.5,
// band 6+ for the third time running -> 2 ms.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace drover::supervisor {

class AdaptiveWindow {
 public:
  using Micros = std::chrono::microseconds;

  static constexpr double kAlpha = 0.5;
  static constexpr int kHysteresis = 3;
  static constexpr Micros kSparse{750};   // depth 0-1
  static constexpr Micros kMedium{1000};  // depth 2-5
  static constexpr Micros kDense{2000};   // depth 6+

  // The window band for a (smoothed) depth.
  static Micros band(double depth);

  // One queue-depth observation (the batch queue observes the depth each flush carried).
  void observe(std::size_t depth);

  Micros window() const { return window_; }
  double smoothed_depth() const { return ema_; }
  std::uint64_t changes() const { return changes_; }

 private:
  Micros window_ = kSparse;
  double ema_ = 0;
  bool seeded_ = false;
  Micros candidate_ = kSparse;
  int streak_ = 0;
  std::uint64_t changes_ = 0;
};

}  // namespace drover::supervisor
