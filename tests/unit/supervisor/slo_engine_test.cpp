// The SLO policy engine with a fake clock, hand-fed request totals and a recording actuator:
// entering on a breach, holding on too few samples, hysteresis, cooldowns, dry run, each action
// applied and reverted, RSS recycling, reloads, and no breach on a run within the objective.
#include "supervisor/admin/slo_engine.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tests/unit/fake_clock.hpp"

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;

// What the policies did, as droverd's effectors would have been told.
struct Recorder final : SloActuator {
  std::optional<std::int64_t> shedding;
  double admission = 1.0;
  double batch = 1.0;
  int spares = 0;
  std::vector<int> recycled;
  int calls = 0;

  void shed_low_priority(std::optional<std::int64_t> retry_after_ms) override {
    shedding = retry_after_ms;
    ++calls;
  }
  void tighten_admission(double factor) override {
    admission = factor;
    ++calls;
  }
  void lower_batch_target(double factor) override {
    batch = factor;
    ++calls;
  }
  void set_extra_spares(int extra) override {
    spares = extra;
    ++calls;
  }
  std::string recycle_worker(int id) override {
    recycled.push_back(id);
    ++calls;
    return {};
  }
};

struct Fixture {
  FakeClock clock;
  CohortStats totals;
  std::vector<WorkerRss> workers;
  Recorder act;
  SloEngine engine{act, [this]() -> const CohortStats& { return totals; },
                   [this] { return workers; }, clock};

  // latency_p95_ms 100 over 10 s, min_requests 50, recover_ratio 0.8, one policy.
  static SloConfig config(SloAction action, Clock::duration cooldown = 30s) {
    SloConfig c;
    c.latency_p95_ms = 100;
    c.window = 10s;
    c.min_requests = 50;
    c.recover_ratio = 0.8;
    SloPolicySpec p;
    p.action = action;
    p.cooldown = std::chrono::duration_cast<std::chrono::seconds>(cooldown);
    p.retry_after_ms = 500;
    p.factor = 0.5;
    p.max_extra_spares = 2;
    p.max_rss_growth_mb_per_min = 10;
    c.policies = {p};
    return c;
  }
  void feed(int n, Clock::duration latency, int code = 0) {
    for (int i = 0; i < n; ++i) totals.add(CallOutcome{code, false, latency, latency / 2});
  }
  // One second of traffic, then the engine judges.
  void second(int n, Clock::duration latency, int code = 0) {
    feed(n, latency, code);
    clock.advance(1s);
    engine.tick();
  }
  // `seconds` seconds of the same traffic.
  void run(int seconds, int n, Clock::duration latency) {
    for (int i = 0; i < seconds; ++i) second(n, latency);
  }
  nlohmann::json policy(SloAction a) { return engine.status()["policies"][std::string(to_string(a))]; }
};

TEST(SloEngine, EntersOnABreachAndShedsLowPriority) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::shed_low_priority));
  f.second(100, 300ms);
  EXPECT_TRUE(f.engine.breached(SloTarget::latency_p95));
  EXPECT_TRUE(f.engine.active(SloAction::shed_low_priority));
  EXPECT_EQ(f.act.shedding.value_or(-1), 500);
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "apply", "applied"), 1u);
  const auto p = f.policy(SloAction::shed_low_priority);
  EXPECT_EQ(p["last_decision"]["action"], "apply");
  EXPECT_EQ(p["last_decision"]["mode"], "applied");
  const auto figures = p["last_decision"]["figures"]["latency_p95"];
  EXPECT_GT(figures["lower_bound"].get<double>(), 0.1);
  EXPECT_EQ(figures["samples"], 100);
}

TEST(SloEngine, HoldsOnTooFewSamples) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::shed_low_priority));
  f.second(49, 5s);  // every request far too slow, but one short of min_requests
  EXPECT_FALSE(f.engine.breached(SloTarget::latency_p95));
  EXPECT_EQ(f.act.calls, 0);
  f.second(1, 5s);
  EXPECT_TRUE(f.engine.breached(SloTarget::latency_p95));
}

