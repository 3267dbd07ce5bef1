// proto/worker_codec.hpp, the worker protocol's one codec: every encoder round-trips through
// Decoder::decode and the matching read_*, whatever the strings carry; batches keep their order;
// and every kind of garbage a broken worker (or supervisor) can write is an error naming the
// problem, never a crash and never a half-understood message.
#include "proto/worker_codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "proto/json_text.hpp"

namespace drover::proto::worker {
namespace {

using namespace std::string_literals;
using Kind = Message::Kind;

const std::string kFffd = "\xEF\xBF\xBD";  // U+FFFD

// A string and what must come back after it is encoded and decoded: itself when it is valid
// UTF-8, with U+FFFD for each byte that starts no valid sequence otherwise.
struct Text {
  std::string in;
  std::string out;
};

const std::vector<Text>& texts() {
  static const std::vector<Text> all = {
      {"", ""},
      {"plain", "plain"},
      {R"(say "hi")", R"(say "hi")"},
      {R"(C:\dir\)", R"(C:\dir\)"},
      {"a\nb\rc\td\be\ff", "a\nb\rc\td\be\ff"},
      {"\x01\x1f\x7f", "\x01\x1f\x7f"},
      {"nul\0inside"s, "nul\0inside"s},
      {"héllo 日本語 😀 𝄞", "héllo 日本語 😀 𝄞"},
      {"]}{[\",:", "]}{[\",:"},
      {"\xff", kFffd},
      {"ok\xff\xfe", "ok" + kFffd + kFffd},
      {"cut \xE6\x97", "cut " + kFffd + kFffd},
      {"\xC0\xAF", kFffd + kFffd},
      {"\xED\xA0\x80", kFffd + kFffd + kFffd},
      {"\xC3\xA9\x80\xC3\xA9", "\xC3\xA9" + kFffd + "\xC3\xA9"},
  };
  return all;
}

// Decodes `text`, which must be exactly one message.
Message one(Decoder& d, std::string_view text) {
  auto r = d.decode(text);
  EXPECT_TRUE(r.has_value()) << text << ": " << (r.has_error() ? r.error() : "");
  if (!r.has_value()) return {};
  EXPECT_EQ(r->size(), 1u) << text;
  return r->empty() ? Message{} : (*r)[0];
}

// The error text for `text`, or "<accepted>".
std::string refusal(std::string_view text) {
  Decoder d;
  const auto r = d.decode(text);
  return r.has_error() ? r.error() : "<accepted>";
}

// --- supervisor -> worker ------------------------------------------------------------------------

TEST(WorkerCodecRoundTrip, Generate) {
  Decoder d;
  for (const auto& t : texts()) {
    GenerateRequest g;
    g.model = t.in;
    g.prompt = t.in + "|prompt";
    g.max_tokens = 17;
    g.temperature = 0.8;
    g.top_p = 1.0 / 3;
    g.seed = std::numeric_limits<std::uint64_t>::max();
    g.stop = {t.in.empty() ? "x" : t.in, "\n"};
    g.stream = true;
    std::string wire;
    encode_generate(wire, 42, g);
    const Message m = one(d, wire);
    EXPECT_EQ(m.kind, Kind::request);
    EXPECT_EQ(m.id, 42u);
    EXPECT_EQ(m.method, method::kGenerate);
    const auto r = read_generate(m.params);
    ASSERT_TRUE(r.has_value()) << wire << ": " << r.error();
    EXPECT_EQ(r->model, t.out);
    EXPECT_EQ(r->prompt, t.out + "|prompt");
    EXPECT_EQ(r->max_tokens, 17);
    EXPECT_EQ(r->temperature, 0.8) << "doubles round-trip exactly";
    EXPECT_EQ(r->top_p, 1.0 / 3);
    EXPECT_EQ(r->seed, std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(r->stop, (std::vector<std::string>{t.in.empty() ? "x" : t.out, "\n"}));
    EXPECT_TRUE(r->stream);
  }
}

TEST(WorkerCodecRoundTrip, GenerateDefaultsLeaveOutModelAndStop) {
  std::string wire;
  encode_generate(wire, 0, GenerateRequest{"", "p"});
  EXPECT_EQ(wire, R"({"jsonrpc":"2.0","id":0,"method":"generate","params":{"prompt":"p",)"
                  R"("max_tokens":64,"temperature":0.8,"top_p":0.95,"seed":0,"stream":false}})");
  Decoder d;
  const auto r = read_generate(one(d, wire).params);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->model, "");
  EXPECT_TRUE(r->stop.empty());
  EXPECT_FALSE(r->stream);
}

TEST(WorkerCodecRoundTrip, BatchTokenize) {
  Decoder d;
  std::vector<std::string_view> in;
  std::vector<std::string> expected;
  for (const auto& t : texts()) {
    in.push_back(t.in);
    expected.push_back(t.out);
  }
  std::string wire;
  encode_batch_tokenize(wire, 7, "tiny \"m\"", in);
  const Message m = one(d, wire);
  EXPECT_EQ(m.kind, Kind::request);
  EXPECT_EQ(m.id, 7u);
  EXPECT_EQ(m.method, method::kBatchTokenize);
  const auto r = read_batch_tokenize(m.params);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->model, "tiny \"m\"");
  EXPECT_EQ(r->texts, expected);

