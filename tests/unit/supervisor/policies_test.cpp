#include <gtest/gtest.h>

#include "supervisor/pool/restart_policy.hpp"
#include "supervisor/pool/retry_policy.hpp"

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;
const auto t0 = std::chrono::steady_clock::time_point() + 1000s;

WorkersConfig workers() {
  WorkersConfig w;
  w.restart_backoff_base = 100ms;
  w.restart_backoff_max = 1000ms;
  w.max_restarts = 3;
  w.restart_window = 10s;
  return w;
}

TEST(RestartPolicy, BacksOffExponentiallyWithinBounds) {
  RestartPolicy p(workers());
  EXPECT_EQ(p.on_crash(t0, 0.0), Millis(50));    // 100 * 0.5
  EXPECT_EQ(p.on_crash(t0, 0.999).value().count(), 199);  // 200 * ~1
  EXPECT_EQ(p.on_crash(t0, 0.0), Millis(200));   // 400 * 0.5
}

TEST(RestartPolicy, ParksAfterMaxRestartsInWindow) {
  RestartPolicy p(workers());
  EXPECT_TRUE(p.on_crash(t0, 0).has_value());
  EXPECT_TRUE(p.on_crash(t0 + 1s, 0).has_value());
  EXPECT_TRUE(p.on_crash(t0 + 2s, 0).has_value());
  EXPECT_FALSE(p.on_crash(t0 + 3s, 0).has_value());
}

TEST(RestartPolicy, CrashesOutsideTheWindowAreForgotten) {
  RestartPolicy p(workers());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(p.on_crash(t0 + std::chrono::seconds(i * 6), 0).has_value());
  // Crashes at 0, 6, 12, 18 s: never more than 3 inside any 10 s window.
  EXPECT_TRUE(p.on_crash(t0 + 18s, 0).has_value());
}

TEST(RestartPolicy, CleanDeathResetsTheBackoff) {
  RestartPolicy p(workers());
  p.on_crash(t0, 0);
  p.on_crash(t0, 0);
  p.on_clean_death();
  EXPECT_EQ(p.on_crash(t0, 0), Millis(50));
}

TEST(RestartPolicy, BackoffIsCapped) {
  auto w = workers();
  w.max_restarts = 100;
  RestartPolicy p(w);
  Millis last{};
  for (int i = 0; i < 30; ++i) last = *p.on_crash(t0, 0.999);
  EXPECT_LE(last, Millis(1000));
  EXPECT_GE(last, Millis(990));
}

RetryConfig retry() {
  RetryConfig r;
  r.max_attempts = 3;
  r.base_delay = 10ms;
  r.max_delay = 50ms;
  r.budget_percent = 20;
  r.min_retry_concurrency = 2;
  return r;
}

TEST(RetryPolicy, FullJitterBackoffDoublesUpToTheCap) {
  RetryPolicy p(retry());
  EXPECT_EQ(p.backoff(1, 0.0), Millis(0));
  EXPECT_EQ(p.backoff(1, 0.5), Millis(5));
  EXPECT_EQ(p.backoff(2, 0.5), Millis(10));
  EXPECT_EQ(p.backoff(3, 0.5), Millis(20));
  EXPECT_EQ(p.backoff(10, 0.5), Millis(25));  // cap 50 * 0.5
}

TEST(RetryPolicy, AttemptsAreCapped) {
  RetryPolicy p(retry());
  EXPECT_TRUE(p.attempts_left(1));
  EXPECT_TRUE(p.attempts_left(2));
  EXPECT_FALSE(p.attempts_left(3));
}

TEST(RetryPolicy, BudgetIsAFractionOfActiveRequestsWithAFloor) {
  RetryPolicy p(retry());
  EXPECT_TRUE(p.budget_allows(0, 1));
  EXPECT_TRUE(p.budget_allows(1, 1));   // the floor of 2 concurrent retries
  EXPECT_FALSE(p.budget_allows(2, 1));
  EXPECT_TRUE(p.budget_allows(19, 100));
  EXPECT_FALSE(p.budget_allows(20, 100));
}

// Issue 15 item 14: under chaos (a worker SIGKILLed every second) the work a dead worker held
// was refused by the retry budget. Failover of a dead worker's work is outside the budget; the
// budget still limits retries of work that timed out or got a broken answer.
using Cause = RetryPolicy::Cause;
using Verdict = RetryPolicy::Decision::Verdict;

RetryPolicy::Attempt attempt(Cause cause, std::size_t retries_active, std::size_t requests_active) {
  return {.cause = cause,
          .attempts_made = 1,
          .blamed_losses = 0,
          .counted = false,
          .retries_active = retries_active,
          .requests_active = requests_active};
}

TEST(RetryPolicy, FailoverOfADeadWorkersWorkIsOutsideTheBudget) {
  RetryPolicy p(retry());
  // Budget spent: 20% of 100 in progress are already retrying.
  const auto d = p.decide(attempt(Cause::failover, 20, 100), 0.9);
  EXPECT_EQ(d.verdict, Verdict::redispatch);
  EXPECT_EQ(d.delay, Millis(0)) << "failover waits for nothing";
  EXPECT_FALSE(d.count_against_budget) << "failover must not use up the budget for retries";
  // A budget of zero (and no floor) does not stop failover either.
  auto cfg = retry();
  cfg.budget_percent = 0;
  cfg.min_retry_concurrency = 0;
  EXPECT_EQ(RetryPolicy(cfg).decide(attempt(Cause::failover, 0, 1), 0.5).verdict, Verdict::redispatch);
}

TEST(RetryPolicy, TheBudgetStillLimitsRetriesOfTimeoutsAndBrokenAnswers) {
  RetryPolicy p(retry());
  EXPECT_EQ(p.decide(attempt(Cause::retry, 20, 100), 0.5).verdict, Verdict::budget_exhausted);
  const auto d = p.decide(attempt(Cause::retry, 19, 100), 0.5);
  EXPECT_EQ(d.verdict, Verdict::redispatch);
  EXPECT_TRUE(d.count_against_budget);
  EXPECT_EQ(d.delay, p.backoff(1, 0.5));
  // A call already counted (an earlier retry) is not counted or refused again.
  auto again = attempt(Cause::retry, 20, 100);
  again.attempts_made = 2;
  again.counted = true;
  const auto d2 = p.decide(again, 0.5);
  EXPECT_EQ(d2.verdict, Verdict::redispatch);
  EXPECT_FALSE(d2.count_against_budget);
  EXPECT_EQ(d2.delay, p.backoff(2, 0.5));
}

TEST(RetryPolicy, FailoverIsStillBoundedByMaxAttemptsAndPoison) {
  RetryPolicy p(retry());  // max_attempts 3, poison_threshold 2 (the default)
  auto a = attempt(Cause::failover, 0, 10);
  a.attempts_made = 3;
  EXPECT_EQ(p.decide(a, 0.5).verdict, Verdict::attempts_exhausted);
  a.attempts_made = 2;
  a.blamed_losses = 2;  // two workers crashed through their own fault while running it
  EXPECT_EQ(p.decide(a, 0.5).verdict, Verdict::poison);
  a.blamed_losses = 1;
  EXPECT_EQ(p.decide(a, 0.5).verdict, Verdict::redispatch);
}

}  // namespace
}  // namespace drover::supervisor
