// CohortMetrics: for each stage with a rollout, the requests inside it (the canary cohort) and
// outside it (the baseline cohort) side by side: count, errors by code, latency and time to
// first token. What the canary controller (supervisor/admin/rollout_controller.hpp) compares, and
// what operators see in telemetry.metrics (`pipeline.cohorts`) and as Prometheus families
// labelled `stage` and `cohort`.
//
// A request's cohort is the stage's hash decision (FeatureFlags::cohorts), taken when the request
// is admitted, whether or not the stage then had anything to do for it (a non-deterministic
// generate is in the prompt cache's canary cohort if its id hashes in): the comparison is
// "intent to treat", so neither cohort is selected by what the stage did.
//
// A stage is tracked while its percentage is strictly between 0 and 100 or the controller
// ramps it (set_controlled); others are not recorded (there is nothing to compare).
//
// Cost per finished request, per tracked stage: a few integer increments, one log2 per
// histogram, and one observe into a Prometheus histogram child looked up once. No allocation
// after a child's first use. Supervisor thread only (the Prometheus children are atomics).
#pragma once

#include <array>
#include <cstdint>

#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "proto/jsonrpc.hpp"
#include "supervisor/pipeline/feature_flags.hpp"
#include "supervisor/pool/call.hpp"

namespace drover::supervisor {

// Durations in log-spaced buckets, 8 per doubling of microseconds (each about 9 % wide), so a
// quantile is known to within one bucket; bucket 0 holds everything below 1 us.
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 256;
  void observe(Clock::duration d);
  std::uint64_t count() const { return count_; }
  std::uint64_t bucket(int i) const { return buckets_[static_cast<std::size_t>(i)]; }
  // Edges of bucket i in seconds.
  static double lower_edge_s(int i);
  static double upper_edge_s(int i);
  // The bucket of the rank-th smallest observation (1-based); REQUIRES 1 <= rank <= count().
  int bucket_at_rank(std::uint64_t rank) const;
  // The q-quantile in seconds: the upper edge of the bucket of rank ceil(q * count) (an upper
  // estimate within one bucket). REQUIRES: count() > 0.
  double quantile_s(double q) const;
  // This histogram's observations since `earlier` (a copy taken before).
  LatencyHistogram since(const LatencyHistogram& earlier) const;

 private:
  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
};

// The error codes counted one by one; anything else counts as "other".
inline constexpr std::array<int, 11> kCohortErrorCodes = {
    -32001, -32002, -32003, -32004, -32005, -32006, -32007, -32008, -32009, -32010, -32603};

struct CohortStats {
  std::uint64_t requests = 0;
  // Answered with an error (a cancel is not an error: the client asked for it).
  std::uint64_t errors = 0;
  // Failed because workers died under them (-32003): the crash trigger's count.
  std::uint64_t crashes = 0;
  std::array<std::uint64_t, kCohortErrorCodes.size() + 1> errors_by_code{};  // + other
  LatencyHistogram latency;  // every finished request
  LatencyHistogram ttft;     // requests that got output from a worker

  // Counts one finished request.
  void add(const CallOutcome& o);
  CohortStats since(const CohortStats& earlier) const;
};

class CohortMetrics {
 public:
  CohortMetrics() = default;
  CohortMetrics(const CohortMetrics&) = delete;
  CohortMetrics& operator=(const CohortMetrics&) = delete;

  // One finished request: `mask` its cohorts, `percents` the stages' current percentages.
  void record(CohortMask mask, const std::array<int, kStageCount>& percents, const CallOutcome& o);
  // Stages the controller ramps are tracked whatever their percentage (0 and 100 included).
  void set_controlled(CohortMask stages) { controlled_ = stages; }

  const CohortStats& stats(Stage stage, bool canary) const {
    return stats_[static_cast<std::size_t>(stage)][canary ? 1 : 0];
  }

  // {STAGE: {canary: {...}, baseline: {...}}} for the stages that have recorded requests.
  proto::json telemetry() const;
  // Declares the drover_cohort_* families. REQUIRES: `registry` outlives this object's use.
  void register_metrics(metrics::Registry& registry);

 private:
  struct Exported {
    metrics::Histogram* latency = nullptr;
    metrics::Histogram* ttft = nullptr;
  };
  Exported& exported(std::size_t stage, int cohort);

  std::array<std::array<CohortStats, 2>, kStageCount> stats_{};
  CohortMask controlled_ = 0;
  metrics::Family<metrics::Counter>* requests_family_ = nullptr;
  metrics::Family<metrics::Counter>* errors_family_ = nullptr;
  metrics::Family<metrics::Histogram>* latency_family_ = nullptr;
  metrics::Family<metrics::Histogram>* ttft_family_ = nullptr;
  std::array<std::array<Exported, 2>, kStageCount> exported_{};
};

}  // namespace drover::supervisor
