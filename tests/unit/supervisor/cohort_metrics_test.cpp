// CohortMetrics: which stages are recorded, the cohort split, errors by code, quantiles, and the
// Prometheus families.
#include "supervisor/pipeline/cohort_metrics.hpp"

#include <gtest/gtest.h>

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;

CallOutcome outcome(int code, Clock::duration total, std::optional<Clock::duration> ttft = {}) {
  return CallOutcome{code, code == code_of(RpcError::cancelled), total, ttft};
}

TEST(CohortMetrics, RecordsOnlyStagesWithARolloutSplitByCohort) {
  CohortMetrics m;
  // prompt_cache at 50 % (tracked), batch_queue at 100 % (not, unless controlled).
  const std::array<int, kStageCount> percents = {50, 100, 100, 100, 100, 0};
  m.record(cohort_bit(Stage::prompt_cache), percents, outcome(0, 10ms, 2ms));
  m.record(0, percents, outcome(code_of(RpcError::worker_failed), 20ms));
  m.record(0, percents, outcome(code_of(RpcError::cancelled), 20ms));
  EXPECT_EQ(m.stats(Stage::prompt_cache, true).requests, 1u);
  EXPECT_EQ(m.stats(Stage::prompt_cache, true).ttft.count(), 1u);
  EXPECT_EQ(m.stats(Stage::prompt_cache, false).requests, 2u);
  EXPECT_EQ(m.stats(Stage::prompt_cache, false).errors, 1u) << "a cancel is not an error";
  EXPECT_EQ(m.stats(Stage::prompt_cache, false).crashes, 1u);
  EXPECT_EQ(m.stats(Stage::batch_queue, true).requests, 0u);
  m.set_controlled(cohort_bit(Stage::batch_queue));
  m.record(cohort_bit(Stage::batch_queue), percents, outcome(0, 1ms));
  EXPECT_EQ(m.stats(Stage::batch_queue, true).requests, 1u);

  const auto t = m.telemetry();
  EXPECT_EQ(t["prompt_cache"]["baseline"]["errors_by_code"]["-32003"], 1);
  EXPECT_EQ(t["prompt_cache"]["canary"]["requests_total"], 1);
  EXPECT_FALSE(t.contains("fault_injection"));
}

TEST(LatencyHistogram, QuantileBucketsBracketTheValue) {
  LatencyHistogram h;
  for (int i = 1; i <= 100; ++i) h.observe(std::chrono::milliseconds(i));
  const int b = h.bucket_at_rank(95);
  EXPECT_LE(LatencyHistogram::lower_edge_s(b), 0.095);
  EXPECT_GE(LatencyHistogram::upper_edge_s(b), 0.095);
  EXPECT_LT(LatencyHistogram::upper_edge_s(b) / LatencyHistogram::lower_edge_s(b), 1.1);
  LatencyHistogram later = h;
  later.observe(1s);
  EXPECT_EQ(later.since(h).count(), 1u);
  EXPECT_GE(LatencyHistogram::upper_edge_s(later.since(h).bucket_at_rank(1)), 1.0);
}

TEST(CohortMetrics, ExportsPrometheusFamiliesLabelledStageAndCohort) {
  metrics::Registry r;
  CohortMetrics m;
  m.register_metrics(r);
  const std::array<int, kStageCount> percents = {100, 100, 100, 100, 100, 10};
  m.record(cohort_bit(Stage::fault_injection), percents, outcome(code_of(RpcError::no_healthy_worker), 3ms));
  m.record(0, percents, outcome(0, 3ms, 1ms));
  const std::string text = r.expose();
  EXPECT_NE(text.find(R"(drover_cohort_requests_total{stage="fault_injection",cohort="canary"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(drover_cohort_errors_total{stage="fault_injection",cohort="canary",code="-32002"} 1)"),
            std::string::npos);
  EXPECT_NE(text.find(R"(drover_cohort_request_duration_seconds_count{stage="fault_injection",cohort="baseline"} 1)"),
            std::string::npos);
  EXPECT_NE(text.find(R"(drover_cohort_ttft_seconds_count{stage="fault_injection",cohort="baseline"} 1)"),
            std::string::npos);
}

}  // namespace
}  // namespace drover::supervisor
