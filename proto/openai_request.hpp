// The request bodies of the OpenAI-compatible HTTP API (shared/DESIGN.md section 4b,
// docs/OPENAI.md): POST /v1/completions and POST /v1/chat/completions read into typed params
// in one validating pass and one on-demand walk (simdjson, no tree).
//
// As OpenAI does, unknown fields are ignored (clients send fields drover has no use for);
// fields drover cannot honour (n > 1, logprobs, echo, tools, ...) are refused with a 400 that
// names the parameter, so a client never silently gets less than it asked for. Defaults are
// OpenAI's: temperature 1, top_p 1, max_tokens 16 for completions and kChatMaxTokens for chat.
// Pure, thread-safe.
#pragma once

#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "proto/client_params.hpp"

namespace drover::proto::openai {

enum class Endpoint { completions, chat };

// The longest answer of a chat request that does not say max_tokens (OpenAI's is "up to the
// context length"; tinyllm's shipped model has 512 positions).
inline constexpr int kChatMaxTokens = 256;
// Prompts in one completions request (one choice each).
inline constexpr std::size_t kMaxPrompts = 64;

struct ChatMessage {
  std::string role;  // system, developer, user or assistant
  std::string content;
};

struct Request {
  Endpoint endpoint = Endpoint::completions;
  // model, max_tokens, temperature, top_p, seed, stop and stream; prompt is left empty (the
  // prompts are below; a chat's prompt is its messages through the model's chat template).
  GenerateParams params;
  std::vector<std::string> prompts;   // completions: one or more, choice i answers prompts[i]
  std::vector<ChatMessage> messages;  // chat
  bool include_usage = false;         // stream_options.include_usage
  std::string user;
};

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with `status`.
struct Error {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
};

using RequestResult = boost::system::result<Request, Error>;

RequestResult parse_request(Endpoint endpoint, std::string_view body);

}  // namespace drover::proto::openai
