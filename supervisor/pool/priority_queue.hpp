// PriorityQueue: the pool's queue of calls waiting for a worker, in three lanes (high, normal,
// low) with aging (batch_queue.priority_queue). Owned by WorkerPool; supervisor thread only.
// Pure: the time an entry started waiting and the current time are passed in.
//
// Order rule. Each lane is FIFO. An entry's effective lane is its own lane moved up one for
// every aging step it has waited (batch_queue.priority_aging_ms, default kAgingStep = 100 ms;
// never above high). pop() takes, among the three lane heads,
// the one with the best effective lane; ties go to the entry queued first.
//  - high is never starved behind low: a low entry only goes before a high one once it counts
//    as high, and then only if it was queued earlier — so a high request waits at most for
//    entries older than itself.
//  - low is not starved forever: after 2 x kAgingStep it competes as high, first come first
//    served, whatever keeps arriving.
// Worked example (step 100 ms): at t=0 low L1 is queued; at t=50 ms high H1 and normal N1.
// pop at t=60: L1 counts as low, H1 as high -> H1. pop at t=210: L1 has waited 210 ms -> high;
// N1 waited 160 ms -> high; tie, L1 was queued first -> L1, then N1.
// With priorities off every entry goes to the normal lane: plain FIFO.
//
// push_front() is for calls coming back (a retry, a model load finished): they go before
// everything else of their lane and keep their original waiting time.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>

#include "proto/client_params.hpp"

namespace drover::supervisor {

using proto::Priority;

template <typename T>
class PriorityQueue {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr Clock::duration kAgingStep = std::chrono::milliseconds(100);

  explicit PriorityQueue(bool enabled = true, Clock::duration aging_step = kAgingStep)
      : enabled_(enabled), aging_step_(aging_step) {}

  void set_enabled(bool enabled) { enabled_ = enabled; }
  void set_aging_step(Clock::duration step) { aging_step_ = step; }
  bool enabled() const { return enabled_; }

  void push_back(T value, Priority p, Clock::time_point since) {
    lane(p).push_back(Entry{std::move(value), since, next_back_++});
  }
  void push_front(T value, Priority p, Clock::time_point since) {
    lane(p).push_front(Entry{std::move(value), since, next_front_--});
  }

  bool empty() const { return size() == 0; }
  std::size_t size() const { return lanes_[0].size() + lanes_[1].size() + lanes_[2].size(); }
  // Entries waiting in one lane (the lane they were queued in, not their aged one).
  std::size_t depth(Priority p) const { return lanes_[index(p)].size(); }

  // The entry pop() would take now. REQUIRES: !empty().
  T& front(Clock::time_point now) { return lanes_[pick(now)].front().value; }
  // Removes and returns the next entry by the order rule. REQUIRES: !empty().
  T pop(Clock::time_point now) {
    auto& l = lanes_[pick(now)];
    T value = std::move(l.front().value);
    l.pop_front();
    return value;
  }

  // Removes the first entry equal to `value`; false when there is none.
  bool erase(const T& value) {
    for (auto& l : lanes_) {
      const auto it =
          std::find_if(l.begin(), l.end(), [&](const Entry& e) { return e.value == value; });
      if (it != l.end()) {
        l.erase(it);
        return true;
      }
    }
    return false;
  }
  // Removes every entry for which `drop` returns true.
  void erase_if(const std::function<bool(const T&)>& drop) {
    for (auto& l : lanes_) std::erase_if(l, [&](const Entry& e) { return drop(e.value); });
  }
  // Empties the queue, calling `f` on every entry (lane by lane, high first).
  void drain(const std::function<void(T&)>& f) {
    for (auto& l : lanes_) {
      auto taken = std::move(l);
      l.clear();
      for (auto& e : taken) f(e.value);
    }
  }

 private:
  struct Entry {
    T value;
    Clock::time_point since;
    std::int64_t seq;  // queue order: push_front entries get ever smaller numbers
  };

  static std::size_t index(Priority p) {
    switch (p) {
      case Priority::high:
        return 0;
      case Priority::normal:
        return 1;
      case Priority::low:
        return 2;
    }
    return 1;
  }
  std::deque<Entry>& lane(Priority p) { return lanes_[enabled_ ? index(p) : 1]; }

  std::size_t pick(Clock::time_point now) const {
    std::optional<std::size_t> best;
    std::int64_t best_rank = 0;
    for (std::size_t i = 0; i < lanes_.size(); ++i) {
      if (lanes_[i].empty()) continue;
      const Entry& e = lanes_[i].front();
      const auto waited = now > e.since ? now - e.since : Clock::duration::zero();
      const auto steps = aging_step_.count() > 0 ? waited / aging_step_ : 0;
      const std::int64_t rank = std::max<std::int64_t>(static_cast<std::int64_t>(i) - steps, 0);
      if (!best || rank < best_rank || (rank == best_rank && e.seq < lanes_[*best].front().seq)) {
        best = i;
        best_rank = rank;
      }
    }
    return *best;
  }

  bool enabled_;
  Clock::duration aging_step_;
  std::array<std::deque<Entry>, 3> lanes_;
  std::int64_t next_back_ = 0;
  std::int64_t next_front_ = -1;
};

}  // namespace drover::supervisor
