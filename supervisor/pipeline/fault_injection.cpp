#include "supervisor/pipeline/fault_injection.hpp"

namespace drover::supervisor {

bool FaultInjection::roll(double percent) {
  if (percent >= 100.0) return true;
  if (percent <= 0.0) return false;
  return std::uniform_real_distribution<double>(0.0, 100.0)(rng_) < percent;
}

FaultInjection::Decision FaultInjection::decide(const FaultInjectionConfig& c) {
  Decision d;
  if (roll(c.abort_percent)) {
    d.abort = true;
    ++aborted_;
    return d;
  }
  if (c.delay.count() > 0 && roll(c.delay_percent)) {
    d.delay = c.delay;
    ++delayed_;
  }
  return d;
}

}  // namespace drover::supervisor
