#include "supervisor/admin/confidence_bounds.hpp"

#include <algorithm>
#include <cmath>

namespace drover::supervisor {

double wilson_lower(std::uint64_t k, std::uint64_t n, double z) {
  if (n == 0) return 0.0;
  const double nn = static_cast<double>(n), p = static_cast<double>(k) / nn, z2 = z * z;
  const double centre = p + z2 / (2 * nn);
  const double spread = z * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
  return std::max(0.0, (centre - spread) / (1 + z2 / nn));
}

double wilson_upper(std::uint64_t k, std::uint64_t n, double z) {
  if (n == 0) return 1.0;
  const double nn = static_cast<double>(n), p = static_cast<double>(k) / nn, z2 = z * z;
  const double centre = p + z2 / (2 * nn);
  const double spread = z * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
  return std::min(1.0, (centre + spread) / (1 + z2 / nn));
}

double quantile_lower_s(const LatencyHistogram& h, double q, double z) {
  const double n = static_cast<double>(h.count());
  const double rank = std::floor(n * q - z * std::sqrt(n * q * (1 - q)));
  const auto r = static_cast<std::uint64_t>(std::max(1.0, rank));
  return LatencyHistogram::lower_edge_s(h.bucket_at_rank(r));
}

double quantile_upper_s(const LatencyHistogram& h, double q, double z) {
  const double n = static_cast<double>(h.count());
  const double rank = std::ceil(n * q + z * std::sqrt(n * q * (1 - q)));
  const auto r = static_cast<std::uint64_t>(std::min(n, std::max(1.0, rank)));
  return LatencyHistogram::upper_edge_s(h.bucket_at_rank(r));
}

}  // namespace drover::supervisor