  std::string empty;
  encode_batch_tokenize(empty, 8, "", {});
  const auto e = read_batch_tokenize(one(d, empty).params);
  ASSERT_TRUE(e.has_value()) << e.error();
  EXPECT_TRUE(e->texts.empty());
  EXPECT_EQ(e->model, "");
}

TEST(WorkerCodecRoundTrip, Detokenize) {
  Decoder d;
  const DetokenizeRequest in{
      "m",
      {0, -1, std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()}};
  std::string wire;
  encode_detokenize(wire, 9, in);
  const Message m = one(d, wire);
  EXPECT_EQ(m.method, method::kDetokenize);
  const auto r = read_detokenize(m.params);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->tokens, in.tokens);
}

TEST(WorkerCodecRoundTrip, CancelShutdownInject) {
  Decoder d;
  std::string cancel;
  encode_cancel(cancel, std::numeric_limits<std::uint64_t>::max());
  const Message c = one(d, cancel);
  EXPECT_EQ(c.kind, Kind::notification);
  EXPECT_EQ(c.method, method::kCancel);
  const auto id = read_cancel(c.params);
  ASSERT_TRUE(id.has_value()) << id.error();
  EXPECT_EQ(*id, std::numeric_limits<std::uint64_t>::max());

  std::string shutdown;
  encode_shutdown(shutdown);
  const Message s = one(d, shutdown);
  EXPECT_EQ(s.kind, Kind::notification);
  EXPECT_EQ(s.method, method::kShutdown);
  EXPECT_EQ(s.params, "{}");

  for (const auto& t : texts()) {
    std::string inject;
    encode_inject(inject, t.in);
    const Message i = one(d, inject);
    EXPECT_EQ(i.method, method::kInject);
    const auto fault = read_inject(i.params);
    ASSERT_TRUE(fault.has_value()) << fault.error();
    EXPECT_EQ(*fault, t.out);
  }
}

TEST(WorkerCodecRoundTrip, ControlPlaneRequestsAndNotificationsCarryTrees) {
  Decoder d;
  const json params = {{"models", {{{"id", "tiny"}, {"warmup", {"hi", "日本"}}}}},
                       {"settings", {{"x", 1.5}, {"big", 18446744073709551615ULL}}}};
  std::string wire;
  encode_request(wire, 3, method::kInit, params);
  const Message m = one(d, wire);
  EXPECT_EQ(m.kind, Kind::request);
  EXPECT_EQ(m.method, method::kInit);
  const auto tree = read_tree(m.params);
  ASSERT_TRUE(tree.has_value()) << tree.error();
  EXPECT_EQ(*tree, params);

  std::string hello;
  encode_notification(hello, method::kHello,
                      {{"worker_id", 2}, {"pid", 1234}, {"protocol", kProtocolVersion}});
  const Message h = one(d, hello);
  EXPECT_EQ(h.kind, Kind::notification);
  EXPECT_EQ(h.method, method::kHello);
  EXPECT_EQ((*read_tree(h.params))["protocol"], kProtocolVersion);

  EXPECT_TRUE(read_tree("")->is_null()) << "absent is null";
  EXPECT_TRUE(read_tree("{").has_error());
}

// --- worker -> supervisor ------------------------------------------------------------------------