TEST(SloEngine, APointEstimateAboveTheObjectiveIsNotEnoughWithoutTheBound) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::shed_low_priority));
  // 7 slow requests in 100: the p95 itself is slow, but its lower bound (rank 88) is fast.
  f.feed(93, 10ms);
  f.second(7, 300ms);
  EXPECT_GT(f.engine.status()["objectives"]["latency_p95"]["figure"].get<double>(), 0.1);
  EXPECT_FALSE(f.engine.breached(SloTarget::latency_p95));
  // 47 slow in 200 are: the bound is above the objective.
  f.feed(60, 10ms);
  f.second(40, 300ms);
  EXPECT_TRUE(f.engine.breached(SloTarget::latency_p95));
}

TEST(SloEngine, HysteresisKeepsTheActionUntilTheFigureIsBelowTheRecoverRatio) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::shed_low_priority));
  f.second(100, 300ms);
  ASSERT_TRUE(f.engine.active(SloAction::shed_low_priority));
  // 90 ms: under the objective but not under 0.8 x it. Long after the slow seconds left the
  // window, the action stays, and nothing flaps.
  f.run(30, 100, 90ms);
  EXPECT_TRUE(f.engine.breached(SloTarget::latency_p95));
  EXPECT_TRUE(f.engine.active(SloAction::shed_low_priority));
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "revert", "applied"), 0u);
  // 70 ms: recovered once the 90 ms seconds have left the window.
  f.run(12, 100, 70ms);
  EXPECT_FALSE(f.engine.breached(SloTarget::latency_p95));
  EXPECT_FALSE(f.engine.active(SloAction::shed_low_priority));
  EXPECT_FALSE(f.act.shedding.has_value());
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "revert", "applied"), 1u);
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "apply", "applied"), 1u);
}

TEST(SloEngine, NoFlappingAroundTheObjective) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::shed_low_priority, 0s));  // no cooldown to help
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> ms(85, 115);
  f.second(100, 300ms);  // breached
  for (int s = 0; s < 120; ++s) {
    for (int i = 0; i < 100; ++i) f.feed(1, std::chrono::milliseconds(ms(rng)));
    f.clock.advance(1s);
    f.engine.tick();
  }
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "apply", "applied"), 1u);
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "revert", "applied"), 0u);
}

TEST(SloEngine, NoBreachOnRunsWithinTheObjective) {
  // Lognormal latencies whose true p95 is 80 ms (0.8 x the objective), 100 requests/s judged
  // every second for two minutes, 100 runs: the bound must never breach.
  int breaches = 0;
  std::mt19937_64 rng(12345);
  const double sigma = 0.5;
  const double mu = std::log(80.0) - 1.6449 * sigma;  // p95 = exp(mu + 1.6449 sigma) = 80 ms
  std::lognormal_distribution<double> latency_ms(mu, sigma);
  for (int run = 0; run < 100; ++run) {
    Fixture f;
    f.engine.configure(Fixture::config(SloAction::shed_low_priority));
    for (int s = 0; s < 120; ++s) {
      for (int i = 0; i < 100; ++i) {
        f.feed(1, std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double, std::milli>(latency_ms(rng))));
      }
      f.clock.advance(1s);
      f.engine.tick();
    }
    breaches += static_cast<int>(f.engine.count(SloAction::shed_low_priority, "apply", "applied"));
  }
  EXPECT_EQ(breaches, 0);
}

TEST(SloEngine, CooldownDelaysANewActionButNotARevert) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::shed_low_priority, 30s));
  f.second(100, 300ms);
  ASSERT_TRUE(f.engine.active(SloAction::shed_low_priority));
  f.run(12, 100, 10ms);  // recovers within the cooldown: reverted at once
  ASSERT_FALSE(f.engine.active(SloAction::shed_low_priority));
  f.run(2, 100, 300ms);  // breached again 14 s after the action
  EXPECT_TRUE(f.engine.breached(SloTarget::latency_p95));
  EXPECT_FALSE(f.engine.active(SloAction::shed_low_priority));
  EXPECT_GT(f.policy(SloAction::shed_low_priority)["cooldown_remaining_s"].get<double>(), 0.0);
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "apply", "applied"), 1u);
  f.run(14, 100, 300ms);  // 28 s: still cooling
  EXPECT_FALSE(f.engine.active(SloAction::shed_low_priority));
  f.run(2, 100, 300ms);  // 30 s: acts
  EXPECT_TRUE(f.engine.active(SloAction::shed_low_priority));
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "apply", "applied"), 2u);
}

