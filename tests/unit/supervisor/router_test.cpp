#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "supervisor/routing/least_busy_router.hpp"
#include "supervisor/routing/round_robin_router.hpp"

namespace drover::supervisor {
namespace {

int pick_slot(Router& r, const std::vector<RouteCandidate>& c) {
  const auto i = r.pick(c);
  EXPECT_TRUE(i.has_value());
  return i ? c[*i].slot : -1;
}

TEST(RoundRobinRouter, EmptyCandidatesPickNothing) {
  RoundRobinRouter r;
  EXPECT_FALSE(r.pick({}).has_value());
}

TEST(RoundRobinRouter, CyclesThroughSlotsInOrder) {
  RoundRobinRouter r;
  const std::vector<RouteCandidate> c = {{2, 0}, {0, 0}, {1, 0}};
  std::vector<int> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(pick_slot(r, c));
  EXPECT_EQ(picks, (std::vector<int>{0, 1, 2, 0, 1, 2}));
}

TEST(RoundRobinRouter, SkipsMissingSlotsWithoutLosingItsPlace) {
  RoundRobinRouter r;
  EXPECT_EQ(pick_slot(r, {{0, 0}, {1, 0}, {2, 0}}), 0);
  // Slot 1 is busy/absent for one pick: the next in turn is 2.
  EXPECT_EQ(pick_slot(r, {{0, 0}, {2, 0}}), 2);
  EXPECT_EQ(pick_slot(r, {{0, 0}, {1, 0}, {2, 0}}), 0);
  EXPECT_EQ(pick_slot(r, {{0, 0}, {1, 0}, {2, 0}}), 1);
}

TEST(RoundRobinRouter, SharesLoadEvenly) {
  RoundRobinRouter r;
  std::vector<RouteCandidate> c;
  for (int s = 0; s < 4; ++s) c.push_back({s, 0});
  std::map<int, int> count;
  for (int i = 0; i < 400; ++i) ++count[pick_slot(r, c)];
  for (int s = 0; s < 4; ++s) EXPECT_EQ(count[s], 100);
}

TEST(LeastBusyRouter, PicksFewestInFlight) {
  LeastBusyRouter r;
  EXPECT_EQ(pick_slot(r, {{0, 5}, {1, 2}, {2, 7}}), 1);
  EXPECT_EQ(pick_slot(r, {{0, 1}, {1, 2}, {2, 7}}), 0);
}

TEST(LeastBusyRouter, TiesRotateInsteadOfPilingOnOneSlot) {
  LeastBusyRouter r;
  const std::vector<RouteCandidate> idle = {{0, 0}, {1, 0}, {2, 0}};
  std::vector<int> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(pick_slot(r, idle));
  EXPECT_EQ(picks, (std::vector<int>{0, 1, 2, 0, 1, 2}));
}

TEST(LeastBusyRouter, EmptyCandidatesPickNothing) {
  LeastBusyRouter r;
  EXPECT_FALSE(r.pick({}).has_value());
}

TEST(MakeRouter, BuildsTheConfiguredStrategy) {
  auto rr = make_router(RoutingStrategy::round_robin);
  auto lb = make_router(RoutingStrategy::least_busy);
  EXPECT_NE(dynamic_cast<RoundRobinRouter*>(rr.get()), nullptr);
  EXPECT_NE(dynamic_cast<LeastBusyRouter*>(lb.get()), nullptr);
}

}  // namespace
}  // namespace drover::supervisor