TEST(WorkerCodecRoundTrip, GenerateResult) {
  Decoder d;
  for (const auto& t : texts()) {
    GenerateResult g{t.in, "length", {std::numeric_limits<std::int64_t>::max(), 0}};
    std::string wire;
    encode_generate_result(wire, 5, g);
    const Message m = one(d, wire);
    EXPECT_EQ(m.kind, Kind::reply);
    EXPECT_EQ(m.id, 5u);
    EXPECT_FALSE(m.error.has_value());
    const auto r = read_generate_result(m.result);
    ASSERT_TRUE(r.has_value()) << wire << ": " << r.error();
    EXPECT_EQ(r->text, t.out);
    EXPECT_EQ(r->finish_reason, "length");
    EXPECT_EQ(r->usage.prompt_tokens, std::numeric_limits<std::int64_t>::max());
    EXPECT_EQ(r->usage.completion_tokens, 0);
  }
}

TEST(WorkerCodecRoundTrip, TokensAndTextResults) {
  Decoder d;
  const std::vector<std::vector<std::int64_t>> lists = {{1, 2, 3}, {}, {-7}};
  std::string tokens;
  encode_tokens_result(tokens, 11, lists);
  const Message m = one(d, tokens);
  EXPECT_EQ(m.kind, Kind::reply);
  const auto r = read_tokens_result(m.result);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(*r, lists);

  for (const auto& t : texts()) {
    std::string text;
    encode_text_result(text, 12, t.in);
    const auto back = read_text_result(one(d, text).result);
    ASSERT_TRUE(back.has_value()) << back.error();
    EXPECT_EQ(*back, t.out);
  }

  std::string tree;
  encode_result(tree, 13, json{{"loaded", true}, {"ms", 12.5}});
  const Message c = one(d, tree);
  EXPECT_EQ(*read_tree(c.result), (json{{"loaded", true}, {"ms", 12.5}}));
}

TEST(WorkerCodecRoundTrip, Errors) {
  Decoder d;
  for (const auto& t : texts()) {
    std::string wire;
    encode_error(wire, 14, RpcError::cancelled, t.in, R"({"attempts":2,"why":"x"})");
    const Message m = one(d, wire);
    EXPECT_EQ(m.kind, Kind::reply);
    EXPECT_EQ(m.id, 14u);
    ASSERT_TRUE(m.error.has_value());
    EXPECT_EQ(m.error->code, code_of(RpcError::cancelled));
    EXPECT_EQ(m.error->message,
              t.in.empty() ? std::string(default_message(RpcError::cancelled)) : t.out);
    EXPECT_EQ(m.error->data, R"({"attempts":2,"why":"x"})");
    EXPECT_TRUE(m.result.empty());
  }
  std::string bare;
  encode_error(bare, 15, RpcError::internal_error, "");
  const Message b = one(d, bare);
  ASSERT_TRUE(b.error.has_value());
  EXPECT_EQ(b.error->message, "Internal error");
  EXPECT_TRUE(b.error->data.empty());
}

TEST(WorkerCodecRoundTrip, Chunk) {
  Decoder d;
  for (const auto& t : texts()) {
    std::string wire;
    encode_chunk(wire, std::numeric_limits<std::uint64_t>::max(), 3, t.in);
    const Message m = one(d, wire);
    EXPECT_EQ(m.kind, Kind::notification);
    EXPECT_EQ(m.method, method::kChunk);
    const auto c = read_chunk(m.params);
    ASSERT_TRUE(c.has_value()) << wire << ": " << c.error();
    EXPECT_EQ(c->id, std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(c->index, 3u);
    EXPECT_EQ(c->text, t.out);
  }
}

TEST(WorkerCodecRoundTrip, Heartbeat) {
  Decoder d;
  Heartbeat h;
  h.inflight = 3;
  h.queue_depth = 1;
  h.rss_bytes = 1 << 30;
  h.tokens_per_s = 12.5;
  h.models = std::vector<std::string>{"tiny", "日本 \"m\""};
  h.progress = 99;
  h.steps = 250;
  h.step_us = 3812.5;
  std::string wire;
  encode_heartbeat(wire, h);
  const Message m = one(d, wire);
  EXPECT_EQ(m.kind, Kind::notification);
  EXPECT_EQ(m.method, method::kHeartbeat);
  const auto r = read_heartbeat(m.params);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->inflight, 3);
  EXPECT_EQ(r->queue_depth, 1);
  EXPECT_EQ(r->rss_bytes, 1 << 30);
  EXPECT_EQ(r->tokens_per_s, 12.5);
  EXPECT_EQ(r->models, h.models);
  EXPECT_EQ(r->progress, 99);
  EXPECT_EQ(r->steps, 250);
  EXPECT_EQ(r->step_us, 3812.5);

  // Without models and progress, they stay "not reported".
  std::string bare;
  encode_heartbeat(bare, Heartbeat{});
  const auto b = read_heartbeat(one(d, bare).params);
  ASSERT_TRUE(b.has_value()) << b.error();
  EXPECT_FALSE(b->models.has_value());
  EXPECT_EQ(b->progress, -1);
  EXPECT_EQ(bare.find("progress"), std::string::npos) << bare;
  EXPECT_EQ(b->steps, 0);
  EXPECT_EQ(bare.find("step"), std::string::npos) << "no steps, no step figures: " << bare;
}

