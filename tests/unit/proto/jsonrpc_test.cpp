// JSON-RPC 2.0 envelope parsing and reply serialisation, checked against the examples of section 7
// of the specification (https://www.jsonrpc.org/specification#examples) and the id rules clients
// rely on.
#include "proto/jsonrpc.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace drover::proto {
namespace {

// Copies, so that the result of as_request(single(...)) outlives the temporary entry.
RpcRequest as_request(const RpcEntry& e) {
  const auto* r = std::get_if<RpcRequest>(&e);
  EXPECT_NE(r, nullptr) << "expected a request";
  return r ? *r : RpcRequest{};
}

RpcErrorReply as_error(const RpcEntry& e) {
  const auto* r = std::get_if<RpcErrorReply>(&e);
  EXPECT_NE(r, nullptr) << "expected an error reply";
  return r ? *r : RpcErrorReply{};
}

// The request's id, or the string "<notification>" when it has none.
json id_of(const RpcRequest& r) { return r.id.value_or(json("<notification>")); }

// The one entry of a non-batch message.
RpcEntry single(std::string_view text) {
  ParsedMessage m = parse_message(text);
  EXPECT_FALSE(m.batch) << text;
  EXPECT_EQ(m.entries.size(), 1u) << text;
  if (m.entries.empty()) return RpcErrorReply{};
  return std::move(m.entries.front());
}

// The reply a client would receive for an error entry, without the optional `data` member (the spec
// allows it; its content is ours), for comparison with the spec's expected output.
json reply_without_data(const RpcErrorReply& e) {
  json reply = json::parse(make_error(e));
  reply["error"].erase("data");
  return reply;
}

// --- section 7 examples --------------------------------------------------------------------------

TEST(JsonRpcSpecExamples, CallWithPositionalParameters) {
  const auto& r1 = as_request(
      single(R"({"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1})"));
  EXPECT_EQ(r1.method, "subtract");
  EXPECT_EQ(r1.params, json::parse("[42, 23]"));
  ASSERT_TRUE(r1.id.has_value());
  EXPECT_EQ(id_of(r1), json(1));
  EXPECT_FALSE(r1.is_notification());
  EXPECT_EQ(json::parse(make_result(id_of(r1), 19)),
            json::parse(R"({"jsonrpc": "2.0", "result": 19, "id": 1})"));

  const auto& r2 = as_request(
      single(R"({"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2})"));
  EXPECT_EQ(r2.params, json::parse("[23, 42]"));
  EXPECT_EQ(json::parse(make_result(id_of(r2), -19)),
            json::parse(R"({"jsonrpc": "2.0", "result": -19, "id": 2})"));
}

TEST(JsonRpcSpecExamples, CallWithNamedParameters) {
  const auto& r3 = as_request(single(
      R"({"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3})"));
  EXPECT_EQ(r3.method, "subtract");
  EXPECT_EQ(r3.params, json::parse(R"({"subtrahend": 23, "minuend": 42})"));
  EXPECT_EQ(id_of(r3), json(3));

  const auto& r4 = as_request(single(
      R"({"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4})"));
  EXPECT_EQ(r4.params, json::parse(R"({"subtrahend": 23, "minuend": 42})"));
  EXPECT_EQ(json::parse(make_result(id_of(r4), 19)),
            json::parse(R"({"jsonrpc": "2.0", "result": 19, "id": 4})"));
}

TEST(JsonRpcSpecExamples, Notifications) {
  const auto& n1 =
      as_request(single(R"({"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]})"));
  EXPECT_TRUE(n1.is_notification());
  EXPECT_EQ(n1.method, "update");
  EXPECT_EQ(n1.params, json::parse("[1,2,3,4,5]"));

  const auto& n2 = as_request(single(R"({"jsonrpc": "2.0", "method": "foobar"})"));
  EXPECT_TRUE(n2.is_notification());
  EXPECT_TRUE(n2.params.is_null()) << "absent params are null";
}

