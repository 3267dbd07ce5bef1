#include "proto/openai_response.hpp"

#include <fmt/format.h>

#include "common/error_codes.hpp"
#include "proto/json_text.hpp"

namespace drover::proto::openai {
namespace {

void append_nullable(std::string& out, std::string_view s) {
  if (s.empty()) {
    out += "null";
  } else {
    append_string(out, s);
  }
}

std::string_view object_of(Endpoint e, bool chunk) {
  if (e == Endpoint::completions) return "text_completion";
  return chunk ? "chat.completion.chunk" : "chat.completion";
}

// {"id":..,"object":..,"created":..,"model":..,"choices":[  (the caller closes it)
void open_object(std::string& out, const ResponseHead& head, bool chunk) {
  out += "{\"id\":";
  append_string(out, head.id);
  out += ",\"object\":";
  append_string(out, object_of(head.endpoint, chunk));
  out += ",\"created\":";
  append_int(out, head.created);
  out += ",\"model\":";
  append_string(out, head.model);
  out += ",\"choices\":[";
}

void append_usage(std::string& out, const Usage& u) {
  out += "{\"prompt_tokens\":";
  append_int(out, u.prompt_tokens);
  out += ",\"completion_tokens\":";
  append_int(out, u.completion_tokens);
  out += ",\"total_tokens\":";
  append_int(out, u.prompt_tokens + u.completion_tokens);
  out += '}';
}

// One chunk event of choice `index`: `text` (completions) or `delta` (chat, JSON text).
void append_chunk(std::string& out, const ResponseHead& head, std::size_t index,
                  std::string_view text_or_delta, std::string_view finish_reason,
                  bool with_usage) {
  out += "data: ";
  open_object(out, head, true);
  if (head.endpoint == Endpoint::completions) {
    out += "{\"text\":";
    append_string(out, text_or_delta);
    out += ",\"index\":";
    append_uint(out, index);
  } else {
    out += "{\"index\":";
    append_uint(out, index);
    out += ",\"delta\":";
    out += text_or_delta;
  }
  out += ",\"logprobs\":null,\"finish_reason\":";
  append_nullable(out, finish_reason);
  out += "}]";
  if (with_usage) out += ",\"usage\":null";
  out += "}\n\n";
}

// Reads {"code", "message", "data": {"retry_after_ms", "detail"}}.
void read_error(od::value v, GenerateReply& r) {
  od::object obj;
  if (v.get_object().get(obj)) return;
  for (auto field : obj) {
    std::string_view key, s;
    od::value value;
    if (next_field(field, key, value)) return;
    if (key == "code") {
      std::int64_t c;
      if (!value.get_int64().get(c)) r.code = static_cast<int>(c);
    } else if (key == "message") {
      if (!value.get_string().get(s)) r.message.assign(s);
    } else if (key == "data") {
      od::object data;
      if (value.get_object().get(data)) continue;
      for (auto d : data) {
        od::value dv;
        if (next_field(d, key, dv)) return;
        std::int64_t ms;
        if (key == "retry_after_ms" && !dv.get_int64().get(ms)) r.retry_after_ms = ms;
        if (key == "detail" && !dv.get_string().get(s)) r.detail.assign(s);
        if (key == "model" && !dv.get_string().get(s)) r.model.assign(s);
      }
    }
  }
}

void read_result(od::value v, GenerateReply& r) {
  od::object obj;
  if (v.get_object().get(obj)) return;
  for (auto field : obj) {
    std::string_view key, s;
    od::value value;
    if (next_field(field, key, value)) return;
    if (key == "text") {
      if (!value.get_string().get(s)) r.text.assign(s);
    } else if (key == "finish_reason") {
      if (!value.get_string().get(s)) r.finish_reason.assign(s);
    } else if (key == "usage") {
      od::object usage;
      if (value.get_object().get(usage)) continue;
      for (auto u : usage) {
        od::value uv;
        std::int64_t n;
        if (next_field(u, key, uv) || uv.get_int64().get(n)) continue;
        if (key == "prompt_tokens") r.usage.prompt_tokens = n;
        if (key == "completion_tokens") r.usage.completion_tokens = n;
      }
    }
  }
}

}  // namespace

GenerateReply parse_generate_reply(std::string_view reply) {
  GenerateReply r;
  r.code = code_of(RpcError::internal_error);
  static thread_local JsonScanner scanner;
  od::document doc;
  od::object obj;
  if (scanner.iterate(reply).get(doc) || doc.get_object().get(obj)) return r;
  for (auto field : obj) {
    std::string_view key;
    od::value value;
    if (next_field(field, key, value)) return r;
    if (key == "result") {
      r.ok = true;
      read_result(value, r);
    } else if (key == "error") {
      read_error(value, r);
    }
  }
  return r;
}

HttpError error_of(const GenerateReply& reply) {
  const auto code = static_cast<RpcError>(reply.code);
  std::string message = reply.message.empty() ? std::string(default_message(code)) : reply.message;
  if (code == RpcError::unknown_model && !reply.model.empty()) {
    message = fmt::format("the model '{}' does not exist or cannot be loaded", reply.model);
  }
  if (!reply.detail.empty()) message += ": " + reply.detail;
  auto make = [&](int status, std::string_view type, std::string_view param,
                  std::string_view error_code) {
    return HttpError{Error{status, message, std::string(type), std::string(param),
                           std::string(error_code)},
                     std::nullopt};
  };
  // Whole seconds, at least 1: Retry-After has no fractions.
  auto retry_after = [&](HttpError e) {
    e.retry_after_s = std::max<std::int64_t>(1, (reply.retry_after_ms.value_or(1000) + 999) / 1000);
    return e;
  };
  switch (code) {
    case RpcError::invalid_params:
      return make(400, "invalid_request_error", {}, {});
    case RpcError::unknown_model:
      return make(404, "invalid_request_error", "model", "model_not_found");
    case RpcError::message_too_large:
      return make(413, "invalid_request_error", {}, "request_too_large");
    case RpcError::overloaded:
      return retry_after(make(429, "rate_limit_error", {}, "overloaded"));
    case RpcError::no_healthy_worker:
      return retry_after(make(503, "server_error", {}, "no_worker_ready"));
    case RpcError::shutting_down:
      return retry_after(make(503, "server_error", {}, "shutting_down"));
    case RpcError::timed_out:
      return make(504, "server_error", {}, "timeout");
    case RpcError::slow_consumer:
      return make(500, "server_error", {}, "slow_consumer");
    case RpcError::worker_failed:
      return make(500, "server_error", {}, "worker_failed");
    default:
      return make(500, "server_error", {}, "internal_error");
  }
}

std::string encode_response(const ResponseHead& head, const std::vector<Choice>& choices,
                            const Usage& usage) {
  std::string out;
  out.reserve(256);
  open_object(out, head, false);
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += ',';
    const auto& c = choices[i];
    if (head.endpoint == Endpoint::completions) {
      out += "{\"text\":";
      append_string(out, c.text);
      out += ",\"index\":";
      append_uint(out, i);
    } else {
      out += "{\"index\":";
      append_uint(out, i);
      out += ",\"message\":{\"role\":\"assistant\",\"content\":";
      append_string(out, c.text);
      out += '}';
    }
    out += ",\"logprobs\":null,\"finish_reason\":";
    append_nullable(out, c.finish_reason);
    out += '}';
  }
  out += "],\"usage\":";
  append_usage(out, usage);
  out += '}';
  return out;
}

