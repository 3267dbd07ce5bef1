// Clock: where a component reads the time its decisions depend on (timeouts, TTLs, windows,
// backoff), as a small interface so unit tests can drive that time with a fake clock instead of
// sleeping (tests/unit/fake_clock.hpp). Time points are std::chrono::steady_clock's, so values
// from a Clock mix with config durations and with the time points components already store.
//
// Components take a `const Clock&` at construction, defaulting to real_clock(); the reference
// must outlive them. A Clock is read on the thread of the component that holds it: the real one
// is stateless and safe anywhere, a fake one is as thread-safe as its test makes it (one thread).
//
// What stays real: asio timers (steady_timer) keep waiting in real time; a test advances its fake
// clock and calls the decision a timer would have triggered. Latency figures for metrics
// (Call's timing) are measured with std::chrono::steady_clock directly: they are observations,
// not decisions.
//
// Cost: one virtual call per now(), no allocation. Where a hot path needs the time more than
// once, read it once and pass the time point along (CircuitBreaker, PromptCache and
// PriorityQueue take `now` as an argument for that reason).
#pragma once

#include <chrono>

namespace drover {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  virtual time_point now() const = 0;

 protected:
  // Never owned or deleted through this interface (components hold a reference), so the
  // destructor need not be virtual, and SteadyClock stays trivially destructible: the shared
  // real clock below is constant-initialised and never destroyed, whatever the exit order.
  ~Clock() = default;
};

// std::chrono::steady_clock behind the interface.
class SteadyClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
};

// The process's real clock, the default for every component that takes a Clock. Stateless and
// immutable, so sharing one instance is not shared mutable state.
inline constinit const SteadyClock kSteadyClock{};
inline const Clock& real_clock() { return kSteadyClock; }

}  // namespace drover