TEST(JsonRpcSpecExamples, NonExistentMethodParsesAsARequest) {
  // Whether the method exists is the dispatcher's business; the envelope is valid.
  const auto& r = as_request(single(R"({"jsonrpc": "2.0", "method": "foobar", "id": "1"})"));
  EXPECT_EQ(r.method, "foobar");
  ASSERT_TRUE(r.id.has_value());
  EXPECT_EQ(*r.id, json("1")) << "a string id stays a string";
  EXPECT_EQ(
      json::parse(make_error(*r.id, RpcError::method_not_found)),
      json::parse(
          R"({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"})"));
}

TEST(JsonRpcSpecExamples, InvalidJsonIsOneParseErrorWithNullId) {
  const auto& e =
      as_error(single(R"({"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz])"));
  EXPECT_EQ(e.code, RpcError::parse_error);
  EXPECT_TRUE(e.id.is_null());
  EXPECT_EQ(
      json::parse(make_error(e)),
      json::parse(
          R"({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null})"));
}

TEST(JsonRpcSpecExamples, InvalidRequestObject) {
  const auto& e = as_error(single(R"({"jsonrpc": "2.0", "method": 1, "params": "bar"})"));
  EXPECT_EQ(e.code, RpcError::invalid_request);
  EXPECT_TRUE(e.id.is_null());
  EXPECT_EQ(
      reply_without_data(e),
      json::parse(
          R"({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null})"));
}

TEST(JsonRpcSpecExamples, BatchWithInvalidJsonIsOneParseError) {
  const auto& e = as_error(single(R"([
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
])"));
  EXPECT_EQ(e.code, RpcError::parse_error);
  EXPECT_TRUE(e.id.is_null());
  EXPECT_EQ(
      json::parse(make_error(e)),
      json::parse(
          R"({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null})"));
}

TEST(JsonRpcSpecExamples, EmptyArrayIsOneInvalidRequestNotABatch) {
  const ParsedMessage m = parse_message("[]");
  EXPECT_FALSE(m.batch) << "the reply to [] is a single object, not an array";
  ASSERT_EQ(m.entries.size(), 1u);
  const auto& e = as_error(m.entries[0]);
  EXPECT_EQ(e.code, RpcError::invalid_request);
  EXPECT_EQ(
      reply_without_data(e),
      json::parse(
          R"({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null})"));
}

TEST(JsonRpcSpecExamples, InvalidBatchButNotEmpty) {
  const ParsedMessage m = parse_message("[1]");
  EXPECT_TRUE(m.batch);
  ASSERT_EQ(m.entries.size(), 1u);
  const auto& e = as_error(m.entries[0]);
  EXPECT_EQ(e.code, RpcError::invalid_request);
  EXPECT_TRUE(e.id.is_null());
}

TEST(JsonRpcSpecExamples, InvalidBatch) {
  const ParsedMessage m = parse_message("[1,2,3]");
  EXPECT_TRUE(m.batch);
  ASSERT_EQ(m.entries.size(), 3u);
  std::vector<std::string> replies;
  for (const auto& entry : m.entries) {
    const auto& e = as_error(entry);
    EXPECT_EQ(e.code, RpcError::invalid_request);
    EXPECT_TRUE(e.id.is_null());
    replies.push_back(make_error(e));
  }
  json batch = json::parse(join_batch(replies));
  ASSERT_TRUE(batch.is_array());
  ASSERT_EQ(batch.size(), 3u);
  for (auto& reply : batch) {
    reply["error"].erase("data");
    EXPECT_EQ(
        reply,
        json::parse(
            R"({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null})"));
  }
}

