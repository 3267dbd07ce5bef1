#include "supervisor/pool/adaptive_window.hpp"

#include <cmath>

namespace drover::supervisor {

AdaptiveWindow::Micros AdaptiveWindow::band(double depth) {
  const long d = std::lround(depth);
  if (d <= 1) return kSparse;
  if (d <= 5) return kMedium;
  return kDense;
}

void AdaptiveWindow::observe(std::size_t depth) {
  const double d = static_cast<double>(depth);
  ema_ = seeded_ ? kAlpha * d + (1.0 - kAlpha) * ema_ : d;
  seeded_ = true;
  const Micros wanted = band(ema_);
  if (wanted == window_) {
    streak_ = 0;
    return;
  }
  streak_ = wanted == candidate_ ? streak_ + 1 : 1;
  candidate_ = wanted;
  if (streak_ >= kHysteresis) {
    window_ = wanted;
    streak_ = 0;
    ++changes_;
  }
}

}  // namespace drover::supervisor