// --- the envelope --------------------------------------------------------------------------------

TEST(WorkerCodecDecode, ABatchYieldsItsMessagesInOrder) {
  std::string a, b, c, e;
  encode_generate(a, 7, GenerateRequest{"", "a"});
  encode_batch_tokenize(b, 8, "", {"x", "y"});
  encode_cancel(c, 7);
  encode_error(e, 9, RpcError::timed_out, "late");
  const std::string batch = "[" + a + ",\n " + b + " , " + c + "," + e + "]";
  Decoder d;
  const auto r = d.decode(batch);
  ASSERT_TRUE(r.has_value()) << r.error();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].kind, Kind::request);
  EXPECT_EQ((*r)[0].id, 7u);
  EXPECT_EQ((*r)[0].method, "generate");
  EXPECT_EQ(read_generate((*r)[0].params)->prompt, "a");
  EXPECT_EQ((*r)[1].id, 8u);
  EXPECT_EQ(read_batch_tokenize((*r)[1].params)->texts.size(), 2u);
  EXPECT_EQ((*r)[2].kind, Kind::notification);
  EXPECT_EQ(*read_cancel((*r)[2].params), 7u);
  EXPECT_EQ((*r)[3].kind, Kind::reply);
  ASSERT_TRUE((*r)[3].error.has_value());
  EXPECT_EQ((*r)[3].error->message, "late");
}

TEST(WorkerCodecDecode, RawValuesAreTheBytesReceived) {
  Decoder d;
  const Message m = one(d, R"({"jsonrpc":"2.0","id":7,"result": {"text" : "}" , "x":[1, 2]} })");
  EXPECT_EQ(m.result, R"({"text" : "}" , "x":[1, 2]})");
  const Message n = one(d, R"({"jsonrpc":"2.0","id":0,"result":null})");
  EXPECT_EQ(n.kind, Kind::reply);
  EXPECT_EQ(n.result, "null") << "a null result is a result";
  EXPECT_FALSE(n.error.has_value());
  const Message s = one(d, R"({"jsonrpc":"2.0","id":1,"result":"str" })");
  EXPECT_EQ(s.result, R"("str")");
  const Message e = one(d, R"({"jsonrpc":"2.0","id":1,"error":{"code":1,"data":[1,"]"] }})");
  EXPECT_EQ(e.error->data, R"([1,"]"])");
  const Message bare = one(d, R"({"jsonrpc":"2.0","method":"model.loaded"})");
  EXPECT_EQ(bare.kind, Kind::notification);
  EXPECT_TRUE(bare.params.empty());
}