TEST(JsonRpcSpecExamples, MixedBatch) {
  const ParsedMessage m = parse_message(R"([
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ])");
  EXPECT_TRUE(m.batch);
  ASSERT_EQ(m.entries.size(), 6u);

  const auto& sum = as_request(m.entries[0]);
  EXPECT_EQ(sum.method, "sum");
  EXPECT_EQ(sum.params, json::parse("[1,2,4]"));
  EXPECT_EQ(id_of(sum), json("1"));

  const auto& hello = as_request(m.entries[1]);
  EXPECT_EQ(hello.method, "notify_hello");
  EXPECT_TRUE(hello.is_notification());

  const auto& subtract = as_request(m.entries[2]);
  EXPECT_EQ(subtract.method, "subtract");
  EXPECT_EQ(id_of(subtract), json("2"));

  const auto& foo = as_error(m.entries[3]);
  EXPECT_EQ(foo.code, RpcError::invalid_request);
  EXPECT_TRUE(foo.id.is_null());

  const auto& get = as_request(m.entries[4]);
  EXPECT_EQ(get.method, "foo.get");
  EXPECT_EQ(get.params, json::parse(R"({"name": "myself"})"));
  EXPECT_EQ(id_of(get), json("5"));

  const auto& data = as_request(m.entries[5]);
  EXPECT_EQ(data.method, "get_data");
  EXPECT_TRUE(data.params.is_null());
  EXPECT_EQ(id_of(data), json("9"));

  // The spec's expected batch reply, built the way the dispatcher would.
  const std::string reply = join_batch({
      make_result(id_of(sum), 7),
      make_result(id_of(subtract), 19),
      make_error(foo.id, foo.code),
      make_error(id_of(get), RpcError::method_not_found),
      make_result(id_of(data), json::parse(R"(["hello", 5])")),
  });
  EXPECT_EQ(json::parse(reply), json::parse(R"([
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    ])"));
}

TEST(JsonRpcSpecExamples, BatchOfNotificationsOnly) {
  const ParsedMessage m = parse_message(R"([
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ])");
  EXPECT_TRUE(m.batch);
  ASSERT_EQ(m.entries.size(), 2u);
  EXPECT_TRUE(as_request(m.entries[0]).is_notification());
  EXPECT_EQ(as_request(m.entries[0]).method, "notify_sum");
  EXPECT_TRUE(as_request(m.entries[1]).is_notification());
  EXPECT_EQ(as_request(m.entries[1]).method, "notify_hello");
}

// --- ids -----------------------------------------------------------------------------------------

// The id token as it appears in the reply text, so that number formatting is checked too.
std::string echoed_id_text(const std::string& id_text) {
  const auto& r = as_request(single(R"({"jsonrpc":"2.0","method":"m","id":)" + id_text + "}"));
  if (!r.id) return "<notification>";
  const std::string reply = make_result(*r.id, true);
  const std::string key = "\"id\":";
  const auto at = reply.find(key);
  if (at == std::string::npos) return "<no id in " + reply + ">";
  const auto end = reply.find_first_of(",}", at + key.size());
  return reply.substr(at + key.size(), end - at - key.size());
}

TEST(JsonRpcIds, NumbersStringsAndNullAreEchoedExactly) {
  for (const std::string id :
       {"0", "1", "-1", "42", "9007199254740993", "9223372036854775807", "-9223372036854775808",
        "18446744073709551615", "\"abc\"", "\"\"", "\"01\"", "\"日本\"", "null"}) {
    EXPECT_EQ(echoed_id_text(id), id);
  }
}

TEST(JsonRpcIds, FractionalNumberIdIsAccepted) {
  const auto& r = as_request(single(R"({"jsonrpc":"2.0","method":"m","id":1.5})"));
  ASSERT_TRUE(r.id.has_value());
  EXPECT_EQ(*r.id, json(1.5));
}

TEST(JsonRpcIds, NullIdIsARequestNotANotification) {
  const auto& r = as_request(single(R"({"jsonrpc":"2.0","method":"m","id":null})"));
  ASSERT_TRUE(r.id.has_value());
  EXPECT_TRUE(r.id->is_null());
  EXPECT_FALSE(r.is_notification());
}

TEST(JsonRpcIds, ObjectArrayOrBoolIdIsInvalidRequestWithNullId) {
  for (const std::string id : {"{}", R"({"a":1})", "[]", "[1]", "true", "false"}) {
    const auto& e = as_error(single(R"({"jsonrpc":"2.0","method":"m","id":)" + id + "}"));
    EXPECT_EQ(e.code, RpcError::invalid_request) << id;
    EXPECT_TRUE(e.id.is_null()) << id;
  }
}

