// parse_worker_message: the classification the supervisor acts on, and every kind of garbage that
// must mark a worker as broken rather than be half-understood.
#include "proto/worker_messages.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace drover::proto::worker {
namespace {

using Kind = WorkerMessage::Kind;

WorkerMessage parse_ok(std::string_view text) {
  auto r = parse_worker_message(text);
  EXPECT_TRUE(r.has_value()) << text << ": " << (r.has_error() ? r.error() : "");
  return r.has_value() ? std::move(*r) : WorkerMessage{};
}

TEST(WorkerMessages, ReplyWithResult) {
  auto m = parse_ok(R"({"jsonrpc":"2.0","id":7,"result":{"text":"hi","finish_reason":"length"}})");
  EXPECT_EQ(m.kind, Kind::reply);
  EXPECT_EQ(m.id, 7u);
  EXPECT_EQ(m.result, json::parse(R"({"text":"hi","finish_reason":"length"})"));
  EXPECT_TRUE(m.error.is_null());
}

TEST(WorkerMessages, ReplyWithNullResultIsAResult) {
  auto m = parse_ok(R"({"jsonrpc":"2.0","id":0,"result":null})");
  EXPECT_EQ(m.kind, Kind::reply);
  EXPECT_EQ(m.id, 0u);
  EXPECT_TRUE(m.result.is_null());
  EXPECT_TRUE(m.error.is_null());
}

TEST(WorkerMessages, ReplyIdCoversTheUnsignedRange) {
  auto m = parse_ok(R"({"jsonrpc":"2.0","id":18446744073709551615,"result":1})");
  EXPECT_EQ(m.kind, Kind::reply);
  EXPECT_EQ(m.id, std::numeric_limits<std::uint64_t>::max());
}

TEST(WorkerMessages, ReplyWithError) {
  auto m = parse_ok(
      R"({"jsonrpc":"2.0","id":8,"error":{"code":-32005,"message":"Cancelled","data":{"x":1}}})");
  EXPECT_EQ(m.kind, Kind::reply);
  EXPECT_EQ(m.id, 8u);
  ASSERT_TRUE(m.error.is_object());
  EXPECT_EQ(m.error["code"], -32005);
  EXPECT_EQ(m.error["message"], "Cancelled");
  EXPECT_EQ(m.error["data"], json::parse(R"({"x":1})"));
}

TEST(WorkerMessages, ErrorCodeMayBeAnyIntAndMessageMayBeAbsent) {
  for (const std::string code : {"-2147483648", "2147483647", "0"}) {
    auto m = parse_ok(R"({"jsonrpc":"2.0","id":8,"error":{"code":)" + code + "}}");
    EXPECT_EQ(m.error["code"].get<int>(), std::stoi(code));
    EXPECT_EQ(m.error.value("message", std::string("none")), "none");
  }
}

TEST(WorkerMessages, Notifications) {
  auto hb = parse_ok(R"({"jsonrpc":"2.0","method":"heartbeat","params":{"inflight":3,
      "queue_depth":0,"rss_bytes":1048576,"models":["tiny"],"tokens_per_s":12.5}})");
  EXPECT_EQ(hb.kind, Kind::notification);
  EXPECT_EQ(hb.method, method::kHeartbeat);
  EXPECT_EQ(hb.params["inflight"], 3);
  EXPECT_EQ(hb.params["models"], json::parse(R"(["tiny"])"));

  auto chunk = parse_ok(
      R"({"jsonrpc":"2.0","method":"generate.chunk","params":{"id":5,"index":0,"text":"日本"}})");
  EXPECT_EQ(chunk.kind, Kind::notification);
  EXPECT_EQ(chunk.method, method::kChunk);
  EXPECT_EQ(chunk.params["text"], "日本");

  auto bare = parse_ok(R"({"jsonrpc":"2.0","method":"model.loaded"})");
  EXPECT_EQ(bare.kind, Kind::notification);
  EXPECT_EQ(bare.method, method::kModelLoaded);
  EXPECT_TRUE(bare.params.is_null());
}

TEST(WorkerMessages, Requests) {
  auto m = parse_ok(
      R"({"jsonrpc":"2.0","id":1,"method":"hello","params":{"worker_id":2,
      "pid":1234,"protocol":1,"capabilities":{"shm":true}}})");
  EXPECT_EQ(m.kind, Kind::request);
  EXPECT_EQ(m.id, 1u);
  EXPECT_EQ(m.method, method::kHello);
  EXPECT_EQ(m.params["protocol"], kProtocolVersion);
  EXPECT_EQ(m.params["capabilities"]["shm"], true);
}

