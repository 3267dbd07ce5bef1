// The OpenAI API's request parser and response writer (proto/openai_request.hpp,
// proto/openai_response.hpp): defaults, the 400s that name their parameter, unknown fields
// ignored, and the bytes of responses and SSE events as OpenAI's clients read them.
#include <gtest/gtest.h>

#include "common/error_codes.hpp"
#include "proto/openai_request.hpp"
#include "proto/openai_response.hpp"

namespace drover::proto::openai {
namespace {

Request parse_ok(Endpoint e, std::string_view body) {
  auto r = parse_request(e, body);
  EXPECT_TRUE(r.has_value()) << body << " -> " << (r ? "" : r.error().message);
  return r ? *r : Request{};
}

Error parse_error(Endpoint e, std::string_view body) {
  auto r = parse_request(e, body);
  EXPECT_FALSE(r.has_value()) << body;
  return r ? Error{} : r.error();
}

TEST(OpenAiRequest, CompletionsDefaultsAreOpenAis) {
  const auto r = parse_ok(Endpoint::completions, R"({"model":"tinyllm","prompt":"Once"})");
  EXPECT_EQ(r.params.model, "tinyllm");
  ASSERT_EQ(r.prompts, std::vector<std::string>{"Once"});
  EXPECT_EQ(r.params.max_tokens, 16);
  EXPECT_DOUBLE_EQ(r.params.temperature, 1.0);
  EXPECT_DOUBLE_EQ(r.params.top_p, 1.0);
  EXPECT_FALSE(r.params.stream);
  EXPECT_FALSE(r.params.seed.has_value());
}

TEST(OpenAiRequest, EveryFieldIsRead) {
  const auto r = parse_ok(Endpoint::completions,
                          R"({"model":"m","prompt":["a","b"],"max_tokens":5,"temperature":0,
                              "top_p":0.5,"stop":"\n","seed":-1,"stream":true,
                              "stream_options":{"include_usage":true},"user":"u1","n":1,
                              "logprobs":null,"echo":false,"presence_penalty":0})");
  EXPECT_EQ(r.prompts, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.params.max_tokens, 5);
  EXPECT_DOUBLE_EQ(r.params.temperature, 0.0);
  EXPECT_DOUBLE_EQ(r.params.top_p, 0.5);
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(r.params.seed, std::optional<std::uint64_t>(~std::uint64_t{0}));  // -1, same bits
  EXPECT_TRUE(r.params.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.user, "u1");
}

TEST(OpenAiRequest, UnknownFieldsAreIgnored) {
  const auto r = parse_ok(Endpoint::chat,
                          R"({"model":"m","messages":[{"role":"user","content":"hi","name":"x"}],
                              "metadata":{"a":[1,2,{"b":null}]},"store":false})");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].content, "hi");
  EXPECT_EQ(r.params.max_tokens, kChatMaxTokens);
}

TEST(OpenAiRequest, ChatContentPartsAreJoined) {
  const auto r = parse_ok(Endpoint::chat,
                          R"({"model":"m","max_completion_tokens":7,"messages":[
                              {"role":"system","content":"be brief"},
                              {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.params.max_tokens, 7);
}

TEST(OpenAiRequest, UnsupportedOptionsAreRefusedByName) {
  for (const auto& [body, param] : std::vector<std::pair<std::string, std::string>>{
           {R"({"model":"m","prompt":"p","n":2})", "n"},
           {R"({"model":"m","prompt":"p","best_of":3})", "best_of"},
           {R"({"model":"m","prompt":"p","logprobs":2})", "logprobs"},
           {R"({"model":"m","prompt":"p","echo":true})", "echo"},
           {R"({"model":"m","prompt":"p","suffix":"x"})", "suffix"},
           {R"({"model":"m","prompt":"p","frequency_penalty":0.5})", "frequency_penalty"},
           {R"({"model":"m","prompt":"p","logit_bias":{"50256":-100}})", "logit_bias"},
       }) {
    const Error e = parse_error(Endpoint::completions, body);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, param) << body;
    EXPECT_EQ(e.code, "unsupported_parameter") << body;
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_NE(e.message.find(param), std::string::npos) << e.message;
  }
  for (const auto& [body, param] : std::vector<std::pair<std::string, std::string>>{
           {R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})", "tools"},
           {R"({"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"auto"})", "tool_choice"},
           {R"({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true})", "logprobs"},
           {R"({"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})", "response_format"},
           {R"({"model":"m","messages":[{"role":"tool","content":"x"}]})", "messages[0].role"},
           {R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "messages[0].content"},
       }) {
    const Error e = parse_error(Endpoint::chat, body);
    EXPECT_EQ(e.param, param) << body;
    EXPECT_EQ(e.code, "unsupported_parameter") << body;
  }
  // Their neutral values are accepted.
  parse_ok(Endpoint::chat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":1,
                               "logprobs":false,"tools":[],"tool_choice":"none",
                               "response_format":{"type":"text"},"logit_bias":{}})");
}