TEST(SloEngine, DryRunDecidesAndCountsButChangesNothing) {
  Fixture f;
  SloConfig c = Fixture::config(SloAction::shed_low_priority);
  c.policies[0].dry_run = true;
  f.engine.configure(c);
  f.second(100, 300ms);
  EXPECT_TRUE(f.engine.active(SloAction::shed_low_priority));  // would be
  EXPECT_EQ(f.act.calls, 0);
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "apply", "dry_run"), 1u);
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "apply", "applied"), 0u);
  EXPECT_EQ(f.policy(SloAction::shed_low_priority)["last_decision"]["mode"], "dry_run");
  f.run(12, 100, 10ms);
  EXPECT_FALSE(f.engine.active(SloAction::shed_low_priority));
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "revert", "dry_run"), 1u);
  EXPECT_EQ(f.act.calls, 0);
}

TEST(SloEngine, EachLevelActionIsAppliedAndReverted) {
  for (SloAction a : {SloAction::shed_low_priority, SloAction::tighten_admission,
                      SloAction::lower_batch_target, SloAction::add_warm_spare}) {
    SCOPED_TRACE(std::string(to_string(a)));
    Fixture f;
    f.engine.configure(Fixture::config(a));
    f.second(100, 300ms);
    EXPECT_EQ(f.act.shedding.has_value(), a == SloAction::shed_low_priority);
    EXPECT_EQ(f.act.admission, a == SloAction::tighten_admission ? 0.5 : 1.0);
    EXPECT_EQ(f.act.batch, a == SloAction::lower_batch_target ? 0.5 : 1.0);
    EXPECT_EQ(f.act.spares, a == SloAction::add_warm_spare ? 1 : 0);
    f.run(12, 100, 10ms);
    EXPECT_FALSE(f.act.shedding.has_value());
    EXPECT_EQ(f.act.admission, 1.0);
    EXPECT_EQ(f.act.batch, 1.0);
    EXPECT_EQ(f.act.spares, 0);
    EXPECT_EQ(f.act.calls, 2);
    EXPECT_EQ(f.engine.count(a, "revert", "applied"), 1u);
  }
}

TEST(SloEngine, AddWarmSpareStepsUpOncePerCooldownUpToItsCap) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::add_warm_spare, 10s));
  f.second(100, 300ms);
  EXPECT_EQ(f.act.spares, 1);
  f.run(9, 100, 300ms);
  EXPECT_EQ(f.act.spares, 1);
  f.run(1, 100, 300ms);
  EXPECT_EQ(f.act.spares, 2);
  f.run(30, 100, 300ms);
  EXPECT_EQ(f.act.spares, 2);  // max_extra_spares
  EXPECT_EQ(f.engine.count(SloAction::add_warm_spare, "apply", "applied"), 2u);
  f.run(12, 100, 10ms);
  EXPECT_EQ(f.act.spares, 0);
}

TEST(SloEngine, ErrorRatioObjectiveUsesWilsonsLowerBound) {
  Fixture f;
  SloConfig c = Fixture::config(SloAction::tighten_admission);
  c.latency_p95_ms = 0;
  c.error_ratio = 0.05;
  f.engine.configure(c);
  f.feed(92, 10ms);
  f.second(8, 10ms, -32003);  // 8 % errors, lower bound ~3 %: not shown to be above 5 %
  EXPECT_FALSE(f.engine.breached(SloTarget::error_ratio));
  f.feed(70, 10ms);
  f.second(30, 10ms, -32003);  // 19 % of 200
  EXPECT_TRUE(f.engine.breached(SloTarget::error_ratio));
  EXPECT_EQ(f.act.admission, 0.5);
}

TEST(SloEngine, WithoutSamplesABreachLapsesInsteadOfHoldingForever) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::shed_low_priority));
  f.second(100, 300ms);
  ASSERT_TRUE(f.engine.active(SloAction::shed_low_priority));
  f.run(5, 0, 0ms);
  EXPECT_TRUE(f.engine.active(SloAction::shed_low_priority));  // the slow requests are in the window
  f.run(7, 0, 0ms);
  EXPECT_FALSE(f.engine.active(SloAction::shed_low_priority));
  EXPECT_FALSE(f.act.shedding.has_value());
}