TEST(JsonRpcValidation, WrongOrMissingVersionIsInvalidRequestEchoingTheId) {
  for (const std::string version : {R"("1.0")", R"("2")", "2.0", "null", R"(" 2.0")"}) {
    const auto& e = as_error(single(R"({"jsonrpc":)" + version + R"(,"method":"m","id":7})"));
    EXPECT_EQ(e.code, RpcError::invalid_request) << version;
    EXPECT_EQ(e.id, json(7)) << version;
  }
  const auto& missing = as_error(single(R"({"method":"m","id":"x"})"));
  EXPECT_EQ(missing.code, RpcError::invalid_request);
  EXPECT_EQ(missing.id, json("x"));
}

TEST(JsonRpcValidation, ParamsThatAreNotObjectOrArrayAreInvalidRequest) {
  for (const std::string params : {R"("bar")", "1", "true", "null"}) {
    const auto& e =
        as_error(single(R"({"jsonrpc":"2.0","method":"m","params":)" + params + R"(,"id":3})"));
    EXPECT_EQ(e.code, RpcError::invalid_request) << params;
    EXPECT_EQ(e.id, json(3)) << params;
  }
}

TEST(JsonRpcValidation, MissingOrNonStringMethodIsInvalidRequest) {
  for (const std::string text :
       {R"({"jsonrpc":"2.0","id":1})", R"({"jsonrpc":"2.0","method":null,"id":1})",
        R"({"jsonrpc":"2.0","method":["m"],"id":1})"}) {
    const auto& e = as_error(single(text));
    EXPECT_EQ(e.code, RpcError::invalid_request) << text;
    EXPECT_EQ(e.id, json(1)) << text;
  }
}

TEST(JsonRpcValidation, NonObjectTopLevelValuesAreInvalidRequest) {
  for (const std::string text : {"1", R"("call")", "null", "true"}) {
    const auto& e = as_error(single(text));
    EXPECT_EQ(e.code, RpcError::invalid_request) << text;
    EXPECT_TRUE(e.id.is_null()) << text;
  }
}

TEST(JsonRpcValidation, EmptyOrTruncatedTextIsParseError) {
  for (const std::string text : {"", "   ", "{", R"({"jsonrpc":"2.0"} extra)", "[1,]"}) {
    const auto& e = as_error(single(text));
    EXPECT_EQ(e.code, RpcError::parse_error) << text;
    EXPECT_TRUE(e.id.is_null()) << text;
  }
}

// Found while writing the fuzz targets (an input that deep is beyond their -max_len): nlohmann's
// dump() and copies recurse once per level, so a value 100 000 levels deep (200 KB of text)
// overflows the stack when serialised or copied, as droverd does with what it receives. Such
// text is now refused before it is parsed.
TEST(JsonRpcValidation, NestingDeeperThanTheLimitIsParseErrorWithDetail) {
  const std::size_t levels = 1'000'000;
  const std::string deep = std::string(levels, '[') + std::string(levels, ']');
  const auto e = as_error(
      single(R"({"jsonrpc":"2.0","method":"generate","id":1,"params":{"stop":)" + deep + "}}"));
  EXPECT_EQ(e.code, RpcError::parse_error);
  EXPECT_TRUE(e.id.is_null());
  const json reply = json::parse(make_error(e));
  const std::string detail =
      reply["error"].value("data", json::object()).value("detail", std::string());
  EXPECT_NE(detail.find("256"), std::string::npos) << reply.dump();
}

