// The response side of the OpenAI-compatible HTTP API (shared/DESIGN.md section 4b,
// docs/OPENAI.md), written as bytes: completion and chat completion objects, the Server-Sent
// Events of a stream exactly as OpenAI frames them ("data: {...}\n\n", then "data: [DONE]\n\n"),
// the model list, and errors {"error": {"message", "type", "param", "code"}}.
//
// The frontend gets its answers from the pipeline as JSON-RPC reply text (the same bytes a
// JSON-RPC client gets); parse_generate_reply() reads the few fields an OpenAI response needs
// from them, and error_of() maps a drover error code to the HTTP status and OpenAI error a
// client expects (docs/OPENAI.md "Errors"). Pure, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/openai_request.hpp"

namespace drover::proto::openai {

// What every object of one response shares.
struct ResponseHead {
  Endpoint endpoint = Endpoint::completions;
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  std::int64_t created = 0;  // Unix seconds
  std::string model;
};

struct Usage {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  Usage& operator+=(const Usage& o) {
    prompt_tokens += o.prompt_tokens;
    completion_tokens += o.completion_tokens;
    return *this;
  }
};

struct Choice {
  std::string text;
  std::string finish_reason;
};

// A drover generate reply (JSON-RPC text) read for its result or its error.
struct GenerateReply {
  bool ok = false;
  std::string text;
  std::string finish_reason;
  Usage usage;
  // When !ok: the JSON-RPC error.
  int code = 0;
  std::string message;
  std::optional<std::int64_t> retry_after_ms;  // error.data.retry_after_ms
  std::string detail;                          // error.data.detail, when given
  std::string model;                           // error.data.model, when given
};
GenerateReply parse_generate_reply(std::string_view reply);

// The HTTP error for a drover error reply; `retry_after_s` is set for 429 and 503.
struct HttpError {
  Error error;
  std::optional<std::int64_t> retry_after_s;
};
HttpError error_of(const GenerateReply& reply);

// A whole (non-streamed) response: one choice per prompt, in order.
std::string encode_response(const ResponseHead& head, const std::vector<Choice>& choices,
                            const Usage& usage);
std::string encode_error(const Error& e);
// GET /v1/models and GET /v1/models/{id}.
std::string encode_model_list(const std::vector<std::string>& ids, std::int64_t created);
std::string encode_model(std::string_view id, std::int64_t created);

// --- Server-Sent Events: each call appends one complete event ("data: ...\n\n") -------------
// `with_usage`: stream_options.include_usage was set, so every chunk carries "usage": null
// and the usage comes in its own event before [DONE], as OpenAI sends it.

// chat only: the first event of a choice, {"role": "assistant", "content": ""}.
void append_role_event(std::string& out, const ResponseHead& head, std::size_t index,
                       bool with_usage);
// A piece of a choice's text: choices[].text (completions) or choices[].delta.content (chat).
void append_text_event(std::string& out, const ResponseHead& head, std::size_t index,
                       std::string_view text, bool with_usage);
// The last event of a choice: empty text / delta with its finish_reason.
void append_finish_event(std::string& out, const ResponseHead& head, std::size_t index,
                         std::string_view finish_reason, bool with_usage);
// "choices": [] and the usage of the whole request.
void append_usage_event(std::string& out, const ResponseHead& head, const Usage& usage);
// An error after the stream began (its status line is already sent): OpenAI's error object
// as an event; [DONE] does not follow.
void append_error_event(std::string& out, const Error& e);
inline constexpr std::string_view kDoneEvent = "data: [DONE]\n\n";

}  // namespace drover::proto::openai