TEST(WorkerCodecDecode, IdsCoverTheUnsignedRange) {
  Decoder d;
  EXPECT_EQ(one(d, R"({"jsonrpc":"2.0","id":18446744073709551615,"result":1})").id,
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(one(d, R"({"jsonrpc":"2.0","id":0,"method":"hello"})").id, 0u);
}

TEST(WorkerCodecDecode, ErrorCodeMayBeAnyIntAndMessageMayBeAbsent) {
  for (const std::string code : {"-2147483648", "2147483647", "0", "-0"}) {
    Decoder d;
    const Message m = one(d, R"({"jsonrpc":"2.0","id":8,"error":{"code":)" + code + "}}");
    ASSERT_TRUE(m.error.has_value()) << code;
    EXPECT_EQ(m.error->code, std::stoi(code));
    EXPECT_EQ(m.error->message, "");
  }
}

TEST(WorkerCodecDecode, UnknownMembersAreAllowedButMustBeJson) {
  EXPECT_EQ(refusal(R"({"jsonrpc":"2.0","id":1,"result":1,"extra":{"a":[1,2,{"b":null}]}})"),
            "<accepted>");
  EXPECT_NE(refusal(R"({"jsonrpc":"2.0","id":1,"result":1,"extra":{"a":[1,2,{"b":nul}]}})"),
            "<accepted>");
}

TEST(WorkerCodecDecode, DuplicateKeysTheLastOneCounts) {
  Decoder d;
  const Message a =
      one(d, R"({"jsonrpc":"1.0","jsonrpc":"2.0","id":"x","id":3,"result":1,"result":2})");
  EXPECT_EQ(a.id, 3u);
  EXPECT_EQ(a.result, "2");
  EXPECT_NE(refusal(R"({"jsonrpc":"2.0","id":3,"id":-1,"result":1})"), "<accepted>");
  const Message m =
      one(d, R"({"jsonrpc":"2.0","method":1,"method":"heartbeat","params":[],"params":{}})");
  EXPECT_EQ(m.method, "heartbeat");
  EXPECT_EQ(m.params, "{}");
  // A repeated error object: only the last one is the error, nothing of the first remains.
  const Message e = one(
      d,
      R"({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"first","data":{"x":1}},"error":{"code":2}})");
  ASSERT_TRUE(e.error.has_value());
  EXPECT_EQ(e.error->code, 2);
  EXPECT_EQ(e.error->message, "") << "the first error's message leaked into the second";
  EXPECT_TRUE(e.error->data.empty()) << "the first error's data leaked into the second";
}

TEST(WorkerCodecDecode, NestingUpToTheLimitIsAccepted) {
  // The message object is one level; the result fills the rest.
  const std::size_t arrays = kMaxJsonDepth - 1;
  const std::string nested = std::string(arrays, '[') + std::string(arrays, ']');
  Decoder d;
  EXPECT_EQ(one(d, R"({"jsonrpc":"2.0","id":1,"result":)" + nested + "}").result, nested);
  EXPECT_NE(refusal(R"({"jsonrpc":"2.0","id":1,"result":[)" + nested + "]}"), "<accepted>");
}

TEST(WorkerCodecDecode, LargeThenSmallMessagesOnOneDecoder) {
  // One Decoder per link reads messages of any size in turn; a 9 MiB reply must not disturb
  // the next ones (its buffer is resized, not reused past its end).
  Decoder d;
  for (const std::size_t n : {std::size_t{9} << 20, std::size_t{100'000}, std::size_t{3},
                              std::size_t{2} << 20, std::size_t{5000}}) {
    std::string wire;
    encode_text_result(wire, n, std::string(n, 'x'));
    const Message m = one(d, wire);
    EXPECT_EQ(m.id, n);
    const auto text = read_text_result(m.result);
    ASSERT_TRUE(text.has_value()) << text.error();
    EXPECT_EQ(text->size(), n);
  }
}

struct Garbage {
  std::string_view why;
  std::string text;
};

// Every class of malformed input (for one message and as a batch member) is refused with a
// text; a crash here would be droverd crashing because of what a worker wrote.
TEST(WorkerCodecDecode, GarbageIsAnErrorNotACrash) {
  const std::vector<Garbage> cases = {
      {"empty", ""},
      {"whitespace", "  \n"},
      {"not JSON", "not json"},
      {"truncated", R"({"jsonrpc":"2.0","id":1,"result":)"},
      {"unterminated object", R"({"jsonrpc":"2.0","id":1,"result":1)"},
      {"an open brace", "{"},
      {"trailing garbage", R"({"jsonrpc":"2.0","id":1,"result":1} x)"},
      {"two messages", R"({"jsonrpc":"2.0","id":1,"result":1}{"jsonrpc":"2.0","id":2,"result":1})"},
      {"a closing bracket too many", R"({"jsonrpc":"2.0","id":1,"result":1}})"},
      {"invalid JSON in the result", R"({"jsonrpc":"2.0","id":1,"result":{"a":tru}})"},
      {"invalid JSON in params", R"({"jsonrpc":"2.0","method":"heartbeat","params":[1,]})"},
      {"invalid JSON in error data", R"({"jsonrpc":"2.0","id":1,"error":{"code":1,"data":01}})"},
      // nlohmann refuses numbers that overflow a double; droverd would forward this result to a
      // client whose parser refuses it. FAILS: skip_value checks the number grammar only.
      {"number beyond double's range", R"({"jsonrpc":"2.0","id":1,"result":{"x":[1e400]}})"},
      {"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\xff\"}"},
      {"unescaped control character", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\x01\"}"},
      {"empty array", "[]"},
      {"number", "42"},
      {"string", R"("hello")"},
      {"null", "null"},
      {"true", "true"},
      {"missing jsonrpc", R"({"id":1,"result":1})"},
      {"wrong version", R"({"jsonrpc":"1.0","id":1,"result":1})"},
      {"version as a number", R"({"jsonrpc":2.0,"id":1,"result":1})"},
      {"string id", R"({"jsonrpc":"2.0","id":"1","result":1})"},
      {"negative id", R"({"jsonrpc":"2.0","id":-1,"result":1})"},
      {"minus zero id", R"({"jsonrpc":"2.0","id":-0,"result":1})"},
      {"fractional id", R"({"jsonrpc":"2.0","id":1.5,"result":1})"},
      {"integral float id", R"({"jsonrpc":"2.0","id":1.0,"result":1})"},
      {"exponent id", R"({"jsonrpc":"2.0","id":1e2,"result":1})"},
      {"id beyond 64 bits", R"({"jsonrpc":"2.0","id":18446744073709551616,"result":1})"},
      {"null id", R"({"jsonrpc":"2.0","id":null,"result":1})"},
      {"object id", R"({"jsonrpc":"2.0","id":{},"result":1})"},
      {"reply without id", R"({"jsonrpc":"2.0","result":1})"},
      {"both result and error",
       R"({"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}})"},
      {"neither result nor error", R"({"jsonrpc":"2.0","id":1})"},
      {"error without code", R"({"jsonrpc":"2.0","id":1,"error":{"message":"no code"}})"},
      {"string error code", R"({"jsonrpc":"2.0","id":1,"error":{"code":"-32000","message":"x"}})"},
      {"fractional error code", R"({"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"x"}})"},
      {"integral float error code", R"({"jsonrpc":"2.0","id":1,"error":{"code":1.0}})"},
      {"exponent error code", R"({"jsonrpc":"2.0","id":1,"error":{"code":1e3}})"},
      {"error is a string", R"({"jsonrpc":"2.0","id":1,"error":"boom"})"},
      {"error is null", R"({"jsonrpc":"2.0","id":1,"error":null})"},
      {"error is an array", R"({"jsonrpc":"2.0","id":1,"error":[{"code":1}]})"},
      {"error message not a string",
       R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":5}})"},
      {"error message null", R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":null}})"},
      {"error code beyond int", R"({"jsonrpc":"2.0","id":1,"error":{"code":4294967296}})"},
      {"error code below int", R"({"jsonrpc":"2.0","id":1,"error":{"code":-2147483649}})"},
      {"nested deeper than kMaxJsonDepth", R"({"jsonrpc":"2.0","id":1,"result":)" +
                                               std::string(1'000'000, '[') +
                                               std::string(1'000'000, ']') + "}"},
      {"method not a string", R"({"jsonrpc":"2.0","method":5})"},
      {"method null", R"({"jsonrpc":"2.0","method":null,"id":1})"},
      {"request with string id", R"({"jsonrpc":"2.0","method":"hello","id":"w1"})"},
      {"request with negative id", R"({"jsonrpc":"2.0","method":"hello","id":-3})"},
      {"request with null id", R"({"jsonrpc":"2.0","method":"hello","id":null})"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.why);
    // In a child process, so that a crash fails this case instead of ending the test run.
    EXPECT_EXIT(
        {
          Decoder d;
          const auto r = d.decode(c.text);
          std::exit(r.has_error() && !r.error().empty() ? 0 : 1);
        },
        testing::ExitedWithCode(0), "")
        << c.why << " (exit 1: accepted; a signal: crashed): " << c.text.substr(0, 200);
    // The same message as a member of a batch, after a good one: the whole batch is refused,
    // naming the member (or "not JSON" when the text as a whole is not JSON).
    if (c.text.find_first_not_of(" \n") == std::string::npos) continue;
    const std::string batch = R"([{"jsonrpc":"2.0","id":1,"result":1},)" + c.text + "]";
    EXPECT_EXIT(
        {
          Decoder d;
          const auto r = d.decode(batch);
          std::exit(r.has_error() && !r.error().empty() ? 0 : 1);
        },
        testing::ExitedWithCode(0), "")
        << "in a batch: " << c.why;
  }
}

