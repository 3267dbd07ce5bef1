// DeadlineQueue: every armed entry expires once, in deadline order; a cancelled one (a call
// that finished) never does; an entry destroyed while armed unlinks itself. Real timers with
// millisecond timeouts, waited on with run_for and a condition, never a sleep.
#include "supervisor/pool/deadline_queue.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <vector>

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;

// Runs `io` until `done()` or 10 s pass.
template <typename Done>
bool run_until(boost::asio::io_context& io, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(5ms);
  }
  return done();
}

TEST(DeadlineQueue, EntriesExpireInDeadlineOrderAcrossTimeouts) {
  boost::asio::io_context io;
  std::vector<const Deadline*> seen;
  DeadlineQueue q(io, [&seen](Deadline& d) { seen.push_back(&d); });
  std::vector<std::unique_ptr<Deadline>> entries;
  for (const auto timeout : {30ms, 2ms, 15ms, 2ms}) {
    entries.push_back(std::make_unique<Deadline>());
    q.add(*entries.back(), timeout);
  }
  ASSERT_TRUE(run_until(io, [&] { return seen.size() == 4; }));
  EXPECT_EQ(q.size(), 0u);
  for (std::size_t i = 1; i < seen.size(); ++i) EXPECT_LE(seen[i - 1]->at, seen[i]->at);
  for (const auto& e : entries) EXPECT_FALSE(e->armed());
}

TEST(DeadlineQueue, ACancelledEntryNeverExpires) {
  boost::asio::io_context io;
  std::vector<const Deadline*> seen;
  DeadlineQueue q(io, [&seen](Deadline& d) { seen.push_back(&d); });
  Deadline cancelled, kept;
  q.add(cancelled, 1ms);
  q.add(kept, 5ms);
  EXPECT_EQ(q.size(), 2u);
  cancelled.cancel();
  EXPECT_FALSE(cancelled.armed());
  ASSERT_TRUE(run_until(io, [&] { return !seen.empty(); }));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], &kept);
}

TEST(DeadlineQueue, AnEntryDestroyedWhileArmedLeavesTheQueue) {
  boost::asio::io_context io;
  int expired = 0;
  DeadlineQueue q(io, [&expired](Deadline&) { ++expired; });
  Deadline survivor;
  {
    Deadline gone;
    q.add(gone, 1ms);
    EXPECT_EQ(q.size(), 1u);
  }
  EXPECT_EQ(q.size(), 0u);
  q.add(survivor, 2ms);
  ASSERT_TRUE(run_until(io, [&] { return expired == 1; }));
  EXPECT_FALSE(survivor.armed());
}

TEST(DeadlineQueue, AnExpiryMayArmAnotherEntry) {
  boost::asio::io_context io;
  Deadline first, second;
  std::vector<const Deadline*> seen;
  DeadlineQueue* queue = nullptr;
  DeadlineQueue q(io, [&](Deadline& d) {
    seen.push_back(&d);
    if (&d == &first) queue->add(second, 1ms);
  });
  queue = &q;
  q.add(first, 1ms);
  ASSERT_TRUE(run_until(io, [&] { return seen.size() == 2; }));
  EXPECT_EQ(seen[0], &first);
  EXPECT_EQ(seen[1], &second);
}

}  // namespace
}  // namespace drover::supervisor
