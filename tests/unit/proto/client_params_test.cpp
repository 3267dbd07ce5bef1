// Typed params of the client methods: what is accepted, the defaults, and that every rejection
// names the offending param (the text becomes the -32602 message a client reads).
#include "proto/client_params.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace drover::proto {
namespace {

// Params are handed to the parsers as the JSON text the client wrote.
std::string_view params(std::string_view text) { return text; }

// The error text of a result that must have failed ("<accepted>" when it did not).
template <typename T>
std::string error_of(const ParamsResult<T>& r) {
  return r.has_error() ? r.error() : std::string("<accepted>");
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// --- generate ------------------------------------------------------------------------------------

TEST(GenerateParams, PromptIsRequired) {
  for (std::string_view text : {"{}", R"({"model":"m"})", R"({"prompt":null})"}) {
    const auto r = parse_generate_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_TRUE(contains(r.error(), "'prompt'")) << r.error();
  }
  const auto absent = parse_generate_params("");
  ASSERT_TRUE(absent.has_error());
  EXPECT_TRUE(contains(absent.error(), "'prompt'")) << absent.error();
}

TEST(GenerateParams, DefaultsWhenOnlyPromptIsGiven) {
  const auto r = parse_generate_params(params(R"({"prompt":"hello"})"));
  ASSERT_TRUE(r.has_value()) << error_of(r);
  const GenerateParams& g = *r;
  EXPECT_EQ(g.prompt, "hello");
  EXPECT_EQ(g.model, "") << "empty model means the pool's default";
  EXPECT_EQ(g.max_tokens, 64);
  EXPECT_DOUBLE_EQ(g.temperature, 0.8);
  EXPECT_DOUBLE_EQ(g.top_p, 0.95);
  EXPECT_FALSE(g.seed.has_value()) << "the supervisor assigns a seed when none is given";
  EXPECT_TRUE(g.stop.empty());
  EXPECT_FALSE(g.stream);
  EXPECT_EQ(g.priority, Priority::normal);
  EXPECT_EQ(g.cache, CacheMode::use);
  EXPECT_FALSE(g.timeout_ms.has_value());
}

TEST(GenerateParams, EveryParamIsRead) {
  const auto r = parse_generate_params(params(R"({
      "model": "tiny", "prompt": "Once upon a time", "max_tokens": 10, "temperature": 0,
      "top_p": 0.5, "seed": 42, "stop": ["\n", "END"], "stream": true, "priority": "high",
      "cache": "bypass", "timeout_ms": 1500})"));
  ASSERT_TRUE(r.has_value()) << error_of(r);
  EXPECT_EQ(r->model, "tiny");
  EXPECT_EQ(r->prompt, "Once upon a time");
  EXPECT_EQ(r->max_tokens, 10);
  EXPECT_DOUBLE_EQ(r->temperature, 0.0);
  EXPECT_DOUBLE_EQ(r->top_p, 0.5);
  EXPECT_EQ(r->seed, std::optional<std::uint64_t>(42));
  EXPECT_EQ(r->stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_TRUE(r->stream);
  EXPECT_EQ(r->priority, Priority::high);
  EXPECT_EQ(r->cache, CacheMode::bypass);
  EXPECT_EQ(r->timeout_ms, std::optional<std::int64_t>(1500));
}

TEST(GenerateParams, EnumValuesMapToTheirTypes) {
  EXPECT_EQ(parse_generate_params(params(R"({"prompt":"p","priority":"low"})"))->priority,
            Priority::low);
  EXPECT_EQ(parse_generate_params(params(R"({"prompt":"p","priority":"normal"})"))->priority,
            Priority::normal);
  EXPECT_EQ(parse_generate_params(params(R"({"prompt":"p","cache":"default"})"))->cache,
            CacheMode::use);
  EXPECT_EQ(to_string(Priority::high), "high");
  EXPECT_EQ(to_string(Priority::normal), "normal");
  EXPECT_EQ(to_string(Priority::low), "low");
}

TEST(GenerateParams, NullValuedOptionalParamsMeanAbsent) {
  const auto r =
      parse_generate_params(params(R"({"prompt":"p","model":null,"seed":null,"stop":null})"));
  ASSERT_TRUE(r.has_value()) << error_of(r);
  EXPECT_EQ(r->model, "");
  EXPECT_FALSE(r->seed.has_value());
  EXPECT_TRUE(r->stop.empty());
}

TEST(GenerateParams, RangeBoundariesAreAccepted) {
  for (std::string_view extra :
       {R"("max_tokens":1)", R"("max_tokens":1048576)", R"("temperature":0)",
        R"("temperature":100)", R"("temperature":0.7)", R"("top_p":0)", R"("top_p":1)",
        R"("top_p":1.0)", R"("timeout_ms":1)", R"("timeout_ms":86400000)", R"("seed":0)",
        R"("stop":[])", R"("stream":false)"}) {
    const std::string text = R"({"prompt":"p",)" + std::string(extra) + "}";
    const auto r = parse_generate_params(params(text));
    EXPECT_TRUE(r.has_value()) << text << ": " << error_of(r);
  }
  EXPECT_EQ(kMaxTokensLimit, 1048576);
}

struct BadParam {
  std::string_view extra;    // spliced into {"prompt":"p", ...}
  std::string_view name;     // the param the error must name
  std::string_view allowed;  // what the error must say is allowed
};

TEST(GenerateParams, EachTypeOrRangeErrorNamesTheParamAndWhatIsAllowed) {
  const std::vector<BadParam> cases = {
      {R"("model":5)", "model", "string"},
      {R"("model":["a"])", "model", "string"},
      {R"("max_tokens":0)", "max_tokens", "1..1048576"},
      {R"("max_tokens":1048577)", "max_tokens", "1..1048576"},
      {R"("max_tokens":-5)", "max_tokens", "1..1048576"},
      {R"("max_tokens":10.5)", "max_tokens", "integer"},
      {R"("max_tokens":"64")", "max_tokens", "integer"},
      {R"("max_tokens":18446744073709551615)", "max_tokens", "1..1048576"},
      {R"("temperature":-0.1)", "temperature", "0..100"},
      {R"("temperature":100.5)", "temperature", "0..100"},
      {R"("temperature":"hot")", "temperature", "number"},
      {R"("top_p":1.01)", "top_p", "0..1"},
      {R"("top_p":-1)", "top_p", "0..1"},
      {R"("top_p":true)", "top_p", "number"},
      {R"("seed":-1)", "seed", "non-negative integer"},
      {R"("seed":1.5)", "seed", "non-negative integer"},
      {R"("seed":"7")", "seed", "non-negative integer"},
      {R"("seed":18446744073709551616)", "seed", "non-negative integer"},
      {R"("stop":"\n")", "stop", "list"},
      {R"("stop":[""])", "stop", "non-empty strings"},
      {R"("stop":[1])", "stop", "strings"},
      {R"("stop":[["x"]])", "stop", "strings"},
      {R"("stream":"yes")", "stream", "true or false"},
      {R"("stream":1)", "stream", "true or false"},
      {R"("priority":"urgent")", "priority", R"("high", "normal", "low")"},
      {R"("priority":1)", "priority", R"("high", "normal", "low")"},
      {R"("cache":"off")", "cache", R"("default", "bypass")"},
      {R"("timeout_ms":0)", "timeout_ms", "1..86400000"},
      {R"("timeout_ms":86400001)", "timeout_ms", "1..86400000"},
      {R"("timeout_ms":1.5)", "timeout_ms", "1..86400000"},
      {R"("timeout_ms":"1000")", "timeout_ms", "1..86400000"},
  };
  for (const auto& c : cases) {
    const std::string text = R"({"prompt":"p",)" + std::string(c.extra) + "}";
    const auto r = parse_generate_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_TRUE(contains(r.error(), "'" + std::string(c.name) + "'")) << text << ": " << r.error();
    EXPECT_TRUE(contains(r.error(), c.allowed)) << text << ": " << r.error();
  }
  const auto prompt = parse_generate_params(params(R"({"prompt":5})"));
  ASSERT_TRUE(prompt.has_error());
  EXPECT_TRUE(contains(prompt.error(), "'prompt'")) << prompt.error();
}

TEST(GenerateParams, SeedAcceptsTheFullUnsignedRange) {
  const auto max = parse_generate_params(params(R"({"prompt":"p","seed":18446744073709551615})"));
  ASSERT_TRUE(max.has_value()) << error_of(max);
  EXPECT_EQ(max->seed, std::optional<std::uint64_t>(std::numeric_limits<std::uint64_t>::max()));
  const auto big = parse_generate_params(params(R"({"prompt":"p","seed":9223372036854775808})"));
  ASSERT_TRUE(big.has_value()) << error_of(big);
  EXPECT_EQ(big->seed, std::optional<std::uint64_t>(9223372036854775808ULL));
}

TEST(GenerateParams, StopListHasAtMostSixteenEntries) {
  json p = {{"prompt", "p"}, {"stop", json::array()}};
  for (int i = 0; i < 16; ++i) p["stop"].push_back("s" + std::to_string(i));
  const std::string sixteen_text = p.dump();
  const auto sixteen = parse_generate_params(sixteen_text);
  ASSERT_TRUE(sixteen.has_value()) << error_of(sixteen);
  EXPECT_EQ(sixteen->stop.size(), 16u);
  p["stop"].push_back("one too many");
  const std::string seventeen_text = p.dump();
  const auto seventeen = parse_generate_params(seventeen_text);
  ASSERT_TRUE(seventeen.has_error());
  EXPECT_TRUE(contains(seventeen.error(), "'stop'")) << seventeen.error();
  EXPECT_TRUE(contains(seventeen.error(), "16")) << seventeen.error();
}

TEST(GenerateParams, UnknownParamIsNamedWithTheAllowedList) {
  const auto r = parse_generate_params(params(R"({"prompt":"p","max_token":5})"));
  ASSERT_TRUE(r.has_error());
  EXPECT_TRUE(contains(r.error(), "unknown param 'max_token'")) << r.error();
  for (std::string_view known : {"max_tokens", "prompt", "temperature", "top_p", "seed", "stop",
                                 "stream", "priority", "cache", "timeout_ms", "model"}) {
    EXPECT_TRUE(contains(r.error(), known)) << "allowed list lacks " << known << ": " << r.error();
  }
}

TEST(GenerateParams, PositionalParamsAreRejected) {
  for (std::string_view text : {R"(["hello"])", "[]"}) {
    const auto r = parse_generate_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_TRUE(contains(r.error(), "object")) << r.error();
  }
}

TEST(GenerateParams, ToWorkerRequestCarriesWhatTheWorkerNeeds) {
  const auto r = parse_generate_params(params(R"({
      "model": "tiny", "prompt": "hi", "max_tokens": 5, "temperature": 0.25, "top_p": 0.5,
      "seed": 1, "stop": ["."], "stream": true, "priority": "low", "cache": "bypass",
      "timeout_ms": 10})"));
  ASSERT_TRUE(r.has_value()) << error_of(r);
  // The resolved seed is sent; priority, cache and timeout stay in the supervisor.
  const worker::GenerateRequest w = r->to_worker_request(18446744073709551615ULL);
  EXPECT_EQ(w.model, "tiny");
  EXPECT_EQ(w.prompt, "hi");
  EXPECT_EQ(w.max_tokens, 5);
  EXPECT_DOUBLE_EQ(w.temperature, 0.25);
  EXPECT_DOUBLE_EQ(w.top_p, 0.5);
  EXPECT_EQ(w.seed, 18446744073709551615ULL);
  EXPECT_EQ(w.stop, (std::vector<std::string>{"."}));
  EXPECT_TRUE(w.stream);
  // What goes on the wire, through the worker codec.
  std::string wire;
  worker::encode_generate(wire, 3, w);
  const json sent = json::parse(wire);
  EXPECT_EQ(sent["params"], json::parse(
                                R"({"model":"tiny","prompt":"hi","max_tokens":5,"temperature":0.25,
      "top_p":0.5,"seed":18446744073709551615,"stop":["."],"stream":true})"));
  EXPECT_TRUE(sent["params"]["seed"].is_number_unsigned());
}

TEST(GenerateParams, ToWorkerRequestOmitsEmptyModelAndStopOnTheWire) {
  const auto r = parse_generate_params(params(R"({"prompt":"hi"})"));
  ASSERT_TRUE(r.has_value()) << error_of(r);
  std::string wire;
  worker::encode_generate(wire, 1, r->to_worker_request(7));
  EXPECT_EQ(json::parse(wire)["params"],
            json::parse(R"({"prompt":"hi","max_tokens":64,"temperature":0.8,"top_p":0.95,
      "seed":7,"stream":false})"));
}

// --- tokenize / detokenize -----------------------------------------------------------------------

TEST(TokenizeParams, TextIsRequiredAndPriorityRead) {
  const auto ok =
      parse_tokenize_params(params(R"({"model":"m","text":"héllo","priority":"high"})"));
  ASSERT_TRUE(ok.has_value()) << error_of(ok);
  EXPECT_EQ(ok->model, "m");
  EXPECT_EQ(ok->text, "héllo");
  EXPECT_EQ(ok->priority, Priority::high);

  const auto empty_text = parse_tokenize_params(params(R"({"text":""})"));
  EXPECT_TRUE(empty_text.has_value()) << "an empty text has zero tokens";

  const auto missing = parse_tokenize_params(params(R"({"model":"m"})"));
  ASSERT_TRUE(missing.has_error());
  EXPECT_TRUE(contains(missing.error(), "'text'")) << missing.error();

  const auto wrong = parse_tokenize_params(params(R"({"text":["a"]})"));
  ASSERT_TRUE(wrong.has_error());
  EXPECT_TRUE(contains(wrong.error(), "'text'")) << wrong.error();

  const auto unknown = parse_tokenize_params(params(R"({"text":"a","prompt":"b"})"));
  ASSERT_TRUE(unknown.has_error());
  EXPECT_TRUE(contains(unknown.error(), "'prompt'")) << unknown.error();
}

TEST(DetokenizeParams, TokensMustBeAListOfIntegers) {
  const auto ok = parse_detokenize_params(params(R"({"model":"m","tokens":[1,-2,30000]})"));
  ASSERT_TRUE(ok.has_value()) << error_of(ok);
  EXPECT_EQ(ok->tokens, (std::vector<std::int64_t>{1, -2, 30000}));
  EXPECT_EQ(ok->model, "m");
  EXPECT_TRUE(parse_detokenize_params(params(R"({"tokens":[]})")).has_value());

  for (std::string_view text : {"{}", R"({"tokens":null})", R"({"tokens":"1 2"})",
                                R"({"tokens":[1,"2"]})", R"({"tokens":[1.5]})"}) {
    const auto r = parse_detokenize_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_TRUE(contains(r.error(), "'tokens'")) << text << ": " << r.error();
  }
}

// --- cancel --------------------------------------------------------------------------------------

TEST(CancelParams, IdMayBeNumberStringOrNull) {
  const auto number = parse_cancel_params(params(R"({"id":17})"));
  ASSERT_TRUE(number.has_value()) << error_of(number);
  EXPECT_EQ(number->id, "17");

  const auto string = parse_cancel_params(params(R"({"id":"req-1"})"));
  ASSERT_TRUE(string.has_value()) << error_of(string);
  EXPECT_EQ(string->id, R"("req-1")");

  const auto null = parse_cancel_params(params(R"({"id":null})"));
  ASSERT_TRUE(null.has_value()) << error_of(null);
  EXPECT_EQ(null->id, kNullId);

  const auto big = parse_cancel_params(params(R"({"id":18446744073709551615})"));
  ASSERT_TRUE(big.has_value()) << error_of(big);
  EXPECT_EQ(big->id, "18446744073709551615") << "the id is kept exactly as written";
}

TEST(CancelParams, IdIsTheTextAsWrittenSoItMatchesTheRequestsId) {
  // parse_message keeps a request's id as its text; a cancel names it by the same text.
  for (const std::string id : {"123456789012345678901234567890", "1e2", "-0", "1.0", R"("a\u0062")",
                               R"("\"q\"")", R"("日本")"}) {
    const std::string text = R"({"id": )" + id + " }";
    const auto r = parse_cancel_params(text);
    ASSERT_TRUE(r.has_value()) << text << ": " << error_of(r);
    EXPECT_EQ(r->id, id) << "whitespace around it is not part of it";
    const ParsedMessage m =
        parse_message(R"({"jsonrpc":"2.0","method":"generate","id":)" + id + "}");
    ASSERT_EQ(m.entries.size(), 1u);
    const auto* req = std::get_if<RpcRequest>(&m.entries[0]);
    ASSERT_NE(req, nullptr);
    EXPECT_EQ(req->id, std::optional<RpcId>(r->id));
  }
  EXPECT_NE(parse_cancel_params(R"({"id":1.0})")->id, parse_cancel_params(R"({"id":1})")->id);
}

TEST(CancelParams, DuplicateIdTheLastOneCounts) {
  const auto a = parse_cancel_params(R"({"id":{},"id":5})");
  ASSERT_TRUE(a.has_value()) << error_of(a);
  EXPECT_EQ(a->id, "5");
  const auto b = parse_cancel_params(R"({"id":5,"id":[1]})");
  ASSERT_TRUE(b.has_error());
  EXPECT_TRUE(contains(b.error(), "'id'")) << b.error();
  const auto c = parse_cancel_params(R"({"id":5,"id":"x"})");
  ASSERT_TRUE(c.has_value()) << error_of(c);
  EXPECT_EQ(c->id, R"("x")");
}

TEST(CancelParams, MissingOrInvalidIdIsRejectedNamingId) {
  for (std::string_view text : {"{}", R"({"id":true})", R"({"id":{}})", R"({"id":[1]})"}) {
    const auto r = parse_cancel_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_TRUE(contains(r.error(), "'id'")) << text << ": " << r.error();
  }
  const auto absent = parse_cancel_params("");
  ASSERT_TRUE(absent.has_error());
  EXPECT_TRUE(contains(absent.error(), "'id'")) << absent.error();
}

TEST(CancelParams, UnknownParamIsNamed) {
  for (std::string_view text : {R"({"id":1,"force":true})", R"({"id":null,"force":true})"}) {
    const auto r = parse_cancel_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_TRUE(contains(r.error(), "'force'")) << r.error();
  }
}

// --- methods without params ----------------------------------------------------------------------

TEST(NoParams, AbsentEmptyObjectAndEmptyArrayAreAccepted) {
  EXPECT_TRUE(parse_no_params("").has_value());
  EXPECT_TRUE(parse_no_params("{}").has_value());
  EXPECT_TRUE(parse_no_params("[]").has_value());
}

TEST(NoParams, AnythingElseIsRejected) {
  for (std::string_view text : {R"({"x":1})", "[1]", R"({"verbose":true})"}) {
    const auto r = parse_no_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_FALSE(r.error().empty());
  }
}

// --- reading the text ----------------------------------------------------------------------------

TEST(ParamsText, WhitespaceEscapesAndUnicodeAreReadAsJson) {
  const auto r = parse_generate_params(
      "{ \"pr\\u006fmpt\" :\t\"line\\none \\\"q\\\" \\\\ \\u00e9\\ud83d\\ude00 日本\" ,\n"
      "  \"model\":\"m\\/x\", \"stop\" : [ \"\\n\" ] }");
  ASSERT_TRUE(r.has_value()) << error_of(r);
  EXPECT_EQ(r->prompt, "line\none \"q\" \\ \xC3\xA9\xF0\x9F\x98\x80 日本");
  EXPECT_EQ(r->model, "m/x");
  EXPECT_EQ(r->stop, (std::vector<std::string>{"\n"}));
}

TEST(ParamsText, DuplicateKeysTheLastOneCounts) {
  const auto a =
      parse_generate_params(R"({"prompt":"a","max_tokens":5,"prompt":"b","max_tokens":7})");
  ASSERT_TRUE(a.has_value()) << error_of(a);
  EXPECT_EQ(a->prompt, "b");
  EXPECT_EQ(a->max_tokens, 7);
  // A bad value followed by a good one is fine; a good one followed by a bad one is not.
  const auto b = parse_generate_params(R"({"prompt":"p","max_tokens":0,"max_tokens":9})");
  ASSERT_TRUE(b.has_value()) << error_of(b);
  EXPECT_EQ(b->max_tokens, 9);
  const auto c = parse_generate_params(R"({"prompt":"p","max_tokens":9,"max_tokens":0})");
  ASSERT_TRUE(c.has_error());
  EXPECT_TRUE(contains(c.error(), "'max_tokens'")) << c.error();
  // null as the last value means absent, here for a required param.
  const auto d = parse_generate_params(R"({"prompt":"p","prompt":null})");
  ASSERT_TRUE(d.has_error());
  EXPECT_TRUE(contains(d.error(), "'prompt'")) << d.error();
  const auto e = parse_tokenize_params(R"({"text":1,"text":"ok"})");
  ASSERT_TRUE(e.has_value()) << error_of(e);
  EXPECT_EQ(e->text, "ok");
}

TEST(ParamsText, IntegersAreWrittenAsIntegers) {
  // JSON has one number type, but 1e2 and 1.0 are not how an integer param is written; as with
  // nlohmann's reading (a float), they are refused, naming the param.
  for (const std::string_view extra :
       {R"("max_tokens":1e2)", R"("max_tokens":1.0)", R"("seed":1E3)", R"("timeout_ms":1000.0)",
        R"("max_tokens":-0.0)"}) {
    const std::string text = R"({"prompt":"p",)" + std::string(extra) + "}";
    const auto r = parse_generate_params(text);
    EXPECT_TRUE(r.has_error()) << text;
  }
  const auto neg_zero = parse_generate_params(R"({"prompt":"p","seed":-0})");
  EXPECT_TRUE(neg_zero.has_error()) << "-0 is not written as a non-negative integer";
  // Floats may be written as integers or with exponents.
  const auto t = parse_generate_params(R"({"prompt":"p","temperature":1,"top_p":5e-1})");
  ASSERT_TRUE(t.has_value()) << error_of(t);
  EXPECT_DOUBLE_EQ(t->temperature, 1.0);
  EXPECT_DOUBLE_EQ(t->top_p, 0.5);
  // Numbers beyond 64 bits or beyond double's range are out of range, not a crash.
  for (const std::string_view extra :
       {R"("temperature":123456789012345678901234567890)", R"("temperature":1e400)",
        R"("top_p":-1e400)", R"("max_tokens":123456789012345678901234567890)",
        R"("timeout_ms":-9223372036854775809)"}) {
    const std::string text = R"({"prompt":"p",)" + std::string(extra) + "}";
    EXPECT_TRUE(parse_generate_params(text).has_error()) << text;
  }
}

// Found by fuzz/jsonrpc_fuzz.cpp's differential check. FAILS: an empty name stands for "no
// unknown param seen" in ParamReader (proto/client_params.cpp), so a param named "" is ignored.
TEST(ParamsText, AnUnknownParamWithAnEmptyNameIsNamed) {
  const auto g = parse_generate_params(R"({"prompt":"p","":1})");
  ASSERT_TRUE(g.has_error());
  EXPECT_TRUE(contains(g.error(), "unknown param ''")) << g.error();
  EXPECT_TRUE(parse_tokenize_params(R"({"text":"t","":null})").has_error());
  EXPECT_TRUE(parse_detokenize_params(R"({"tokens":[],"":[]})").has_error());
  EXPECT_TRUE(parse_cancel_params(R"({"id":1,"":2})").has_error());
}

TEST(ParamsText, TheFirstProblemNamedDoesNotDependOnKeyOrder) {
  const auto a = parse_generate_params(R"({"top_p":5,"max_tokens":0,"prompt":"p"})");
  const auto b = parse_generate_params(R"({"prompt":"p","max_tokens":0,"top_p":5})");
  ASSERT_TRUE(a.has_error() && b.has_error());
  EXPECT_EQ(a.error(), b.error());
  EXPECT_TRUE(contains(a.error(), "'max_tokens'")) << a.error();
  // A type error is reported before an unknown param, wherever the unknown one is.
  const auto c = parse_generate_params(R"({"zzz":1,"prompt":"p","stream":"yes"})");
  ASSERT_TRUE(c.has_error());
  EXPECT_TRUE(contains(c.error(), "'stream'")) << c.error();
}

TEST(ParamsText, TextThatIsNotJsonIsRefusedNotACrash) {
  // parse_message validates params before any of these run; called directly, they still answer.
  for (const std::string_view text :
       {"{", R"({"prompt":)", R"({"prompt":"p")", "[", R"({"prompt" "p"})", "nul", "\"", "{]"}) {
    EXPECT_TRUE(parse_generate_params(text).has_error()) << text;
    EXPECT_TRUE(parse_tokenize_params(text).has_error()) << text;
    EXPECT_TRUE(parse_detokenize_params(text).has_error()) << text;
    EXPECT_TRUE(parse_cancel_params(text).has_error()) << text;
  }
  const auto r = parse_generate_params(R"({"prompt":)");
  ASSERT_TRUE(r.has_error());
  EXPECT_TRUE(contains(r.error(), "JSON")) << r.error();
}

TEST(ParamsText, ScalarParamsAreRefusedAsNotAnObject) {
  for (const std::string_view text : {"1", R"("prompt")", "true", "null"}) {
    const auto r = parse_generate_params(text);
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_TRUE(contains(r.error(), "object")) << text << ": " << r.error();
  }
}

TEST(ParamsText, ParamsFromParseMessageReadTheSameAsAlone) {
  const ParsedMessage m = parse_message(
      R"({"jsonrpc":"2.0","id":9,"method":"generate","params": {"prompt":"from a message","max_tokens":3} })");
  ASSERT_EQ(m.entries.size(), 1u);
  const auto& req = std::get<RpcRequest>(m.entries[0]);
  const auto r = parse_generate_params(req.params);
  ASSERT_TRUE(r.has_value()) << error_of(r);
  EXPECT_EQ(r->prompt, "from a message");
  EXPECT_EQ(r->max_tokens, 3);
}

// --- results and notifications written for clients -----------------------------------------------

TEST(ClientResults, GenerateResultCarriesTheWorkersOutputAndTheSupervisorsFields) {
  worker::GenerateResult w;
  w.text = "a \"quoted\"\nline \xff";
  w.finish_reason = "stop";
  w.usage = {71, 16};
  std::string out;
  encode_generate_result(out, w, 2, "miss", GenerateTiming{0.004, 0.061, 3.0});
  const json r = json::parse(out);
  EXPECT_EQ(r["text"], "a \"quoted\"\nline \xEF\xBF\xBD");
  EXPECT_EQ(r["finish_reason"], "stop");
  EXPECT_EQ(r["usage"], json::parse(R"({"prompt_tokens":71,"completion_tokens":16})"));
  EXPECT_EQ(r["worker"], 2);
  EXPECT_EQ(r["cache"], "miss");
  EXPECT_EQ(r["timing"], json::parse(R"({"queue_ms":0.004,"ttft_ms":0.061,"total_ms":3.0})"));
  EXPECT_NE(out.find(R"("total_ms":3.0)"), std::string::npos) << out;

  std::string no_worker;
  encode_generate_result(no_worker, w, -1, "hit", GenerateTiming{});
  EXPECT_TRUE(json::parse(no_worker)["worker"].is_null()) << "a cache hit involved no worker";
}

TEST(ClientResults, TokensTextAndChunk) {
  std::string tokens;
  encode_tokens_result(tokens, {1, -2, std::numeric_limits<std::int64_t>::max()});
  EXPECT_EQ(tokens, R"({"tokens":[1,-2,9223372036854775807]})");
  std::string none;
  encode_tokens_result(none, {});
  EXPECT_EQ(none, R"({"tokens":[]})");
  std::string text;
  encode_text_result(text, "x\ty");
  EXPECT_EQ(text, R"({"text":"x\ty"})");

  // The chunk carries the client's id byte-exactly, as it wrote it.
  for (const std::string id : {"1e2", R"("a\u0062")", "123456789012345678901234567890", "null"}) {
    std::string chunk;
    encode_chunk_notification(chunk, id, 3, "tok\"en");
    EXPECT_EQ(chunk, R"({"jsonrpc":"2.0","method":"generate.chunk","params":{"id":)" + id +
                         R"(,"index":3,"text":"tok\"en"}})");
    EXPECT_FALSE(json::parse(chunk, nullptr, false).is_discarded());
  }
}

}  // namespace
}  // namespace drover::proto
