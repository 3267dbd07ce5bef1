// LatencyHistogram: an HDR-style histogram of durations in nanoseconds with log-linear buckets:
// values below 256 ns are exact, and every power-of-two range above is split into 128 equal
// buckets, so a reported percentile is at most 1/128 (0.8 %) above the true value, for values up
// to 2^40 ns (18 minutes; longer ones share the last bucket, and the maximum stays exact). The
// 34 KiB table is allocated on first use, so an unused histogram (first-chunk latency of a
// unary run) costs nothing. Recording is a couple of shifts and an increment, so a load
// generator can afford it per request.
//
// Worked example: 1'000'000 ns (1 ms) has its top bit at 2^19, so the bucket width is
// 2^(19-7) = 4096 ns; the bucket [999'424, 1'003'520) holds it and percentiles report
// 1'003'519 ns, i.e. 1.0035 ms.
//
// One histogram per thread; merge() them after the threads have joined. Not thread-safe.
#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

namespace drover::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 7;  // 128 buckets per power of two: <= 0.8 % error
  static constexpr int kMaxValueBits = 40;  // 2^40 ns, about 18 minutes

  void record(std::chrono::nanoseconds d) {
    const std::uint64_t v = d.count() > 0 ? static_cast<std::uint64_t>(d.count()) : 0;
    if (counts_.empty()) counts_.resize(kBuckets);
    ++counts_[index_of(std::min(v, kMaxValue))];
    ++count_;
    sum_ += v;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }

  void merge(const LatencyHistogram& other) {
    if (other.count_ == 0) return;
    if (counts_.empty()) counts_.resize(kBuckets);
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t count() const { return count_; }
  std::chrono::nanoseconds min() const { return ns(count_ ? min_ : 0); }
  std::chrono::nanoseconds max() const { return ns(max_); }
  std::chrono::nanoseconds mean() const { return ns(count_ ? sum_ / count_ : 0); }

  // The smallest recorded-bucket bound that at least q of the values do not exceed
  // (q in [0, 1]); the upper edge of that bucket, capped at the exact maximum. 0 when empty.
  std::chrono::nanoseconds percentile(double q) const {
    if (count_ == 0) return ns(0);
    const double wanted = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_));
    const std::uint64_t rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      // The last bucket also holds every value beyond the range: only max_ bounds those.
      if (seen >= rank) return ns(i + 1 == kBuckets ? max_ : std::min(upper_bound_of(i), max_));
    }
    return ns(max_);
  }

 private:
  static constexpr int kSub = 1 << kSubBucketBits;
  static constexpr std::uint64_t kMaxValue = (std::uint64_t{1} << kMaxValueBits) - 1;
  // Exact range [0, 2 * kSub), then kSub buckets per power of two up to bit kMaxValueBits - 1.
  static constexpr std::size_t kBuckets = (kMaxValueBits - kSubBucketBits - 1) * kSub + 2 * kSub;

  // With e = max(0, msb(v) - kSubBucketBits), index = e * kSub + (v >> e): for e >= 1,
  // v >> e lies in [kSub, 2 * kSub), so each exponent gets its own kSub consecutive buckets.
  static std::size_t index_of(std::uint64_t v) {
    const int msb = v ? 63 - std::countl_zero(v) : 0;
    const int e = std::max(0, msb - kSubBucketBits);
    return static_cast<std::size_t>(e) * kSub + static_cast<std::size_t>(v >> e);
  }

  static std::uint64_t upper_bound_of(std::size_t index) {
    if (index < 2 * kSub) return index;
    const int e = static_cast<int>(index / kSub) - 1;
    const std::uint64_t m = index - static_cast<std::size_t>(e) * kSub;
    return ((m + 1) << e) - 1;
  }

  static std::chrono::nanoseconds ns(std::uint64_t v) {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(v));
  }

  std::vector<std::uint64_t> counts_;  // kBuckets entries once anything is recorded
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

}  // namespace drover::bench
