// SloWindow: a sliding window over lifetime request counts (RequestPipeline::totals()): the
// requests that finished within the last `span`, with their errors and latency / TTFT
// histograms, as CohortStats. The SLO engine (slo_engine.hpp) judges its objectives on it, so an
// old incident does not weigh on today and a recovery shows within one span.
//
// How: every update() keeps a reading of the lifetime counts, at most one per span / kReadings
// (so memory is bounded by kReadings copies whatever the span and the update rate), and answers
// the difference between now's counts and the newest reading at least `span` old (the oldest
// there is while droverd has run less than span). The window therefore covers between span and
// span x (1 + 1/kReadings) once droverd has run that long; seconds() says exactly how much.
// Pure: time is passed in. Supervisor thread only.
#pragma once

#include <deque>

#include "common/clock.hpp"
#include "supervisor/pipeline/cohort_metrics.hpp"

namespace drover::supervisor {

class SloWindow {
 public:
  static constexpr int kReadings = 20;

  explicit SloWindow(Clock::duration span) : span_(span) {}

  // A new span (a reload) applies from the next update; the readings kept are reused.
  void set_span(Clock::duration span) { span_ = span; }
  // Forgets every reading: the next update() starts the window afresh.
  void reset() { readings_.clear(); }

  // Takes the lifetime counts read at `now` and returns the window ending at `now`.
  // REQUIRES: `now` and the counts never go backwards between calls.
  const CohortStats& update(const CohortStats& lifetime, Clock::time_point now);

  const CohortStats& stats() const { return window_; }
  // How long the last window returned actually is.
  Clock::duration covered() const { return covered_; }

 private:
  struct Reading {
    Clock::time_point at;
    CohortStats counts;
  };
  Clock::duration span_;
  std::deque<Reading> readings_;
  CohortStats window_;
  Clock::duration covered_{};
};

}  // namespace drover::supervisor
