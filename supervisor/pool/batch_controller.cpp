#include "supervisor/pool/batch_controller.hpp"

#include <algorithm>
#include <cmath>

namespace drover::supervisor {

BatchController::BatchController(int initial_size, Micros target, bool adaptive)
    : size_(std::clamp(initial_size, kMinSize, kMaxSize)), target_(target), adaptive_(adaptive) {}

int BatchController::size() const {
  return std::clamp(static_cast<int>(std::lround(size_)), kMinSize, kMaxSize);
}

void BatchController::set_size(int size) {
  size_ = std::clamp(size, kMinSize, kMaxSize);
  samples_ = 0;
  sample_sum_us_ = 0;
}

bool BatchController::record(Micros batch_time, Clock::time_point now) {
  ++samples_;
  sample_sum_us_ += static_cast<double>(batch_time.count());
  if (!adaptive_ || samples_ < kMinSamples) return false;
  if (last_decision_ && now - *last_decision_ < kMinInterval) return false;
  const double mean = sample_sum_us_ / samples_;
  const double target = static_cast<double>(std::max<Micros::rep>(target_.count(), 1));
  double factor = 1.0;
  if (mean > 1.5 * target) {
    factor = 0.7;
  } else if (mean > 1.2 * target) {
    factor = 0.85;
  } else if (mean < 0.5 * target) {
    factor = 1.5;
  } else if (mean < 0.8 * target) {
    factor = 1.15;
  }
  last_decision_ = now;
  samples_ = 0;
  sample_sum_us_ = 0;
  const int before = size();
  size_ = std::clamp(size_ * factor, static_cast<double>(kMinSize), static_cast<double>(kMaxSize));
  if (size() == before) return false;
  ++adjustments_;
  return true;
}

}  // namespace drover::supervisor
