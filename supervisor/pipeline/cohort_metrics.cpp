#include "supervisor/pipeline/cohort_metrics.hpp"

#include <cmath>
#include <string>

namespace drover::supervisor {
namespace {

constexpr int kPerOctave = 8;

const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                            0.5,   1,      2.5,   5,    10,    30,   60,  300};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

const char* cohort_name(int cohort) { return cohort == 1 ? "canary" : "baseline"; }

proto::json histogram_json(const LatencyHistogram& h) {
  if (h.count() == 0) return {{"count", 0}, {"p50_s", nullptr}, {"p95_s", nullptr}};
  return {{"count", h.count()}, {"p50_s", h.quantile_s(0.5)}, {"p95_s", h.quantile_s(0.95)}};
}

}  // namespace

void LatencyHistogram::observe(Clock::duration d) {
  const double us = std::chrono::duration<double, std::micro>(d).count();
  int i = 0;
  if (us >= 1.0) i = std::min(kBuckets - 1, 1 + static_cast<int>(std::log2(us) * kPerOctave));
  ++buckets_[static_cast<std::size_t>(i)];
  ++count_;
}

// Bucket i >= 1 holds [2^((i-1)/8), 2^(i/8)) microseconds.
double LatencyHistogram::lower_edge_s(int i) {
  return i <= 0 ? 0.0 : std::exp2(static_cast<double>(i - 1) / kPerOctave) * 1e-6;
}

double LatencyHistogram::upper_edge_s(int i) {
  return std::exp2(static_cast<double>(i) / kPerOctave) * 1e-6;
}

int LatencyHistogram::bucket_at_rank(std::uint64_t rank) const {
  std::uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[static_cast<std::size_t>(i)];
    if (seen >= rank) return i;
  }
  return kBuckets - 1;
}

double LatencyHistogram::quantile_s(double q) const {
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  return upper_edge_s(bucket_at_rank(std::max<std::uint64_t>(rank, 1)));
}

LatencyHistogram LatencyHistogram::since(const LatencyHistogram& earlier) const {
  LatencyHistogram d;
  for (std::size_t i = 0; i < buckets_.size(); ++i) d.buckets_[i] = buckets_[i] - earlier.buckets_[i];
  d.count_ = count_ - earlier.count_;
  return d;
}

CohortStats CohortStats::since(const CohortStats& e) const {
  CohortStats d;
  d.requests = requests - e.requests;
  d.errors = errors - e.errors;
  d.crashes = crashes - e.crashes;
  for (std::size_t i = 0; i < errors_by_code.size(); ++i) {
    d.errors_by_code[i] = errors_by_code[i] - e.errors_by_code[i];
  }
  d.latency = latency.since(e.latency);
  d.ttft = ttft.since(e.ttft);
  return d;
}

void CohortStats::add(const CallOutcome& o) {
  ++requests;
  if (o.code != 0 && !o.cancelled) {
    ++errors;
    std::size_t code_index = kCohortErrorCodes.size();
    for (std::size_t i = 0; i < kCohortErrorCodes.size(); ++i) {
      if (kCohortErrorCodes[i] == o.code) code_index = i;
    }
    ++errors_by_code[code_index];
    if (o.code == code_of(RpcError::worker_failed)) ++crashes;
  }
  latency.observe(o.total);
  if (o.ttft) ttft.observe(*o.ttft);
}

void CohortMetrics::record(CohortMask mask, const std::array<int, kStageCount>& percents,
                           const CallOutcome& o) {
  for (std::size_t s = 0; s < kStageCount; ++s) {
    const CohortMask bit = cohort_bit(static_cast<Stage>(s));
    const bool partial = percents[s] > 0 && percents[s] < 100;
    if (!partial && (controlled_ & bit) == 0) continue;
    const int cohort = (mask & bit) ? 1 : 0;
    stats_[s][static_cast<std::size_t>(cohort)].add(o);
    if (latency_family_ != nullptr) {
      Exported& e = exported(s, cohort);
      e.latency->observe(seconds(o.total));
      if (o.ttft) e.ttft->observe(seconds(*o.ttft));
    }
  }
}

CohortMetrics::Exported& CohortMetrics::exported(std::size_t stage, int cohort) {
  Exported& e = exported_[stage][static_cast<std::size_t>(cohort)];
  if (e.latency == nullptr) {  // first request of this stage and cohort: look the children up once
    const std::string name(stage_name(static_cast<Stage>(stage)));
    e.latency = &latency_family_->with({name, cohort_name(cohort)});
    e.ttft = &ttft_family_->with({name, cohort_name(cohort)});
  }
  return e;
}

proto::json CohortMetrics::telemetry() const {
  proto::json out = proto::json::object();
  for (std::size_t s = 0; s < kStageCount; ++s) {
    if (stats_[s][0].requests + stats_[s][1].requests == 0) continue;
    proto::json stage = proto::json::object();
    for (int c = 0; c < 2; ++c) {
      const CohortStats& st = stats_[s][static_cast<std::size_t>(c)];
      proto::json by_code = proto::json::object();
      for (std::size_t i = 0; i < st.errors_by_code.size(); ++i) {
        if (st.errors_by_code[i] == 0) continue;
        by_code[i < kCohortErrorCodes.size() ? std::to_string(kCohortErrorCodes[i]) : "other"] =
            st.errors_by_code[i];
      }
      stage[cohort_name(c)] = {{"requests_total", st.requests},
                               {"errors_total", st.errors},
                               {"errors_by_code", std::move(by_code)},
                               {"latency", histogram_json(st.latency)},
                               {"ttft", histogram_json(st.ttft)}};
    }
    out[std::string(stage_name(static_cast<Stage>(s)))] = std::move(stage);
  }
  return out;
}

void CohortMetrics::register_metrics(metrics::Registry& r) {
  requests_family_ = &r.counter("drover_cohort_requests_total",
                                "Requests finished, by pipeline stage and cohort (canary: in the "
                                "stage's rollout; baseline: out of it).",
                                {"stage", "cohort"});
  errors_family_ = &r.counter("drover_cohort_errors_total",
                              "Requests answered with an error, by stage, cohort and JSON-RPC "
                              "code (cancels are not errors).",
                              {"stage", "cohort", "code"});
  latency_family_ = &r.histogram("drover_cohort_request_duration_seconds",
                                 "Time from accepting a request to answering it, by stage and "
                                 "cohort.",
                                 {"stage", "cohort"}, kLatencyBounds);
  ttft_family_ = &r.histogram("drover_cohort_ttft_seconds",
                              "Time from accepting a request to its first output from a worker, "
                              "by stage and cohort.",
                              {"stage", "cohort"}, kLatencyBounds);
  r.add_collect_hook([this] {
    for (std::size_t s = 0; s < kStageCount; ++s) {
      const std::string stage(stage_name(static_cast<Stage>(s)));
      for (int c = 0; c < 2; ++c) {
        const CohortStats& st = stats_[s][static_cast<std::size_t>(c)];
        if (st.requests == 0) continue;
        requests_family_->with({stage, cohort_name(c)}).set_total(static_cast<double>(st.requests));
        for (std::size_t i = 0; i < st.errors_by_code.size(); ++i) {
          if (st.errors_by_code[i] == 0) continue;
          const std::string code =
              i < kCohortErrorCodes.size() ? std::to_string(kCohortErrorCodes[i]) : "other";
          errors_family_->with({stage, cohort_name(c), code})
              .set_total(static_cast<double>(st.errors_by_code[i]));
        }
      }
    }
  });
}

}  // namespace drover::supervisor
