#include "supervisor/pool/call.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drover::supervisor {
namespace {

struct Captured {
  std::vector<json> chunks;
  std::vector<json> replies;
  bool accept_chunks = true;

  CallSink sink() {
    CallSink s;
    s.chunk = [this](const StreamChunk& chunk) {
      chunks.push_back(json::parse(chunk.notification()));
      return accept_chunks;
    };
    s.reply = [this](std::string&& r) { replies.push_back(json::parse(r)); };
    return s;
  }
};

// `id`: the client's id as JSON text.
std::shared_ptr<Call> make_call(Captured& c, CallKind kind = CallKind::generate,
                                std::string id = "7", bool notification = false) {
  WorkerRequest request = proto::worker::GenerateRequest{};
  if (kind == CallKind::tokenize) request = proto::worker::BatchTokenizeRequest{"", {"x"}};
  if (kind == CallKind::detokenize) request = proto::worker::DetokenizeRequest{"", {1}};
  return std::make_shared<Call>("r-1", std::move(id), notification, std::move(request), c.sink());
}

proto::worker::GenerateResult result(std::string text) {
  return {std::move(text), "length", {1, 1}};
}

TEST(Call, AnswersExactlyOnce) {
  Captured c;
  auto call = make_call(c);
  int hooks = 0;
  call->on_finish([&hooks] { ++hooks; });
  call->finish_error(RpcError::timed_out, {}, json{{"timeout_ms", 5}});
  call->finish_generate(result("late"), 0);
  call->finish_text("x");
  call->finish_cancelled();
  ASSERT_EQ(c.replies.size(), 1u);
  EXPECT_EQ(c.replies[0]["error"]["code"], -32004);
  EXPECT_EQ(c.replies[0]["id"], 7);
  EXPECT_EQ(hooks, 1);
  EXPECT_TRUE(call->done());
}

TEST(Call, StreamChunksCarryClientIdAndContiguousIndex) {
  Captured c;
  auto call = make_call(c, CallKind::generate, R"("abc")");
  call->set_streaming(true);
  call->mark_dispatched({1, 1, 42});
  std::uint64_t i = 0;
  for (const char* t : {"a", "b", "c"}) {
    EXPECT_EQ(call->deliver_chunk(t, i++), Call::ChunkResult::delivered);
  }
  ASSERT_EQ(c.chunks.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c.chunks[i]["method"], "generate.chunk");
    EXPECT_EQ(c.chunks[i]["params"]["id"], "abc");
    EXPECT_EQ(c.chunks[i]["params"]["index"], i);
  }
  EXPECT_EQ(call->chunks_sent(), 3u);
}

TEST(Call, FailoverReplaySkipsWhatTheClientHasAndContinues) {
  Captured c;
  auto call = make_call(c);
  call->set_streaming(true);
  call->mark_dispatched({0, 1, 1});
  call->deliver_chunk("a", 0);
  call->deliver_chunk("b", 1);
  call->mark_requeued();  // worker died; the new one replays from index 0
  call->mark_dispatched({1, 2, 1});
  EXPECT_EQ(call->deliver_chunk("a", 0), Call::ChunkResult::skipped);
  EXPECT_EQ(call->deliver_chunk("b", 1), Call::ChunkResult::skipped);
  EXPECT_EQ(call->deliver_chunk("c", 2), Call::ChunkResult::delivered);
  ASSERT_EQ(c.chunks.size(), 3u);
  EXPECT_EQ(c.chunks[2]["params"]["index"], 2);
  EXPECT_EQ(c.chunks[2]["params"]["text"], "c");
  EXPECT_EQ((call->tried_slots()), (std::vector<int>{0, 1}));
}

TEST(Call, FailoverReplayThatDiffersIsReported) {
  Captured c;
  auto call = make_call(c);
  call->set_streaming(true);
  call->deliver_chunk("a", 0);
  call->mark_requeued();
  EXPECT_EQ(call->deliver_chunk("z", 0), Call::ChunkResult::diverged);
  EXPECT_EQ(call->deliver_chunk("a", 3), Call::ChunkResult::diverged);  // a gap
}

TEST(Call, UnaryCallsSendNoChunksAndStayRetryable) {
  Captured c;
  auto call = make_call(c);
  call->mark_dispatched({0, 1, 1});
  EXPECT_EQ(call->deliver_chunk("x", 0), Call::ChunkResult::skipped);
  EXPECT_TRUE(c.chunks.empty());
  EXPECT_EQ(call->chunks_sent(), 0u);
}

