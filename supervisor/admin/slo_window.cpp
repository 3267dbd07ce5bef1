#include "supervisor/admin/slo_window.hpp"

namespace drover::supervisor {

const CohortStats& SloWindow::update(const CohortStats& lifetime, Clock::time_point now) {
  if (readings_.empty() || now - readings_.back().at >= span_ / kReadings) {
    readings_.push_back({now, lifetime});
  }
  // Drop the oldest while the next one is old enough to start the window on its own.
  while (readings_.size() >= 2 && now - readings_[1].at >= span_) readings_.pop_front();
  const Reading& start = readings_.front();
  window_ = lifetime.since(start.counts);
  covered_ = now - start.at;
  return window_;
}

}  // namespace drover::supervisor