TEST(WorkerCodecDecode, ErrorsNameTheProblem) {
  EXPECT_NE(refusal(R"({"jsonrpc":"1.0","id":1,"result":1})").find("jsonrpc"), std::string::npos);
  EXPECT_NE(refusal(R"({"jsonrpc":"2.0","id":-1,"result":1})").find("id"), std::string::npos);
  EXPECT_NE(refusal(R"({"jsonrpc":"2.0","id":1})").find("result"), std::string::npos);
  EXPECT_NE(refusal(R"({"jsonrpc":"2.0","id":1,"error":{"message":"x"}})").find("code"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":2}})").find("message"),
            std::string::npos);
  EXPECT_NE(refusal("[" + std::string(300, '[') + std::string(300, ']') + "]").find("256"),
            std::string::npos);
  const std::string bad_member = refusal(
      R"([{"jsonrpc":"2.0","id":1,"method":"generate"},{"jsonrpc":"1.0","id":2,"method":"x"}])");
  EXPECT_NE(bad_member.find("batch member 1"), std::string::npos) << bad_member;
  EXPECT_NE(refusal("[1, 2]").find("batch member 0"), std::string::npos);
}

TEST(WorkerCodecDecode, ADecoderKeepsWorkingAfterGarbage) {
  Decoder d;
  EXPECT_FALSE(d.decode("[{]").has_value());
  EXPECT_FALSE(d.decode("42").has_value());
  EXPECT_FALSE(d.decode(R"({"jsonrpc":"2.0","id":1,"result":1,})").has_value());
  const Message m = one(d, R"({"jsonrpc":"2.0","id":5,"result":{"text":"fine"}})");
  EXPECT_EQ(m.id, 5u);
  EXPECT_EQ(*read_text_result(m.result), "fine");
}

