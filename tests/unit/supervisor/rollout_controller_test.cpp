// The canary controller with a fake clock and hand-fed cohort metrics: ramps, holds, each
// trigger, the noise rule (no rollback on a no-regression run), dry run, reloads and the
// operator's actions.
#include "supervisor/admin/rollout_controller.hpp"

#include <gtest/gtest.h>

#include <random>

#include "tests/unit/fake_clock.hpp"

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;
using State = RolloutController::State;

const std::array<int, kStageCount> kPercents = {50, 50, 50, 50, 50, 50};

struct Fixture {
  FakeClock clock;
  CohortMetrics cohorts;
  FeatureFlagsConfig flags;
  std::uint64_t rss = 100 << 20;
  RolloutController controller{cohorts, flags, [this] { return rss; }, clock};

  static RolloutSpec spec() {
    RolloutSpec s;
    s.steps = {1, 10, 50, 100};
    s.step_interval = 10s;
    s.min_requests = 50;
    return s;
  }
  void configure(RolloutSpec s = spec(), const std::string& stage = "prompt_cache") {
    controller.configure({{stage, std::move(s)}});
  }
  // `n` finished requests of prompt_cache's canary (or baseline) cohort.
  void feed(bool canary, int n, int code = 0, Clock::duration latency = 10ms,
            std::optional<Clock::duration> ttft = 5ms) {
    for (int i = 0; i < n; ++i) {
      CallOutcome o{code, false, latency, ttft};
      cohorts.record(canary ? cohort_bit(Stage::prompt_cache) : 0, kPercents, o);
    }
  }
  // A healthy interval: canary and baseline alike, then time passes and the controller ticks.
  void healthy_interval(int canary = 60, int baseline = 300) {
    feed(true, canary);
    feed(false, baseline);
    clock.advance(10s);
    controller.tick();
  }
  State state() { return *controller.state("prompt_cache"); }
  int percent() { return *controller.percent("prompt_cache"); }
};

TEST(RolloutController, StartsAtTheFirstStepAndWritesTheFlag) {
  Fixture f;
  f.configure();
  EXPECT_EQ(f.percent(), 1);
  EXPECT_EQ(f.flags.prompt_cache, 1);
  EXPECT_EQ(f.state(), State::ramping);
  EXPECT_FALSE(f.controller.percent("batch_queue"));
}

TEST(RolloutController, RampsStepByStepToCompleteOnAHealthyCanary) {
  Fixture f;
  f.configure();
  f.healthy_interval();
  EXPECT_EQ(f.percent(), 10);
  f.healthy_interval();
  EXPECT_EQ(f.percent(), 50);
  f.healthy_interval();
  EXPECT_EQ(f.percent(), 100);
  EXPECT_EQ(f.state(), State::complete);
  EXPECT_EQ(f.flags.prompt_cache, 100);
  f.healthy_interval();  // complete: judged no more
  EXPECT_EQ(f.percent(), 100);
  EXPECT_EQ(f.controller.status()["prompt_cache"]["advances_total"], 3);
}

TEST(RolloutController, WaitsAFullIntervalBetweenSteps) {
  Fixture f;
  f.configure();
  f.feed(true, 500);
  f.feed(false, 500);
  f.clock.advance(9s);
  f.controller.tick();
  EXPECT_EQ(f.percent(), 1);  // plenty of samples, but the interval has not passed
  f.clock.advance(1s);
  f.controller.tick();
  EXPECT_EQ(f.percent(), 10);
  f.feed(true, 500);
  f.feed(false, 500);
  f.controller.tick();  // just advanced: a new interval starts, whatever the samples
  EXPECT_EQ(f.percent(), 10);
}

TEST(RolloutController, HoldsOnTooFewSamplesThenAdvancesOnceTheWindowHasThem) {
  Fixture f;
  f.configure();
  f.healthy_interval(/*canary=*/30);
  EXPECT_EQ(f.percent(), 1);
  EXPECT_EQ(f.controller.status()["prompt_cache"]["last_decision"]["action"], "hold");
  f.healthy_interval(/*canary=*/30);  // the window kept growing: 60 now
  EXPECT_EQ(f.percent(), 10);
}

TEST(RolloutController, ErrorRatioRollsBackAtOnceAndStaysUntilResumed) {
  Fixture f;
  f.configure();
  f.feed(false, 300);
  f.feed(true, 50, code_of(RpcError::overloaded));
  f.clock.advance(1s);  // long before the interval ends
  f.controller.tick();
  EXPECT_EQ(f.percent(), 0);
  EXPECT_EQ(f.flags.prompt_cache, 0);
  EXPECT_EQ(f.state(), State::rolled_back);
  EXPECT_EQ(f.controller.rollbacks("prompt_cache"), 1u);
  const auto last = f.controller.status()["prompt_cache"]["last_decision"];
  EXPECT_EQ(last["action"], "roll_back");
  EXPECT_EQ(last["figures"]["trigger"], "error_ratio_x");
  EXPECT_GT(last["figures"]["canary_error_ratio_lower_bound"].get<double>(), 0.5);
  // Healthy traffic does not resume it: an operator must.
  f.healthy_interval();
  f.healthy_interval();
  EXPECT_EQ(f.percent(), 0);
  EXPECT_EQ(f.controller.resume("prompt_cache"), "");
  EXPECT_EQ(f.percent(), 1);
  EXPECT_EQ(f.state(), State::ramping);
  f.healthy_interval();
  EXPECT_EQ(f.percent(), 10);
}

