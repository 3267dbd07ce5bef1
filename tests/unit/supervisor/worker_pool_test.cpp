// WorkerPool's decisions by time, with a fake clock and no worker process: the pool is never
// started (start() is what spawns), so its slots stay empty; a link that is never started either
// reports its loss through the pool's public LinkObserver interface, as a dead worker's would.
#include "supervisor/pool/worker_pool.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/unit/fake_clock.hpp"

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;

struct Replies {
  std::vector<json> received;
  CallSink sink() {
    CallSink s;
    s.reply = [this](std::string&& r) { received.push_back(json::parse(r)); };
    return s;
  }
};

std::shared_ptr<Call> generate_call(Replies& replies, std::string prompt, std::uint64_t seed) {
  proto::worker::GenerateRequest request;
  request.prompt = std::move(prompt);
  request.seed = seed;
  return std::make_shared<Call>("r-1", proto::RpcId("1"), false, std::move(request), replies.sink());
}

TEST(WorkerPoolClock, PoisonRequestFailsFastUntilPoisonTtlOnThePoolsClock) {
  FakeClock clock;
  asio::io_context io;
  WorkersConfig workers;
  workers.count = 1;
  RetryConfig retry;
  retry.poison_threshold = 1;  // one worker taken down while running it is enough
  retry.poison_ttl = 60s;
  WorkerPool pool(io, workers, CircuitBreakerConfig{}, retry, "/nonexistent",
                  RoutingStrategy::round_robin, clock);
  WorkerLinkOptions options;
  options.slot = 0;
  auto link = std::make_shared<WorkerLink>(io, options, pool, clock);

  Replies replies;
  auto culprit = generate_call(replies, "boom", 1);
  pool.on_lost(*link, LinkLoss{"process killed by signal 11", true, true, clock.now()}, {culprit});
  ASSERT_TRUE(culprit->done());
  ASSERT_EQ(replies.received.size(), 1u);
  EXPECT_EQ(replies.received[0]["error"]["code"], code_of(RpcError::worker_failed));
  EXPECT_EQ(replies.received[0]["error"]["data"]["poison"], true);
  EXPECT_EQ(pool.stats().poisoned, 1u);

  // The same request (another seed: the seed does not matter) within poison_ttl fails fast.
  clock.advance(retry.poison_ttl - 1ms);
  auto again = generate_call(replies, "boom", 2);
  pool.submit(again);
  ASSERT_TRUE(again->done());
  ASSERT_EQ(replies.received.size(), 2u);
  EXPECT_EQ(replies.received[1]["error"]["code"], code_of(RpcError::worker_failed));
  EXPECT_EQ(replies.received[1]["error"]["data"]["poison"], true);
  EXPECT_EQ(replies.received[1]["error"]["data"]["attempts"], 0);

  // A different request is not affected (here: no worker at all, so -32002).
  auto other = generate_call(replies, "fine", 1);
  pool.submit(other);
  ASSERT_EQ(replies.received.size(), 3u);
  EXPECT_EQ(replies.received[2]["error"]["code"], code_of(RpcError::no_healthy_worker));

  // From poison_ttl on, the request is judged afresh like any other.
  clock.advance(1ms);
  auto later = generate_call(replies, "boom", 3);
  pool.submit(later);
  ASSERT_EQ(replies.received.size(), 4u);
  EXPECT_EQ(replies.received[3]["error"]["code"], code_of(RpcError::no_healthy_worker));
  EXPECT_FALSE(replies.received[3]["error"]["data"].contains("poison"));
}

// Issue 15 item 7: a cancel sent to the worker holding a call is not forgotten when that worker
// dies before answering it: the orphan ends cancelled and is not retried (a client that
// cancelled gets no full result; a disconnected client's work does not re-run for nobody).
TEST(WorkerPoolClock, AnOrphanWhoseCancelWasSentEndsCancelledAndIsNotRetried) {
  FakeClock clock;
  asio::io_context io;
  WorkersConfig workers;
  workers.count = 1;
  WorkerPool pool(io, workers, CircuitBreakerConfig{}, RetryConfig{}, "/nonexistent",
                  RoutingStrategy::round_robin, clock);
  WorkerLinkOptions options;
  options.slot = 0;
  auto link = std::make_shared<WorkerLink>(io, options, pool, clock);

  Replies replies;
  auto cancelled = generate_call(replies, "cancel me", 1);
  cancelled->mark_dispatched({0, 1, 7});
  pool.cancel(cancelled);  // goes to the worker that holds it; the worker answers, normally
  ASSERT_FALSE(cancelled->done());
  LinkLoss loss{"process killed by signal 9", false, true, std::nullopt, true};
  pool.on_lost(*link, loss, {cancelled});
  ASSERT_TRUE(cancelled->done());
  ASSERT_EQ(replies.received.size(), 1u);
  EXPECT_EQ(replies.received[0]["result"]["finish_reason"], "cancelled") << replies.received[0];
  EXPECT_TRUE(cancelled->outcome().cancelled);
  EXPECT_EQ(pool.stats().retries, 0u);
}

}  // namespace
}  // namespace drover::supervisor