// --- typed readers -------------------------------------------------------------------------------

struct BadParams {
  std::string_view text;
  std::string_view names;  // what the error must mention
};

template <typename Reader>
void expect_refused(Reader read, const std::vector<BadParams>& cases) {
  for (const auto& c : cases) {
    const auto r = read(c.text);
    ASSERT_TRUE(r.has_error()) << c.text;
    EXPECT_NE(r.error().find(c.names), std::string::npos) << c.text << ": " << r.error();
  }
}

TEST(WorkerCodecReaders, GenerateParamsAreChecked) {
  expect_refused(read_generate, {
                                    {"", "missing"},
                                    {"{", "generate params"},
                                    {"[]", "object"},
                                    {"{}", "prompt"},
                                    {R"({"prompt":1})", "prompt"},
                                    {R"({"prompt":"p","model":[]})", "model"},
                                    {R"({"prompt":"p","max_tokens":0})", "max_tokens"},
                                    {R"({"prompt":"p","max_tokens":2147483648})", "max_tokens"},
                                    {R"({"prompt":"p","max_tokens":1.5})", "max_tokens"},
                                    {R"({"prompt":"p","temperature":"hot"})", "temperature"},
                                    {R"({"prompt":"p","top_p":null})", "top_p"},
                                    {R"({"prompt":"p","seed":-1})", "seed"},
                                    {R"({"prompt":"p","seed":18446744073709551616})", "seed"},
                                    {R"({"prompt":"p","stream":1})", "stream"},
                                    {R"({"prompt":"p","stop":"x"})", "stop"},
                                    {R"({"prompt":"p","stop":[1]})", "stop"},
                                    {R"({"prompt":"p","extra":tru})", "JSON"},
                                    {R"({"prompt":"p"} x)", "generate params"},
                                });
  // Unknown members are skipped, so a newer supervisor may add params.
  const auto r = read_generate(R"({"prompt":"p","priority":"high","x":{"y":[1]}})");
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->prompt, "p");
}