TEST(RolloutController, NoTriggerFiresOnAFewErrorsAtLowCounts) {
  Fixture f;
  f.configure();
  f.feed(false, 300);
  f.feed(true, 5, code_of(RpcError::overloaded));  // 100 % errors, but 5 requests
  f.clock.advance(1s);
  f.controller.tick();
  EXPECT_EQ(f.state(), State::ramping);
  // Five errors among 50 against a clean baseline of 300 is within noise too.
  f.feed(true, 45);
  f.controller.tick();
  EXPECT_EQ(f.state(), State::ramping);
  EXPECT_EQ(f.controller.rollbacks("prompt_cache"), 0u);
}

TEST(RolloutController, P95LatencyRollsBack) {
  Fixture f;
  f.configure();
  f.feed(false, 300, 0, 10ms);
  f.feed(true, 60, 0, 40ms);
  f.controller.tick();
  EXPECT_EQ(f.state(), State::rolled_back);
  EXPECT_EQ(f.controller.status()["prompt_cache"]["last_decision"]["figures"]["trigger"], "p95_x");
}

TEST(RolloutController, LatencyWithinTheFactorDoesNotRollBack) {
  Fixture f;
  f.configure();
  f.feed(false, 300, 0, 10ms);
  f.feed(true, 60, 0, 13ms);  // 1.3x, under p95_x 1.5
  f.controller.tick();
  EXPECT_EQ(f.state(), State::ramping);
}

TEST(RolloutController, TtftP95RollsBack) {
  Fixture f;
  RolloutSpec s = Fixture::spec();
  s.triggers.p95_x = 0;  // only the TTFT trigger
  s.triggers.ttft_p95_x = 2.0;
  f.configure(s);
  f.feed(false, 300, 0, 10ms, 2ms);
  f.feed(true, 60, 0, 10ms, 9ms);
  f.controller.tick();
  EXPECT_EQ(f.state(), State::rolled_back);
  EXPECT_EQ(f.controller.status()["prompt_cache"]["last_decision"]["figures"]["trigger"], "ttft_p95_x");
}

TEST(RolloutController, CrashRatioRollsBack) {
  Fixture f;
  RolloutSpec s = Fixture::spec();
  s.triggers.error_ratio_x = 0;  // only the crash trigger
  s.triggers.crash_ratio = 0.01;
  f.configure(s);
  f.feed(false, 300);
  f.feed(true, 40);
  f.feed(true, 20, code_of(RpcError::worker_failed));
  f.controller.tick();
  EXPECT_EQ(f.state(), State::rolled_back);
  EXPECT_EQ(f.controller.status()["prompt_cache"]["last_decision"]["figures"]["trigger"], "crash_ratio");
}

TEST(RolloutController, RssGrowthRollsBackOnlyAfterTheMinimumWindow) {
  Fixture f;
  RolloutSpec s = Fixture::spec();
  s.step_interval = 3600s;  // no advance meanwhile
  s.triggers.rss_growth_pct_per_h = 20;
  f.configure(s);
  f.rss = 110 << 20;  // +10 % within the first minute: 600 %/h, but too short to judge
  f.clock.advance(60s);
  f.controller.tick();
  EXPECT_EQ(f.state(), State::ramping);
  f.clock.advance(RolloutController::kRssMinWindow);  // +10 % in 6 min: 100 %/h
  f.controller.tick();
  EXPECT_EQ(f.state(), State::rolled_back);
  EXPECT_EQ(f.controller.status()["prompt_cache"]["last_decision"]["figures"]["trigger"],
            "rss_growth_pct_per_h");
}

TEST(RolloutController, SlowRssGrowthDoesNotRollBack) {
  Fixture f;
  RolloutSpec s = Fixture::spec();
  s.step_interval = 3600s;
  s.triggers.rss_growth_pct_per_h = 20;
  f.configure(s);
  f.rss = 101 << 20;  // +1 % in 10 min: 6 %/h
  f.clock.advance(10min);
  f.controller.tick();
  EXPECT_EQ(f.state(), State::ramping);
}

