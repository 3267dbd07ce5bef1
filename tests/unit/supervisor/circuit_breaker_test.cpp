#include "supervisor/pool/circuit_breaker.hpp"

#include <gtest/gtest.h>

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;
using TP = CircuitBreaker::TimePoint;

CircuitBreakerConfig cfg() {
  CircuitBreakerConfig c;
  c.consecutive_failures = 3;
  c.failure_rate = 0.5;
  c.min_requests = 10;
  c.window = 10s;
  c.open_duration = 1000ms;
  c.half_open_probes = 2;
  return c;
}

const TP t0 = TP() + 1000s;

TEST(CircuitBreaker, OpensAfterConsecutiveFailures) {
  CircuitBreaker b(cfg());
  b.record(false, t0);
  b.record(false, t0);
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);
  b.record(false, t0);
  EXPECT_EQ(b.state(), CircuitBreaker::State::open);
  EXPECT_FALSE(b.can_accept(t0 + 999ms));
  EXPECT_EQ(b.transitions(), 1u);
}

TEST(CircuitBreaker, SuccessResetsTheConsecutiveCount) {
  CircuitBreaker b(cfg());
  for (int i = 0; i < 5; ++i) {
    b.record(false, t0);
    b.record(false, t0);
    b.record(true, t0);
  }
  // Never 3 failures in a row, but by the 10th outcome 7 have failed (70% >= 50%).
  EXPECT_EQ(b.state(), CircuitBreaker::State::open);
}

TEST(CircuitBreaker, RateRuleNeedsMinRequests) {
  CircuitBreaker b(cfg());
  for (int i = 0; i < 4; ++i) {
    b.record(false, t0);
    b.record(true, t0);
  }
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);  // 8 requests < min_requests
}

TEST(CircuitBreaker, OldFailuresLeaveTheWindow) {
  CircuitBreaker b(cfg());
  for (int i = 0; i < 4; ++i) {
    b.record(false, t0);
    b.record(true, t0);
  }
  // 11 s later the first 8 outcomes are outside the 10 s window.
  const TP later = t0 + 11s;
  b.record(false, later);
  b.record(true, later);
  b.record(false, later);
  b.record(true, later);
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);
}

TEST(CircuitBreaker, HalfOpenClosesWhenAllProbesSucceed) {
  CircuitBreaker b(cfg());
  for (int i = 0; i < 3; ++i) b.record(false, t0);
  const TP later = t0 + 1s;
  EXPECT_TRUE(b.can_accept(later));
  EXPECT_EQ(b.state(), CircuitBreaker::State::half_open);
  b.on_dispatch();
  EXPECT_TRUE(b.can_accept(later));
  b.on_dispatch();
  EXPECT_FALSE(b.can_accept(later));  // both probe slots taken
  b.record(true, later);
  EXPECT_EQ(b.state(), CircuitBreaker::State::half_open);
  b.record(true, later);
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);
  EXPECT_TRUE(b.can_accept(later));
}

TEST(CircuitBreaker, HalfOpenReopensOnAFailedProbe) {
  CircuitBreaker b(cfg());
  for (int i = 0; i < 3; ++i) b.record(false, t0);
  const TP later = t0 + 1s;
  ASSERT_TRUE(b.can_accept(later));
  b.on_dispatch();
  b.record(false, later);
  EXPECT_EQ(b.state(), CircuitBreaker::State::open);
  EXPECT_FALSE(b.can_accept(later + 500ms));
  EXPECT_TRUE(b.can_accept(later + 1s));
}

TEST(CircuitBreaker, DisabledNeverOpens) {
  auto c = cfg();
  c.enabled = false;
  CircuitBreaker b(c);
  for (int i = 0; i < 100; ++i) b.record(false, t0);
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);
  EXPECT_TRUE(b.can_accept(t0));
}

}  // namespace
}  // namespace drover::supervisor