TEST(OpenAiRequest, BadValuesNameTheParameter) {
  for (const auto& [body, param] : std::vector<std::pair<std::string, std::string>>{
           {R"({"prompt":"p"})", "model"},
           {R"({"model":"m"})", "prompt"},
           {R"({"model":5,"prompt":"p"})", "model"},
           {R"({"model":"m","prompt":[1,2]})", "prompt"},
           {R"({"model":"m","prompt":[]})", "prompt"},
           {R"({"model":"m","prompt":"p","max_tokens":0})", "max_tokens"},
           {R"({"model":"m","prompt":"p","max_tokens":"5"})", "max_tokens"},
           {R"({"model":"m","prompt":"p","temperature":3})", "temperature"},
           {R"({"model":"m","prompt":"p","top_p":-0.1})", "top_p"},
           {R"({"model":"m","prompt":"p","stop":[""]})", "stop"},
           {R"({"model":"m","prompt":"p","seed":1.5})", "seed"},
           {R"({"model":"m","prompt":"p","stream":"yes"})", "stream"},
           {R"({"model":"m","prompt":"p","stream_options":{"include_usage":true}})", "stream_options"},
       }) {
    const Error e = parse_error(Endpoint::completions, body);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, param) << body << ": " << e.message;
    EXPECT_EQ(e.type, "invalid_request_error");
  }
  EXPECT_EQ(parse_error(Endpoint::chat, R"({"model":"m","messages":[]})").param, "messages");
  EXPECT_EQ(parse_error(Endpoint::chat, R"({"model":"m","messages":[{"content":"x"}]})").param,
            "messages[0].role");
  EXPECT_EQ(parse_error(Endpoint::chat, R"({"model":"m","messages":[{"role":"robot","content":"x"}]})").param,
            "messages[0].role");
}

TEST(OpenAiRequest, BodiesThatAreNotAJsonObjectAreRefused) {
  for (std::string_view body : {"", "{", "[]", "5", R"({"model":"m","prompt":"p"} x)",
                                R"({"model":"m","prompt":"p","x":[1,]})"}) {
    const Error e = parse_error(Endpoint::completions, body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_TRUE(e.param.empty()) << body;
  }
  EXPECT_EQ(parse_error(Endpoint::completions, std::string(1000, '[') + std::string(1000, ']')).status, 400);
}

TEST(OpenAiResponse, CompletionBytes) {
  const ResponseHead head{Endpoint::completions, "cmpl-1", 1700000000, "tinyllm"};
  EXPECT_EQ(encode_response(head, {{"hi \"x\"", "length"}}, {3, 2}),
            R"({"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"tinyllm",)"
            R"("choices":[{"text":"hi \"x\"","index":0,"logprobs":null,"finish_reason":"length"}],)"
            R"("usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}})");
}

TEST(OpenAiResponse, ChatBytes) {
  const ResponseHead head{Endpoint::chat, "chatcmpl-1", 7, "m"};
  EXPECT_EQ(encode_response(head, {{"yes", "stop"}}, {1, 1}),
            R"({"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"m",)"
            R"("choices":[{"index":0,"message":{"role":"assistant","content":"yes"},)"
            R"("logprobs":null,"finish_reason":"stop"}],)"
            R"("usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}})");
}