// The documented false-positive figure: ramps where canary and baseline come from the same
// distributions (2 % errors, the same latency spread) never roll back. 200 ramps of 3 steps,
// judged every 250 ms as droverd does.
TEST(RolloutController, NoRollbackOnNoRegressionRuns) {
  std::mt19937_64 rng(12345);
  std::bernoulli_distribution error(0.02);
  std::lognormal_distribution<double> latency_ms(3.0, 0.5);
  int false_rollbacks = 0;
  for (int run = 0; run < 200; ++run) {
    Fixture f;
    RolloutSpec s = Fixture::spec();
    s.steps = {10, 50, 100};
    s.triggers.ttft_p95_x = 1.5;
    s.triggers.crash_ratio = 0.001;
    f.configure(s);
    for (int tick = 0; tick < 200 && f.state() == State::ramping; ++tick) {
      const int pct = f.percent();
      for (int i = 0; i < 25; ++i) {  // 100 requests/s
        const bool canary = static_cast<int>(rng() % 100) < pct;
        const auto lat = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double, std::milli>(latency_ms(rng)));
        const bool err = error(rng);
        f.feed(canary, 1, err ? code_of(RpcError::worker_failed) : 0, lat, lat / 2);
      }
      f.clock.advance(250ms);
      f.controller.tick();
    }
    if (f.controller.rollbacks("prompt_cache") > 0) ++false_rollbacks;
    EXPECT_EQ(f.state(), State::complete) << "run " << run;
  }
  EXPECT_EQ(false_rollbacks, 0);
}

TEST(RolloutController, DryRunDecidesButChangesNothing) {
  Fixture f;
  RolloutSpec s = Fixture::spec();
  s.dry_run = true;
  f.configure(s);
  f.feed(false, 300);
  f.feed(true, 50, code_of(RpcError::overloaded));
  f.controller.tick();
  EXPECT_EQ(f.percent(), 1);
  EXPECT_EQ(f.state(), State::ramping);
  auto st = f.controller.status()["prompt_cache"];
  EXPECT_EQ(st["last_decision"]["action"], "would_roll_back");
  EXPECT_EQ(st["dry_run_rollbacks_total"], 1);
  f.healthy_interval();
  EXPECT_EQ(f.percent(), 1);
  EXPECT_EQ(f.controller.status()["prompt_cache"]["last_decision"]["action"], "would_advance");
}

TEST(RolloutController, AReloadKeepsTheStateOfKeptStagesAndLetsRemovedOnesGo) {
  Fixture f;
  f.configure();
  f.healthy_interval();
  ASSERT_EQ(f.percent(), 10);
  RolloutSpec s = Fixture::spec();
  s.min_requests = 20;
  f.controller.configure({{"prompt_cache", s}, {"batch_queue", Fixture::spec()}});
  EXPECT_EQ(f.percent(), 10);  // kept
  EXPECT_EQ(*f.controller.percent("batch_queue"), 1);  // new: first step
  EXPECT_EQ(f.controller.status()["prompt_cache"]["min_requests"], 20);
  FeatureFlagsConfig reloaded;  // what a reloaded file says: 100 everywhere
  f.controller.apply(reloaded);
  EXPECT_EQ(reloaded.prompt_cache, 10);
  EXPECT_EQ(reloaded.batch_queue, 1);
  f.controller.configure({});
  EXPECT_FALSE(f.controller.percent("prompt_cache"));
}

TEST(RolloutController, OperatorActions) {
  Fixture f;
  f.configure();
  EXPECT_EQ(f.controller.pause("prompt_cache"), "");
  EXPECT_EQ(f.state(), State::paused);
  f.healthy_interval();
  EXPECT_EQ(f.percent(), 1);  // paused: no advance
  EXPECT_EQ(f.controller.set("prompt_cache", 50), "");
  EXPECT_EQ(f.percent(), 50);
  EXPECT_EQ(f.flags.prompt_cache, 50);
  EXPECT_EQ(f.state(), State::paused);
  EXPECT_EQ(f.controller.resume("prompt_cache"), "");
  f.healthy_interval(200, 200);
  EXPECT_EQ(f.percent(), 100);
  EXPECT_EQ(f.controller.rollback("prompt_cache"), "");
  EXPECT_EQ(f.percent(), 0);
  EXPECT_EQ(f.state(), State::rolled_back);
  EXPECT_NE(f.controller.pause("batch_queue").find("no rollout"), std::string::npos);
  EXPECT_NE(f.controller.set("prompt_cache", 101), "");
}

TEST(Wilson, BoundsBracketTheRatio) {
  EXPECT_NEAR(wilson_lower(0, 100, 3.09), 0.0, 1e-12);
  EXPECT_LT(wilson_upper(0, 100, 3.09), 0.1);
  EXPECT_GT(wilson_upper(0, 100, 3.09), 0.05);
  EXPECT_LT(wilson_lower(50, 100, 3.09), 0.5);
  EXPECT_GT(wilson_upper(50, 100, 3.09), 0.5);
  EXPECT_DOUBLE_EQ(wilson_upper(0, 0, 3.09), 1.0);
}

}  // namespace
}  // namespace drover::supervisor