std::string encode_error(const Error& e) {
  std::string out = "{\"error\":{\"message\":";
  append_string(out, e.message);
  out += ",\"type\":";
  append_string(out, e.type);
  out += ",\"param\":";
  append_nullable(out, e.param);
  out += ",\"code\":";
  append_nullable(out, e.code);
  out += "}}";
  return out;
}

std::string encode_model(std::string_view id, std::int64_t created) {
  std::string out = "{\"id\":";
  append_string(out, id);
  out += ",\"object\":\"model\",\"created\":";
  append_int(out, created);
  out += ",\"owned_by\":\"drover\"}";
  return out;
}

std::string encode_model_list(const std::vector<std::string>& ids, std::int64_t created) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ',';
    out += encode_model(ids[i], created);
  }
  out += "]}";
  return out;
}

void append_role_event(std::string& out, const ResponseHead& head, std::size_t index,
                       bool with_usage) {
  append_chunk(out, head, index, R"({"role":"assistant","content":""})", {}, with_usage);
}

void append_text_event(std::string& out, const ResponseHead& head, std::size_t index,
                       std::string_view text, bool with_usage) {
  if (head.endpoint == Endpoint::completions) {
    return append_chunk(out, head, index, text, {}, with_usage);
  }
  std::string delta = "{\"content\":";
  append_string(delta, text);
  delta += '}';
  append_chunk(out, head, index, delta, {}, with_usage);
}

void append_finish_event(std::string& out, const ResponseHead& head, std::size_t index,
                         std::string_view finish_reason, bool with_usage) {
  append_chunk(out, head, index, head.endpoint == Endpoint::completions ? "" : "{}",
               finish_reason.empty() ? "stop" : finish_reason, with_usage);
}

void append_usage_event(std::string& out, const ResponseHead& head, const Usage& usage) {
  out += "data: ";
  open_object(out, head, true);
  out += "],\"usage\":";
  append_usage(out, usage);
  out += "}\n\n";
}

void append_error_event(std::string& out, const Error& e) {
  out += "data: ";
  out += encode_error(e);
  out += "\n\n";
}

}  // namespace drover::proto::openai
