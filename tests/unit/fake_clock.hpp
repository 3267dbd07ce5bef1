// FakeClock: a Clock (common/clock.hpp) that moves only when the test says so, so a test of a
// timeout, TTL or window advances time past the limit instead of sleeping through it. Starts at
// an arbitrary fixed point well clear of steady_clock's epoch, so `now - ttl` never underflows
// and runs are reproducible. One test thread; not thread-safe.
#pragma once

#include <chrono>

#include "common/clock.hpp"

namespace drover {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(time_point start = time_point(std::chrono::hours(1000))) : now_(start) {}

  time_point now() const override { return now_; }

  void advance(duration d) { now_ += d; }
  void set(time_point t) { now_ = t; }

 private:
  time_point now_;
};

}  // namespace drover
