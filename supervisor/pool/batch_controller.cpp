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
  if (steps_fresh(now)) return false;
  return add_samples(static_cast<double>(batch_time.count()), 1, now);
}

bool BatchController::record_steps(Micros step_time, std::uint64_t steps, Clock::time_point now) {
  if (steps == 0) return false;
  if (!steps_fresh(now)) {
    // The source changes from batch times to step times: do not average the two.
    samples_ = 0;
    sample_sum_us_ = 0;
  }
  last_step_report_ = now;
  return add_samples(static_cast<double>(step_time.count()), steps, now);
}

bool BatchController::add_samples(double sample_us, std::uint64_t weight,
                                  Clock::time_point now) {
  samples_ += weight;
  sample_sum_us_ += sample_us * static_cast<double>(weight);
  if (!adaptive_ || samples_ < static_cast<std::uint64_t>(kMinSamples)) return false;
  if (last_decision_ && now - *last_decision_ < kMinInterval) return false;
  const double mean = sample_sum_us_ / static_cast<double>(samples_);
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
