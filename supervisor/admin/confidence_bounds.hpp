// Confidence bounds the canary controller (rollout_controller.hpp) and the SLO engine
// (slo_engine.hpp) judge with, so neither acts on noise at low counts:
//   - a proportion (an error ratio) by the Wilson score interval, which stays inside [0, 1] and
//     is honest at small n and at k = 0 where the normal approximation is not;
//   - a quantile of a LatencyHistogram by order statistics: the q-quantile's lower bound is the
//     observation at rank n*q - z*sqrt(n*q*(1-q)) (the lower edge of its bucket), the upper
//     bound the one at rank n*q + z*sqrt(...) (the upper edge): the binomial count of
//     observations below the true quantile, so no distribution is assumed.
// `z` is the normal quantile of the one-sided confidence (3.09: 99.9 %). Pure functions.
#pragma once

#include <cstdint>

#include "supervisor/pipeline/cohort_metrics.hpp"

namespace drover::supervisor {

// Wilson score interval bounds of a proportion `k` of `n` (n = 0: 0 and 1).
double wilson_lower(std::uint64_t k, std::uint64_t n, double z);
double wilson_upper(std::uint64_t k, std::uint64_t n, double z);

// Bounds of the `q`-quantile of `h` in seconds. REQUIRES: h.count() > 0, 0 < q < 1.
double quantile_lower_s(const LatencyHistogram& h, double q, double z);
double quantile_upper_s(const LatencyHistogram& h, double q, double z);

}  // namespace drover::supervisor