TEST(OpenAiResponse, ChatStreamEventsAsOpenAiSendsThem) {
  const ResponseHead head{Endpoint::chat, "chatcmpl-1", 7, "m"};
  std::string out;
  append_role_event(out, head, 0, true);
  append_text_event(out, head, 0, "Hi", true);
  append_finish_event(out, head, 0, "stop", true);
  append_usage_event(out, head, {2, 1});
  out += kDoneEvent;
  const std::string prefix = R"(data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[)";
  EXPECT_EQ(out,
            prefix + R"({"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null})" "\n\n" +
            prefix + R"({"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null})" "\n\n" +
            prefix + R"({"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})" "\n\n" +
            prefix + R"(],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}})" "\n\n"
            "data: [DONE]\n\n");
}

TEST(OpenAiResponse, CompletionStreamEventsCarryText) {
  const ResponseHead head{Endpoint::completions, "cmpl-1", 7, "m"};
  std::string out;
  append_text_event(out, head, 1, "a\nb", false);
  append_finish_event(out, head, 1, "length", false);
  const std::string prefix = R"(data: {"id":"cmpl-1","object":"text_completion","created":7,"model":"m","choices":[)";
  EXPECT_EQ(out, prefix + R"({"text":"a\nb","index":1,"logprobs":null,"finish_reason":null}]})" "\n\n" +
                     prefix + R"({"text":"","index":1,"logprobs":null,"finish_reason":"length"}]})" "\n\n");
}

TEST(OpenAiResponse, ErrorAndModelBytes) {
  EXPECT_EQ(encode_error({404, "no such model", "invalid_request_error", "model", "model_not_found"}),
            R"({"error":{"message":"no such model","type":"invalid_request_error","param":"model","code":"model_not_found"}})");
  EXPECT_EQ(encode_error({400, "bad", "invalid_request_error", "", ""}),
            R"({"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}})");
  EXPECT_EQ(encode_model_list({"a", "b"}, 5),
            R"({"object":"list","data":[{"id":"a","object":"model","created":5,"owned_by":"drover"},)"
            R"({"id":"b","object":"model","created":5,"owned_by":"drover"}]})");
}

TEST(OpenAiResponse, GenerateRepliesAreRead) {
  const auto ok = parse_generate_reply(
      R"({"jsonrpc":"2.0","id":null,"result":{"text":"abc","finish_reason":"length",)"
      R"("usage":{"prompt_tokens":4,"completion_tokens":3},"worker":1,"cache":"miss",)"
      R"("timing":{"queue_ms":0.1,"ttft_ms":1.0,"total_ms":2.0}}})");
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.text, "abc");
  EXPECT_EQ(ok.finish_reason, "length");
  EXPECT_EQ(ok.usage.prompt_tokens, 4);
  EXPECT_EQ(ok.usage.completion_tokens, 3);

  const auto busy = parse_generate_reply(
      R"({"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Overloaded","data":{"retry_after_ms":1500}}})");
  EXPECT_FALSE(busy.ok);
  const HttpError e = error_of(busy);
  EXPECT_EQ(e.error.status, 429);
  EXPECT_EQ(e.retry_after_s, std::optional<std::int64_t>(2));

  const auto model = parse_generate_reply(
      R"({"jsonrpc":"2.0","id":null,"error":{"code":-32006,"message":"Unknown model","data":{"model":"x","detail":"not in the models catalog"}}})");
  const HttpError m = error_of(model);
  EXPECT_EQ(m.error.status, 404);
  EXPECT_EQ(m.error.param, "model");
  EXPECT_EQ(m.error.code, "model_not_found");
  EXPECT_NE(m.error.message.find("'x' does not exist"), std::string::npos) << m.error.message;
  EXPECT_NE(m.error.message.find("not in the models catalog"), std::string::npos);

  for (const auto& [code, status] : std::vector<std::pair<RpcError, int>>{
           {RpcError::no_healthy_worker, 503}, {RpcError::shutting_down, 503},
           {RpcError::worker_failed, 500}, {RpcError::timed_out, 504},
           {RpcError::message_too_large, 413}, {RpcError::invalid_params, 400}}) {
    GenerateReply r;
    r.code = code_of(code);
    EXPECT_EQ(error_of(r).error.status, status) << r.code;
  }
}

}  // namespace
}  // namespace drover::proto::openai