TEST(SloEngine, PolicyWatchingAnotherObjectiveIgnoresThisOne) {
  Fixture f;
  SloConfig c = Fixture::config(SloAction::shed_low_priority);
  c.error_ratio = 0.05;
  c.policies[0].watch = SloTarget::error_ratio;
  f.engine.configure(c);
  f.second(100, 300ms);  // latency breached, errors fine
  EXPECT_TRUE(f.engine.breached(SloTarget::latency_p95));
  EXPECT_FALSE(f.engine.active(SloAction::shed_low_priority));
}

TEST(SloEngine, RecyclesAWorkerWhoseRssGrowsTooFastOncePerCooldown) {
  Fixture f;
  f.engine.configure(Fixture::config(SloAction::recycle_rss_growth, 60s));
  std::int64_t grow1 = 200 << 20, grow2 = 300 << 20;
  auto sample = [&] {
    f.workers = {{0, 100, 100 << 20}, {1, 101, grow1}, {2, 102, grow2}};
    grow1 += 1 << 20;  // 1 MiB/s = 60 MiB/min, above the bound of 10
    grow2 += 1 << 20;
    f.clock.advance(1s);
    f.engine.tick();
  };
  for (int i = 0; i < 9; ++i) sample();
  EXPECT_TRUE(f.act.recycled.empty()) << "judged only after a whole window";
  for (int i = 0; i < 3; ++i) sample();
  ASSERT_EQ(f.act.recycled, (std::vector<int>{1}));
  const auto last = f.policy(SloAction::recycle_rss_growth)["last_decision"];
  EXPECT_EQ(last["action"], "recycle");
  EXPECT_NEAR(last["figures"]["growth_mib_per_min"].get<double>(), 60.0, 1.0);
  // Worker 2 grows as fast, but the cooldown allows one recycle a minute.
  for (int i = 0; i < 30; ++i) sample();
  EXPECT_EQ(f.act.recycled.size(), 1u);
  for (int i = 0; i < 30; ++i) sample();
  EXPECT_EQ(f.act.recycled, (std::vector<int>{1, 2}));
  EXPECT_EQ(f.engine.count(SloAction::recycle_rss_growth, "recycle", "applied"), 2u);
}

TEST(SloEngine, RecycleDryRunFlagsOnceAndRecyclesNothing) {
  Fixture f;
  SloConfig c = Fixture::config(SloAction::recycle_rss_growth, 0s);
  c.policies[0].dry_run = true;
  f.engine.configure(c);
  std::int64_t rss = 200 << 20;
  for (int i = 0; i < 40; ++i) {
    f.workers = {{3, 300, rss}};
    rss += 1 << 20;
    f.clock.advance(1s);
    f.engine.tick();
  }
  EXPECT_TRUE(f.act.recycled.empty());
  EXPECT_EQ(f.engine.count(SloAction::recycle_rss_growth, "recycle", "dry_run"), 1u);
}

TEST(SloEngine, ReloadKeepsUnchangedPoliciesAndRevertsChangedOnes) {
  Fixture f;
  SloConfig c = Fixture::config(SloAction::shed_low_priority);
  SloPolicySpec tighten;
  tighten.action = SloAction::tighten_admission;
  tighten.factor = 0.5;
  c.policies.push_back(tighten);
  f.engine.configure(c);
  f.second(100, 300ms);
  ASSERT_TRUE(f.engine.active(SloAction::shed_low_priority));
  ASSERT_EQ(f.act.admission, 0.5);
  c.policies[1].factor = 0.25;  // tighten_admission changed, shedding not
  f.engine.configure(c);
  EXPECT_TRUE(f.engine.active(SloAction::shed_low_priority));
  EXPECT_EQ(f.act.shedding.value_or(-1), 500);
  EXPECT_EQ(f.engine.count(SloAction::shed_low_priority, "revert", "applied"), 0u);
  EXPECT_EQ(f.engine.count(SloAction::tighten_admission, "revert", "applied"), 1u);
  EXPECT_EQ(f.act.admission, 1.0);
  f.second(100, 300ms);  // the changed policy starts afresh and acts on the breach
  EXPECT_EQ(f.act.admission, 0.25);
  // No policies at all: everything in force is reverted and the engine idles.
  f.engine.configure(SloConfig{});
  EXPECT_FALSE(f.act.shedding.has_value());
  EXPECT_EQ(f.act.admission, 1.0);
  EXPECT_FALSE(f.engine.status()["enabled"].get<bool>());
}

}  // namespace
}  // namespace drover::supervisor
