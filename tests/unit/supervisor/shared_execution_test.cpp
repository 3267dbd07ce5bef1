#include "supervisor/pipeline/shared_execution.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "supervisor/pipeline/in_flight_table.hpp"

namespace drover::supervisor {
namespace {

using namespace std::chrono_literals;

// One client's view: what its sink received.
struct Client {
  std::vector<json> chunks;
  std::vector<json> replies;
  bool reading = true;

  CallSink sink() {
    CallSink s;
    s.chunk = [this](const StreamChunk& c) {
      if (!reading) return false;
      chunks.push_back(json::parse(c.notification()));
      return true;
    };
    s.reply = [this](std::string&& r) { replies.push_back(json::parse(r)); };
    return s;
  }
  std::string chunk_text() const {
    std::string out;
    for (const auto& c : chunks) out += c["params"]["text"].get<std::string>();
    return out;
  }
};

// `id`: the client's id (a tree here, for readable tests; its JSON text goes to the Call).
std::shared_ptr<Call> client_call(Client& c, const json& id, bool stream) {
  auto call = std::make_shared<Call>("r-" + id.dump(), id.dump(), false,
                                     proto::worker::GenerateRequest{}, c.sink());
  call->set_streaming(stream);
  return call;
}

std::shared_ptr<Call> execution_call(bool stream) {
  auto call = std::make_shared<Call>("r-exec", "null", false, proto::worker::GenerateRequest{},
                                     CallSink{});
  call->set_streaming(stream);
  return call;
}

const proto::worker::GenerateResult kResult{"abc", "length", {1, 3}};

TEST(SharedExecution, IdenticalRequestsShareOneRunAndEachGetsItsOwnAnswer) {
  auto exec = execution_call(false);
  auto run = SharedExecution::create(exec, 0);
  Client leader, follower;
  auto a = client_call(leader, 1, false);
  auto b = client_call(follower, "two", false);
  run->subscribe(a, "miss");
  ASSERT_TRUE(run->joinable());
  run->subscribe(b, "coalesced");
  int finished = 0;
  run->on_finished([&finished](const proto::worker::GenerateResult* r, int slot) {
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(slot, 3);
    ++finished;
  });
  exec->mark_dispatched({3, 1, 99});
  // The pool finishes the execution call; the relay answers both clients.
  exec->finish_generate(kResult, 3);
  EXPECT_EQ(finished, 1);
  ASSERT_EQ(leader.replies.size(), 1u);
  ASSERT_EQ(follower.replies.size(), 1u);
  EXPECT_EQ(leader.replies[0]["id"], 1);
  EXPECT_EQ(follower.replies[0]["id"], "two");
  EXPECT_EQ(leader.replies[0]["result"]["text"], "abc");
  EXPECT_EQ(follower.replies[0]["result"]["text"], "abc");
  EXPECT_EQ(leader.replies[0]["result"]["cache"], "miss");
  EXPECT_EQ(follower.replies[0]["result"]["cache"], "coalesced");
  EXPECT_EQ(follower.replies[0]["result"]["worker"], 3);
  EXPECT_TRUE(a->done());
  EXPECT_TRUE(b->done());
  EXPECT_FALSE(run->joinable());
}

// Issue 15 item 4: once the run itself is being cancelled at its worker, nobody may join it;
// its one subscriber still gets the worker's (cancelled) answer.
TEST(SharedExecution, ARunBeingCancelledIsNotJoinableAndItsSubscriberIsAnswered) {
  auto exec = execution_call(true);
  auto run = SharedExecution::create(exec, 1 << 20);
  Client only;
  auto a = client_call(only, 1, true);
  run->subscribe(a, "miss");
  exec->mark_dispatched({0, 1, 7});
  exec->deliver_chunk("x", 0);
  ASSERT_TRUE(run->joinable());
  run->cancel_requested();
  EXPECT_FALSE(run->joinable());
  EXPECT_FALSE(run->finished());
  exec->finish_generate({"x", "cancelled", {1, 1}}, 0);
  ASSERT_EQ(only.replies.size(), 1u);
  EXPECT_EQ(only.replies[0]["result"]["finish_reason"], "cancelled");
  EXPECT_EQ(only.chunk_text(), "x");
}

TEST(SharedExecution, ErrorGoesToTheRequestsWaitingAndTheRunIsForgotten) {
  auto exec = execution_call(false);
  auto run = SharedExecution::create(exec, 0);
  InFlightTable table;
  const InFlightTable::Limits limits{100, 1000ms};
  const auto now = InFlightTable::Clock::now();
  ASSERT_TRUE(table.add_running("k", false, run, limits, now));
  bool saw_error = false;
  run->on_finished([&](const proto::worker::GenerateResult* r, int) {
    saw_error = r == nullptr;
    table.remove_running("k", false, run.get());
  });
  Client one, two;
  run->subscribe(client_call(one, 1, false), "miss");
  run->subscribe(client_call(two, 2, false), "coalesced");
  exec->finish_error(RpcError::worker_failed, "Worker failed", json{{"attempts", 3}});
  EXPECT_TRUE(saw_error);
  for (Client* c : {&one, &two}) {
    ASSERT_EQ(c->replies.size(), 1u);
    EXPECT_EQ(c->replies[0]["error"]["code"], -32003);
    EXPECT_EQ(c->replies[0]["error"]["data"]["attempts"], 3);
  }
  // A request arriving after the error finds nothing to share and nothing remembered.
  EXPECT_EQ(table.find_running("k", false), nullptr);
  EXPECT_EQ(table.find_recent("k", now), nullptr);
  EXPECT_FALSE(run->joinable());
}

TEST(SharedExecution, LateJoinerGetsMissedChunksThenLiveOnesUnderItsOwnIdAndIndices) {
  auto exec = execution_call(true);
  auto run = SharedExecution::create(exec, 1 << 20);
  Client leader, joiner;
  run->subscribe(client_call(leader, "L", true), "miss");
  exec->mark_dispatched({0, 1, 5});
  EXPECT_EQ(exec->deliver_chunk("a", 0), Call::ChunkResult::delivered);
  EXPECT_EQ(exec->deliver_chunk("b", 1), Call::ChunkResult::delivered);
  // A failover replay of a chunk already relayed is not relayed twice.
  EXPECT_EQ(exec->deliver_chunk("a", 0), Call::ChunkResult::skipped);
  ASSERT_EQ(leader.chunks.size(), 2u);

  run->subscribe(client_call(joiner, 9, true), "coalesced");
  ASSERT_EQ(joiner.chunks.size(), 2u) << "the joiner first gets the chunks it missed";
  EXPECT_EQ(exec->deliver_chunk("c", 2), Call::ChunkResult::delivered);
  exec->finish_generate(kResult, 0);

  EXPECT_EQ(leader.chunk_text(), "abc");
  EXPECT_EQ(joiner.chunk_text(), "abc");
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(joiner.chunks[i]["params"]["id"], 9);
    EXPECT_EQ(joiner.chunks[i]["params"]["index"], i);
    EXPECT_EQ(leader.chunks[i]["params"]["id"], "L");
    EXPECT_EQ(leader.chunks[i]["params"]["index"], i);
  }
  ASSERT_EQ(joiner.replies.size(), 1u);
  EXPECT_EQ(joiner.replies[0]["result"]["text"], "abc");
  EXPECT_EQ(joiner.replies[0]["result"]["cache"], "coalesced");
  EXPECT_EQ(run->chunks(), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(SharedExecution, LeaderLeavingDoesNotEndTheRunForTheOthers) {
  auto exec = execution_call(true);
  auto run = SharedExecution::create(exec, 1 << 20);
  int abandoned = 0;
  run->on_abandoned([&abandoned](const CallOutcome&) { ++abandoned; });
  Client leader, joiner;
  auto lead = client_call(leader, 1, true);
  run->subscribe(lead, "miss");
  exec->deliver_chunk("a", 0);
  run->subscribe(client_call(joiner, 2, true), "coalesced");
  // The leader's client cancels (or disconnects, or times out): only it is detached.
  lead->finish_cancelled();
  EXPECT_EQ(abandoned, 0);
  EXPECT_EQ(run->subscribers(), 1u);
  exec->deliver_chunk("b", 1);
  exec->deliver_chunk("c", 2);
  exec->finish_generate(kResult, 0);
  ASSERT_EQ(leader.replies.size(), 1u);
  EXPECT_EQ(leader.replies[0]["result"]["finish_reason"], "cancelled");
  EXPECT_EQ(leader.chunk_text(), "a");
  // A detached stream's answer is what it received.
  EXPECT_EQ(leader.replies[0]["result"]["text"], "a");
  EXPECT_EQ(leader.replies[0]["result"]["usage"]["completion_tokens"], 1);
  ASSERT_EQ(joiner.replies.size(), 1u);
  EXPECT_EQ(joiner.replies[0]["result"]["text"], "abc");
  EXPECT_EQ(joiner.chunk_text(), "abc");
}

TEST(SharedExecution, LastSubscriberLeavingAbandonsTheRunOnce) {
  auto exec = execution_call(false);
  auto run = SharedExecution::create(exec, 0);
  int abandoned = 0;
  std::optional<CallOutcome> last;
  run->on_abandoned([&](const CallOutcome& o) {
    ++abandoned;
    last = o;
  });
  Client one, two;
  auto a = client_call(one, 1, false);
  auto b = client_call(two, 2, false);
  run->subscribe(a, "miss");
  run->subscribe(b, "coalesced");
  a->finish_error(RpcError::timed_out, {}, json{{"timeout_ms", 10}});
  EXPECT_EQ(abandoned, 0);
  b->finish_error(RpcError::timed_out, {}, json{{"timeout_ms", 20}});
  EXPECT_EQ(abandoned, 1);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->code, -32004) << "the pipeline tells the worker's breaker of the timeout";
  EXPECT_FALSE(run->joinable());
  // The cancelled run's late answer reaches nobody.
  exec->finish_generate(kResult, 0);
  EXPECT_EQ(one.replies.size(), 1u);
  EXPECT_EQ(two.replies.size(), 1u);
}

TEST(SharedExecution, SlowJoinerFailsAloneDuringReplay) {
  auto exec = execution_call(true);
  auto run = SharedExecution::create(exec, 1 << 20);
  Client leader, slow;
  run->subscribe(client_call(leader, 1, true), "miss");
  exec->deliver_chunk("a", 0);
  exec->deliver_chunk("b", 1);
  slow.reading = false;
  run->subscribe(client_call(slow, 2, true), "coalesced");
  ASSERT_EQ(slow.replies.size(), 1u);
  EXPECT_EQ(slow.replies[0]["error"]["code"], -32010);
  EXPECT_EQ(run->subscribers(), 1u);
  exec->finish_generate(kResult, 0);
  ASSERT_EQ(leader.replies.size(), 1u);
  EXPECT_TRUE(leader.replies[0].contains("result"));
}

TEST(SharedExecution, StreamBeyondMaxReplayBytesTakesNoMoreJoiners) {
  auto exec = execution_call(true);
  auto run = SharedExecution::create(exec, 4);
  Client leader;
  run->subscribe(client_call(leader, 1, true), "miss");
  exec->deliver_chunk("abc", 0);
  EXPECT_TRUE(run->joinable());
  exec->deliver_chunk("de", 1);  // 5 bytes > 4
  EXPECT_FALSE(run->joinable());
  EXPECT_FALSE(run->replay_complete());
  EXPECT_TRUE(run->chunks().empty());
  exec->finish_generate(kResult, 0);
  EXPECT_EQ(leader.chunk_text(), "abcde") << "the subscribers' streams are not affected";
}

TEST(InFlightTable, RemembersAResultForTtlOnly) {
  InFlightTable table;
  const InFlightTable::Limits limits{100, 1000ms};
  const auto t0 = InFlightTable::Clock::time_point(std::chrono::hours(1));
  table.remember("k", kResult, 2, limits, t0);
  ASSERT_NE(table.find_recent("k", t0 + 999ms), nullptr);
  EXPECT_EQ(table.find_recent("k", t0 + 999ms)->worker_slot, 2);
  EXPECT_EQ(table.find_recent("k", t0 + 1000ms), nullptr);
  EXPECT_EQ(table.recent(), 0u);
  // ttl 0: nothing is remembered.
  table.remember("k", kResult, 2, {100, 0ms}, t0);
  EXPECT_EQ(table.find_recent("k", t0), nullptr);
}

TEST(InFlightTable, FullTableDoesNotShareNewRunsUntilResultsExpire) {
  InFlightTable table;
  const InFlightTable::Limits limits{2, 1000ms};
  const auto t0 = InFlightTable::Clock::time_point(std::chrono::hours(1));
  auto r1 = SharedExecution::create(execution_call(false), 0);
  auto r2 = SharedExecution::create(execution_call(false), 0);
  ASSERT_TRUE(table.add_running("a", false, r1, limits, t0));
  table.remember("b", kResult, 0, limits, t0);
  EXPECT_FALSE(table.add_running("c", false, r2, limits, t0));
  EXPECT_EQ(table.find_running("c", false), nullptr);
  // Once b's result expired there is room again.
  EXPECT_TRUE(table.add_running("c", false, r2, limits, t0 + 2s));
  // Streams and unary runs of one key are separate entries; removal checks the run.
  EXPECT_EQ(table.find_running("a", true), nullptr);
  table.remove_running("a", false, r2.get());
  EXPECT_EQ(table.find_running("a", false), r1);
  table.remove_running("a", false, r1.get());
  EXPECT_EQ(table.find_running("a", false), nullptr);
}

}  // namespace
}  // namespace drover::supervisor