TEST(WorkerMessages, GarbageIsAnError) {
  struct Garbage {
    std::string_view why;
    std::string text;
  };
  const std::vector<Garbage> cases = {
      {"empty", ""},
      {"not JSON", "not json"},
      {"truncated", R"({"jsonrpc":"2.0","id":1,"result":)"},
      {"empty array", "[]"},
      {"batch (not part of the protocol)", R"([{"jsonrpc":"2.0","id":1,"result":1}])"},
      {"number", "42"},
      {"string", R"("hello")"},
      {"null", "null"},
      {"missing jsonrpc", R"({"id":1,"result":1})"},
      {"wrong version", R"({"jsonrpc":"1.0","id":1,"result":1})"},
      {"version as a number", R"({"jsonrpc":2.0,"id":1,"result":1})"},
      {"string id", R"({"jsonrpc":"2.0","id":"1","result":1})"},
      {"negative id", R"({"jsonrpc":"2.0","id":-1,"result":1})"},
      {"fractional id", R"({"jsonrpc":"2.0","id":1.5,"result":1})"},
      {"null id", R"({"jsonrpc":"2.0","id":null,"result":1})"},
      {"reply without id", R"({"jsonrpc":"2.0","result":1})"},
      {"both result and error",
       R"({"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}})"},
      {"neither result nor error", R"({"jsonrpc":"2.0","id":1})"},
      {"error without code", R"({"jsonrpc":"2.0","id":1,"error":{"message":"no code"}})"},
      {"string error code", R"({"jsonrpc":"2.0","id":1,"error":{"code":"-32000","message":"x"}})"},
      {"fractional error code", R"({"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"x"}})"},
      {"error is a string", R"({"jsonrpc":"2.0","id":1,"error":"boom"})"},
      {"error is null", R"({"jsonrpc":"2.0","id":1,"error":null})"},
      // Found with fuzz/worker_messages_fuzz.cpp's consumer checks: droverd reads the code with
      // get<int>() and the message with value("message", std::string()), which threw here.
      {"error message not a string",
       R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":5}})"},
      {"error code beyond int", R"({"jsonrpc":"2.0","id":1,"error":{"code":4294967296}})"},
      {"error code below int", R"({"jsonrpc":"2.0","id":1,"error":{"code":-2147483649}})"},
      // nlohmann's dump() recurses once per level: a deep result would overflow droverd's stack
      // when it forwards the result to the client.
      {"nested deeper than kMaxJsonDepth",
       R"({"jsonrpc":"2.0","id":1,"result":)" + std::string(1'000'000, '[') +
           std::string(1'000'000, ']') + "}"},
      {"method not a string", R"({"jsonrpc":"2.0","method":5})"},
      {"request with string id", R"({"jsonrpc":"2.0","method":"hello","id":"w1"})"},
      {"request with negative id", R"({"jsonrpc":"2.0","method":"hello","id":-3})"},
  };
  for (const auto& c : cases) {
    const auto r = parse_worker_message(c.text);
    ASSERT_TRUE(r.has_error()) << c.why << " accepted: " << c.text;
    EXPECT_FALSE(r.error().empty()) << c.why;
  }
}

}  // namespace
}  // namespace drover::proto::worker

namespace drover::proto::worker {
namespace {

// What a worker reads from droverd's batch queue: one message or a batch array of them.
TEST(ParseWorkerMessages, ABatchArrayYieldsItsRequestsInOrder) {
  const auto r = parse_worker_messages(
      R"([{"jsonrpc":"2.0","id":7,"method":"generate","params":{"prompt":"a"}},)"
      R"({"jsonrpc":"2.0","id":8,"method":"batch_tokenize","params":{"texts":["x","y"]}},)"
      R"({"jsonrpc":"2.0","method":"cancel","params":{"id":7}}])");
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].kind, WorkerMessage::Kind::request);
  EXPECT_EQ((*r)[0].id, 7u);
  EXPECT_EQ((*r)[0].method, "generate");
  EXPECT_EQ((*r)[1].id, 8u);
  EXPECT_EQ((*r)[1].params["texts"].size(), 2u);
  EXPECT_EQ((*r)[2].kind, WorkerMessage::Kind::notification);
}

TEST(ParseWorkerMessages, ASingleMessageIsABatchOfOne) {
  const auto r = parse_worker_messages(R"({"jsonrpc":"2.0","id":1,"method":"detokenize"})");
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].method, "detokenize");
}

TEST(ParseWorkerMessages, AnEmptyOrInvalidBatchIsAnError) {
  EXPECT_FALSE(parse_worker_messages("[]"));
  const auto bad = parse_worker_messages(
      R"([{"jsonrpc":"2.0","id":1,"method":"generate"},{"jsonrpc":"1.0","id":2,"method":"x"}])");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("batch member 1"), std::string::npos) << bad.error();
  EXPECT_FALSE(parse_worker_messages("[1, 2]"));
  EXPECT_FALSE(parse_worker_messages("[{]"));
  // The single-message parser droverd uses for what workers send still refuses arrays.
  EXPECT_FALSE(parse_worker_message(R"([{"jsonrpc":"2.0","id":1,"result":{}}])"));
}

}  // namespace
}  // namespace drover::proto::worker