TEST(WorkerCodecReaders, OtherRequestsAreChecked) {
  expect_refused(read_batch_tokenize, {{"{}", "texts"},
                                       {R"({"texts":"a"})", "texts"},
                                       {R"({"texts":["a",1]})", "texts"},
                                       {R"({"texts":[],"model":1})", "model"}});
  expect_refused(read_detokenize, {{"{}", "tokens"},
                                   {R"({"tokens":[1.5]})", "tokens"},
                                   {R"({"tokens":[9223372036854775808]})", "tokens"},
                                   {R"({"tokens":{}})", "tokens"}});
  expect_refused(
      read_cancel,
      {{"{}", "id"}, {R"({"id":-1})", "id"}, {R"({"id":"7"})", "id"}, {R"({"id":null})", "id"}});
  expect_refused(read_inject, {{R"({"fault":1})", "fault"}, {"[1]", "object"}});
  EXPECT_EQ(*read_inject("{}"), "") << "inject without a fault names none";
}

TEST(WorkerCodecReaders, RepliesAndNotificationsAreChecked) {
  expect_refused(
      read_generate_result,
      {{"{}", "text"},
       {R"({"text":"t"})", "finish_reason"},
       {R"({"text":1,"finish_reason":"stop"})", "text"},
       {R"({"text":"t","finish_reason":"stop","usage":[]})", "usage"},
       {R"({"text":"t","finish_reason":"stop","usage":{"prompt_tokens":"1"}})", "prompt_tokens"},
       {R"({"text":"t","finish_reason":"stop","usage":{"completion_tokens":1.5}})",
        "completion_tokens"},
       {"null", "object"}});
  expect_refused(read_tokens_result, {{"{}", "tokens"},
                                      {R"({"tokens":[1,2]})", "tokens"},
                                      {R"({"tokens":[[1],["a"]]})", "tokens"}});
  expect_refused(read_text_result, {{"{}", "text"}, {R"({"text":null})", "text"}});
  // A chunk missing any of its three fields, or with one of the wrong type.
  expect_refused(read_chunk, {{R"({"index":0,"text":"t"})", "id"},
                              {R"({"id":1,"text":"t"})", "index"},
                              {R"({"id":1,"index":0})", "text"},
                              {R"({"id":-1,"index":0,"text":"t"})", "id"},
                              {R"({"id":1,"index":0.5,"text":"t"})", "index"},
                              {R"({"id":1,"index":0,"text":["t"]})", "text"},
                              {"", "missing"}});
  expect_refused(read_heartbeat, {{R"({"inflight":"3"})", "inflight"},
                                  {R"({"queue_depth":1.5})", "queue_depth"},
                                  {R"({"rss_bytes":null})", "rss_bytes"},
                                  {R"({"tokens_per_s":"fast"})", "tokens_per_s"},
                                  {R"({"models":"tiny"})", "models"},
                                  {R"({"progress":[]})", "progress"}});
  // A heartbeat with nothing in it reports zeros and nothing about models or progress.
  const auto empty = read_heartbeat("{}");
  ASSERT_TRUE(empty.has_value()) << empty.error();
  EXPECT_EQ(empty->inflight, 0);
  EXPECT_FALSE(empty->models.has_value());
  EXPECT_EQ(empty->progress, -1);
}

TEST(WorkerCodecReaders, AnyTextIsAnAnswerNotACrash) {
  // The readers run on params/result views of whatever a peer wrote: invalid text included
  // when called directly.
  const std::vector<std::string> inputs = {"",
                                           "{",
                                           "}",
                                           "[",
                                           "]",
                                           "\"",
                                           "nul",
                                           "{]",
                                           "[}",
                                           R"({"text":)",
                                           R"({"id":1,"index":2,"text":"x")",
                                           "{\"a\":\"\xff\"}",
                                           std::string(300, '{'),
                                           "1e999"};
  for (const auto& text : inputs) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(read_generate(text).has_value());
    static_cast<void>(read_batch_tokenize(text));
    static_cast<void>(read_detokenize(text));
    static_cast<void>(read_cancel(text));
    static_cast<void>(read_inject(text));
    static_cast<void>(read_generate_result(text));
    static_cast<void>(read_tokens_result(text));
    static_cast<void>(read_text_result(text));
    static_cast<void>(read_chunk(text));
    static_cast<void>(read_heartbeat(text));
    static_cast<void>(read_tree(text));
  }
}

}  // namespace
}  // namespace drover::proto::worker
