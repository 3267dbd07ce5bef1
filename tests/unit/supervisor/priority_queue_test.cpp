// PriorityQueue: lane order, aging (high never starved behind low, low not starved forever),
// push_front, erase, and FIFO when priorities are off. Time is passed in.
#include "supervisor/pool/priority_queue.hpp"

#include <gtest/gtest.h>

#include <string>

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;
using Q = PriorityQueue<std::string>;
const auto t0 = std::chrono::steady_clock::time_point() + 1000s;

std::string pop_all(Q& q, std::chrono::steady_clock::time_point now) {
  std::string order;
  while (!q.empty()) order += q.pop(now) + " ";
  return order;
}

TEST(PriorityQueue, HighBeforeNormalBeforeLow) {
  Q q;
  q.push_back("l1", Priority::low, t0);
  q.push_back("n1", Priority::normal, t0);
  q.push_back("h1", Priority::high, t0);
  q.push_back("l2", Priority::low, t0);
  q.push_back("h2", Priority::high, t0);
  EXPECT_EQ(q.depth(Priority::high), 2u);
  EXPECT_EQ(q.depth(Priority::low), 2u);
  EXPECT_EQ(pop_all(q, t0 + 1ms), "h1 h2 n1 l1 l2 ");
}

TEST(PriorityQueue, WorkedExampleFromTheHeader) {
  Q q;
  q.push_back("L1", Priority::low, t0);
  q.push_back("H1", Priority::high, t0 + 50ms);
  q.push_back("N1", Priority::normal, t0 + 50ms);
  EXPECT_EQ(q.pop(t0 + 60ms), "H1");
  EXPECT_EQ(q.pop(t0 + 210ms), "L1");  // aged to high, queued before N1 (also aged to high)
  EXPECT_EQ(q.pop(t0 + 210ms), "N1");
}

TEST(PriorityQueue, HighIsNeverStarvedBehindLow) {
  // However long lows have waited, a high request only waits for entries queued before it.
  Q q;
  for (int i = 0; i < 50; ++i) q.push_back("l", Priority::low, t0);
  q.push_back("h", Priority::high, t0 + 10s);
  for (int i = 0; i < 50; ++i) q.push_back("l", Priority::low, t0 + 10s);
  int before = 0;
  while (q.front(t0 + 20s) != "h") {
    q.pop(t0 + 20s);
    ++before;
  }
  EXPECT_EQ(before, 50);  // only the lows queued earlier, none of the later ones
}

TEST(PriorityQueue, FreshHighGoesBeforeAgedLowQueuedLater) {
  Q q;
  q.push_back("h", Priority::high, t0);
  q.push_back("l", Priority::low, t0 - 1s);  // waited long (its call is old), queued after h
  EXPECT_EQ(q.pop(t0), "h");
}

TEST(PriorityQueue, LowIsNotStarvedForever) {
  // A steady stream of fresh high requests: the low one gets its turn once it counts as high.
  Q q;
  q.push_back("low", Priority::low, t0);
  auto now = t0;
  int served_before_low = 0;
  for (int i = 0; i < 1000; ++i) {
    q.push_back("high", Priority::high, now);
    if (q.pop(now) == "low") break;
    ++served_before_low;
    now += 10ms;
  }
  // Before 200 ms the low request ranks below high; at 200 ms it ties and, older, wins.
  EXPECT_EQ(served_before_low, 20);
  EXPECT_EQ(q.depth(Priority::low), 0u);
}

TEST(PriorityQueue, PushFrontGoesFirstInItsLane) {
  Q q;
  q.push_back("n1", Priority::normal, t0);
  q.push_back("n2", Priority::normal, t0);
  q.push_front("retry", Priority::normal, t0);
  q.push_back("h", Priority::high, t0);
  EXPECT_EQ(pop_all(q, t0), "h retry n1 n2 ");
}

TEST(PriorityQueue, EraseAndDrain) {
  Q q;
  q.push_back("a", Priority::low, t0);
  q.push_back("b", Priority::normal, t0);
  q.push_back("c", Priority::high, t0);
  EXPECT_TRUE(q.erase("b"));
  EXPECT_FALSE(q.erase("b"));
  EXPECT_EQ(q.size(), 2u);
  std::string drained;
  q.drain([&drained](std::string& s) { drained += s; });
  EXPECT_EQ(drained, "ca");
  EXPECT_TRUE(q.empty());
}

TEST(PriorityQueue, OffMeansFifo) {
  Q q(false);
  q.push_back("l", Priority::low, t0);
  q.push_back("h", Priority::high, t0);
  q.push_back("n", Priority::normal, t0);
  EXPECT_EQ(q.depth(Priority::normal), 3u);
  EXPECT_EQ(pop_all(q, t0), "l h n ");
}

}  // namespace
}  // namespace drover::supervisor
