// Typed params of the client methods: what is accepted, the defaults, and that every rejection
// names the offending param (the text becomes the -32602 message a client reads).
#include "proto/client_params.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace drover::proto {
namespace {

json params(std::string_view text) { return json::parse(text); }

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
  const auto absent = parse_generate_params(nullptr);
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
  const auto sixteen = parse_generate_params(p);
  ASSERT_TRUE(sixteen.has_value()) << error_of(sixteen);
  EXPECT_EQ(sixteen->stop.size(), 16u);
  p["stop"].push_back("one too many");
  const auto seventeen = parse_generate_params(p);
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

TEST(GenerateParams, ToWorkerParamsCarriesWhatTheWorkerNeeds) {
  const auto r = parse_generate_params(params(R"({
      "model": "tiny", "prompt": "hi", "max_tokens": 5, "temperature": 0.25, "top_p": 0.5,
      "seed": 1, "stop": ["."], "stream": true, "priority": "low", "cache": "bypass",
      "timeout_ms": 10})"));
  ASSERT_TRUE(r.has_value()) << error_of(r);
  const json w = r->to_worker_params(18446744073709551615ULL);
  EXPECT_EQ(w, json::parse(
                   R"({"model":"tiny","prompt":"hi","max_tokens":5,"temperature":0.25,
      "top_p":0.5,"seed":18446744073709551615,"stop":["."],"stream":true})"))
      << "the resolved seed is sent; priority, cache and timeout stay in the "
         "supervisor";
  EXPECT_TRUE(w["seed"].is_number_unsigned());
}

TEST(GenerateParams, ToWorkerParamsOmitsEmptyModelAndStop) {
  const auto r = parse_generate_params(params(R"({"prompt":"hi"})"));
  ASSERT_TRUE(r.has_value()) << error_of(r);
  const json w = r->to_worker_params(7);
  EXPECT_EQ(w, json::parse(
                   R"({"prompt":"hi","max_tokens":64,"temperature":0.8,"top_p":0.95,
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
  EXPECT_EQ(number->id, json(17));

  const auto string = parse_cancel_params(params(R"({"id":"req-1"})"));
  ASSERT_TRUE(string.has_value()) << error_of(string);
  EXPECT_EQ(string->id, json("req-1"));

  const auto null = parse_cancel_params(params(R"({"id":null})"));
  ASSERT_TRUE(null.has_value()) << error_of(null);
  EXPECT_TRUE(null->id.is_null());

  const auto big = parse_cancel_params(params(R"({"id":18446744073709551615})"));
  ASSERT_TRUE(big.has_value()) << error_of(big);
  EXPECT_EQ(big->id.dump(), "18446744073709551615") << "the id is kept exactly as written";
}

TEST(CancelParams, MissingOrInvalidIdIsRejectedNamingId) {
  for (std::string_view text : {"{}", R"({"id":true})", R"({"id":{}})", R"({"id":[1]})"}) {
    const auto r = parse_cancel_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_TRUE(contains(r.error(), "'id'")) << text << ": " << r.error();
  }
  const auto absent = parse_cancel_params(nullptr);
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
  EXPECT_TRUE(parse_no_params(nullptr).has_value());
  EXPECT_TRUE(parse_no_params(json::object()).has_value());
  EXPECT_TRUE(parse_no_params(json::array()).has_value());
}

TEST(NoParams, AnythingElseIsRejected) {
  for (std::string_view text : {R"({"x":1})", "[1]", R"({"verbose":true})"}) {
    const auto r = parse_no_params(params(text));
    ASSERT_TRUE(r.has_error()) << text;
    EXPECT_FALSE(r.error().empty());
  }
}

}  // namespace
}  // namespace drover::proto
