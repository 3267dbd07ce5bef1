// FaultInjection: the fault_injection stage's dice (Envoy's fault filter). For a request in
// the stage's rollout it decides, by fault_injection.abort_percent and delay_percent, whether
// the request is failed with abort_code at once, held for delay_ms first, or left alone. The
// RequestPipeline carries the decision out. Decisions are random, not by the request id, so a
// client that reuses ids still sees the configured share; a percentage of 100 is certain.
// Supervisor thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

#include "common/rollout_config.hpp"

namespace drover::supervisor {

class FaultInjection {
 public:
  struct Decision {
    bool abort = false;
    std::chrono::milliseconds delay{0};  // 0: none
  };
  explicit FaultInjection(std::uint64_t seed = std::random_device{}()) : rng_(seed) {}

  // For one request in the stage's rollout; counted.
  Decision decide(const FaultInjectionConfig& config);

  std::uint64_t aborted() const { return aborted_; }
  std::uint64_t delayed() const { return delayed_; }

 private:
  bool roll(double percent);

  std::mt19937_64 rng_;
  std::uint64_t aborted_ = 0;
  std::uint64_t delayed_ = 0;
};

}  // namespace drover::supervisor