TEST(JsonRpcValidation, NestingUpToTheLimitIsAcceptedAndBracketsInStringsDoNotCount) {
  // The request object and its params are two levels; the arrays fill the rest.
  const std::size_t arrays = kMaxJsonDepth - 2;
  const std::string nested = std::string(arrays, '[') + std::string(arrays, ']');
  const auto r =
      as_request(single(R"({"jsonrpc":"2.0","method":"m","id":1,"params":{"a":)" + nested + "}}"));
  EXPECT_EQ(json::parse(make_result(1, r.params))["result"], r.params);
  const auto over =
      as_error(single(R"({"jsonrpc":"2.0","method":"m","id":1,"params":{"a":[)" + nested + "]}}"));
  EXPECT_EQ(over.code, RpcError::parse_error);
  // A string full of brackets nests nothing, and neither an escaped backslash nor an escaped
  // quote (JSON \\ and \") ends it early.
  const std::string text = std::string(10'000, '[') + R"(\\\"{{)" + std::string(10'000, '{');
  const auto s = as_request(
      single(R"({"jsonrpc":"2.0","method":"m","id":1,"params":{"a":")" + text + R"("}})"));
  EXPECT_EQ(s.params["a"].get<std::string>().size(), 20'000u + 4);
}

TEST(JsonRpcValidation, ValidateRequestChecksOneValue) {
  const auto ok =
      validate_request(json::parse(R"({"jsonrpc":"2.0","method":"m","params":[],"id":9})"));
  EXPECT_EQ(as_request(ok).method, "m");
  EXPECT_EQ(as_request(ok).params, json::array());
  const auto bad = validate_request(json::parse(R"([{"jsonrpc":"2.0","method":"m"}])"));
  EXPECT_EQ(as_error(bad).code, RpcError::invalid_request) << "a nested batch is not a request";
}

// --- serialisation -------------------------------------------------------------------------------

TEST(JsonRpcReplies, MakeErrorUsesTheSpecMessagesExactly) {
  EXPECT_EQ(json::parse(make_error(nullptr, RpcError::parse_error)),
            json::parse(
                R"({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}})"));
  EXPECT_EQ(json::parse(make_error(1, RpcError::invalid_request)),
            json::parse(
                R"({"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"Invalid Request"}})"));
  EXPECT_EQ(
      json::parse(make_error("a", RpcError::method_not_found)),
      json::parse(
          R"({"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"Method not found"}})"));
  EXPECT_EQ(json::parse(make_error(2, RpcError::invalid_params))["error"]["code"], -32602);
  EXPECT_EQ(json::parse(make_error(2, RpcError::internal_error))["error"]["code"], -32603);
}

TEST(JsonRpcReplies, MakeErrorCarriesCustomMessageAndData) {
  json reply =
      json::parse(make_error(5, RpcError::overloaded, "queue full", json{{"retry_after_ms", 250}}));
  EXPECT_EQ(reply, json::parse(R"({"jsonrpc":"2.0","id":5,"error":{"code":-32001,
      "message":"queue full","data":{"retry_after_ms":250}}})"));
}

TEST(JsonRpcReplies, ErrorEntriesSerialiseWithTheirDetail) {
  const auto& e = as_error(single(R"({"jsonrpc":"2.0","method":"m","params":"x","id":4})"));
  json reply = json::parse(make_error(e));
  EXPECT_EQ(reply["id"], 4);
  EXPECT_EQ(reply["error"]["code"], -32600);
  EXPECT_EQ(reply["error"]["message"], "Invalid Request");
  EXPECT_TRUE(reply["error"]["data"]["detail"].is_string()) << reply.dump();
}

TEST(JsonRpcReplies, RepliesAreOneLineWhateverTheyCarry) {
  const std::string r = make_result("x", json{{"text", "line one\nline two\r\n"}});
  EXPECT_EQ(r.find('\n'), std::string::npos) << r;
  EXPECT_EQ(json::parse(r)["result"]["text"], "line one\nline two\r\n");
}

TEST(JsonRpcReplies, InvalidUtf8InAReplyDoesNotThrow) {
  // Worker output is not trusted to be valid UTF-8; serialising it must not throw.
  std::string r;
  ASSERT_NO_THROW(r = make_result(1, json{{"text", std::string("ok\xff\xfe")}}));
  json parsed = json::parse(r);
  EXPECT_EQ(parsed["result"]["text"].get<std::string>().substr(0, 2), "ok");
}