TEST(Call, SlowConsumerIsReported) {
  Captured c;
  c.accept_chunks = false;
  auto call = make_call(c);
  call->set_streaming(true);
  EXPECT_EQ(call->deliver_chunk("x", 0), Call::ChunkResult::slow_consumer);
}

TEST(Call, WorkerResultGetsSupervisorFields) {
  Captured c;
  auto call = make_call(c);
  call->mark_dispatched({3, 1, 9});
  call->finish_generate(result("hi"), 3);
  ASSERT_EQ(c.replies.size(), 1u);
  const json& r = c.replies[0]["result"];
  EXPECT_EQ(r["text"], "hi");
  EXPECT_EQ(r["worker"], 3);
  EXPECT_EQ(r["cache"], "miss");
  ASSERT_TRUE(r["timing"].is_object());
  EXPECT_GE(r["timing"]["total_ms"].get<double>(), r["timing"]["queue_ms"].get<double>());
}

TEST(Call, CancelBeforeDispatchGivesCancelledResultForGenerate) {
  Captured c;
  auto call = make_call(c);
  call->finish_cancelled();
  ASSERT_EQ(c.replies.size(), 1u);
  EXPECT_EQ(c.replies[0]["result"]["finish_reason"], "cancelled");
  EXPECT_EQ(c.replies[0]["result"]["text"], "");
  EXPECT_TRUE(c.replies[0]["result"]["worker"].is_null());
}

TEST(Call, CancelBeforeDispatchGivesMinus32005ForTokenize) {
  Captured c;
  auto call = make_call(c, CallKind::tokenize);
  call->finish_cancelled();
  ASSERT_EQ(c.replies.size(), 1u);
  EXPECT_EQ(c.replies[0]["error"]["code"], -32005);
}

TEST(Call, NotificationsNeverReply) {
  Captured c;
  auto call = make_call(c, CallKind::generate, "null", /*notification=*/true);
  call->set_streaming(true);
  call->deliver_chunk("x", 0);
  call->finish_generate(result("x"), 0);
  EXPECT_TRUE(c.chunks.empty());
  EXPECT_TRUE(c.replies.empty());
  EXPECT_TRUE(call->done());
}

TEST(Call, RequeueClearsAssignmentButCountsAttempts) {
  Captured c;
  auto call = make_call(c);
  call->mark_dispatched({0, 1, 5});
  call->mark_requeued();
  EXPECT_FALSE(call->assignment().has_value());
  EXPECT_EQ(call->state(), Call::State::queued);
  call->mark_dispatched({1, 1, 6});
  EXPECT_EQ(call->attempts(), 2);
  EXPECT_EQ(call->last_worker(), 1);
}

TEST(Call, IdsAreEchoedAsTheClientWroteThem) {
  for (const std::string id : {"1e2", "123456789012345678901234567890", R"("a\u0062")", "-0"}) {
    std::vector<std::string> replies;
    CallSink sink;
    sink.reply = [&replies](std::string&& r) { replies.push_back(std::move(r)); };
    Call call("r-1", id, false, proto::worker::DetokenizeRequest{"", {1}}, std::move(sink));
    call.finish_text("t");
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0], R"({"jsonrpc":"2.0","id":)" + id + R"(,"result":{"text":"t"}})");
  }
}

TEST(Call, TokenizeAnswersItsOneTokenList) {
  Captured c;
  auto call = make_call(c, CallKind::tokenize);
  call->finish_tokens({5, 6});
  ASSERT_EQ(c.replies.size(), 1u);
  EXPECT_EQ(c.replies[0]["result"], (json{{"tokens", {5, 6}}}));
}

TEST(Call, WorkerErrorDataIsPassedOnAsReceived) {
  Captured c;
  auto call = make_call(c);
  call->finish_error_text(RpcError::unknown_model, "Unknown model", R"({"model":"m","n":1.50})");
  ASSERT_EQ(c.replies.size(), 1u);
  EXPECT_EQ(c.replies[0]["error"]["code"], -32006);
  EXPECT_EQ(c.replies[0]["error"]["data"]["model"], "m");
}

TEST(Call, DetachedSinkDropsOutput) {
  Captured c;
  auto call = make_call(c);
  call->detach_sink();
  call->finish_generate(result("x"), 0);
  EXPECT_TRUE(c.replies.empty());
  EXPECT_TRUE(call->done());
}

}  // namespace
}  // namespace drover::supervisor