TEST(JsonRpcReplies, MakeNotificationHasNoId) {
  json n =
      json::parse(make_notification("generate.chunk", {{"id", 3}, {"index", 0}, {"text", "a"}}));
  EXPECT_EQ(n, json::parse(R"({"jsonrpc":"2.0","method":"generate.chunk",
      "params":{"id":3,"index":0,"text":"a"}})"));
}

TEST(JsonRpcReplies, MakeRequestOmitsNullParams) {
  EXPECT_EQ(json::parse(make_request(7, "shutdown", nullptr)),
            json::parse(R"({"jsonrpc":"2.0","id":7,"method":"shutdown"})"));
  EXPECT_EQ(json::parse(make_request(8, "generate", {{"prompt", "p"}})),
            json::parse(R"({"jsonrpc":"2.0","id":8,"method":"generate","params":{"prompt":"p"}})"));
}

TEST(JsonRpcReplies, JoinBatchMakesAJsonArrayInOrder) {
  EXPECT_EQ(join_batch({make_result(1, 1)}), "[" + make_result(1, 1) + "]");
  json joined = json::parse(join_batch(
      {make_result(1, "a"), make_error(2, RpcError::cancelled), make_result("3", nullptr)}));
  ASSERT_TRUE(joined.is_array());
  ASSERT_EQ(joined.size(), 3u);
  EXPECT_EQ(joined[0]["id"], 1);
  EXPECT_EQ(joined[0]["result"], "a");
  EXPECT_EQ(joined[1]["error"]["code"], -32005);
  EXPECT_EQ(joined[2]["id"], "3");
  EXPECT_TRUE(joined[2].contains("result"));
  EXPECT_TRUE(joined[2]["result"].is_null());
}

TEST(JsonRpcParams, EmptyMeansAbsentEmptyObjectOrEmptyArray) {
  EXPECT_TRUE(params_empty(nullptr));
  EXPECT_TRUE(params_empty(json::object()));
  EXPECT_TRUE(params_empty(json::array()));
  EXPECT_FALSE(params_empty(json{{"x", 1}}));
  EXPECT_FALSE(params_empty(json::array({1})));
  EXPECT_FALSE(params_empty(json("")));
  EXPECT_FALSE(params_empty(json(0)));
}

}  // namespace
}  // namespace drover::proto

namespace drover::proto {
namespace {

// parse_json takes simdjson's fast path for most text; what it returns must be what nlohmann's
// own parser returns, value and number type alike, and refusals must stay refusals.
TEST(ParseJson, AgreesWithNlohmannOnValuesAndNumberTypes) {
  const char* cases[] = {
      R"({"jsonrpc":"2.0","id":7,"method":"generate","params":{"prompt":"hi","max_tokens":16}})",
      R"([1,-1,0,1.5,-2.25e3,18446744073709551615,-9223372036854775808,true,false,null])",
      R"({"a":1,"a":2})",                                // duplicate key: the last one wins
      R"({"s":"\u00e9\ud83d\ude00 \"quoted\" \\ \n"})",  // escapes and a surrogate pair
      R"(123456789012345678901234567890)",               // beyond 64 bits: nlohmann's double
      R"({"deep":[[[[{"x":[{}]}]]]]})",
      R"("just a string")",
  };
  for (const char* text : cases) {
    SCOPED_TRACE(text);
    const json ours = parse_json(text);
    const json theirs = json::parse(text);
    ASSERT_FALSE(ours.is_discarded());
    EXPECT_EQ(ours, theirs);
    EXPECT_EQ(ours.dump(), theirs.dump());
  }
  EXPECT_TRUE(parse_json(R"({"id":7})")["id"].is_number_unsigned());
  EXPECT_TRUE(parse_json(R"({"id":-7})")["id"].is_number_integer());
  for (const char* bad : {"{", R"({"a":})", "[1,]", "nul", "\"\xff\"", "{} {}", ""}) {
    SCOPED_TRACE(bad);
    EXPECT_TRUE(parse_json(bad).is_discarded());
  }
}

}  // namespace
}  // namespace drover::proto
