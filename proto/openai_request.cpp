#include "proto/openai_request.hpp"

#include <fmt/format.h>

#include <optional>

#include "proto/json_text.hpp"

namespace drover::proto::openai {
namespace {

// Collects the first problem found; the walk goes on (reading nothing more) once there is one.
struct Problems {
  std::optional<Error> first;

  void invalid(std::string_view param, std::string message) {
    if (!first) first = Error{400, std::move(message), "invalid_request_error", std::string(param), {}};
  }
  void wrong_type(std::string_view param, std::string_view what) {
    invalid(param, fmt::format("'{}' must be {}", param, what));
  }
  void unsupported(std::string_view param, std::string_view why) {
    if (!first) {
      first = Error{400, fmt::format("'{}' is not supported by drover: {}", param, why),
                    "invalid_request_error", std::string(param), "unsupported_parameter"};
    }
  }
};

bool is_null(od::value& v) {
  bool null = false;
  return !v.is_null().get(null) && null;
}

void read_string(Problems& p, std::string_view param, od::value& v, std::string& out) {
  std::string_view s;
  if (v.get_string().get(s)) return p.wrong_type(param, "a string");
  out.assign(s);
}

void read_int(Problems& p, std::string_view param, od::value& v, int& out, std::int64_t min,
              std::int64_t max) {
  std::int64_t n;
  if (v.get_int64().get(n) || n < min || n > max) {
    return p.wrong_type(param, fmt::format("an integer in {}..{}", min, max));
  }
  out = static_cast<int>(n);
}

void read_number(Problems& p, std::string_view param, od::value& v, double& out, double min,
                 double max) {
  double d;
  if (v.get_double().get(d) || d < min || d > max) {
    return p.wrong_type(param, fmt::format("a number in {}..{}", min, max));
  }
  out = d;
}

// A string, or a list of strings (stop, prompt).
bool read_strings(od::value& v, std::vector<std::string>& out, std::size_t max, bool non_empty) {
  std::string_view s;
  if (!v.get_string().get(s)) {
    if (non_empty && s.empty()) return false;
    out.emplace_back(s);
    return true;
  }
  od::array arr;
  if (v.get_array().get(arr)) return false;
  for (auto item : arr) {
    if (item.get_string().get(s) || (non_empty && s.empty()) || out.size() >= max) return false;
    out.emplace_back(s);
  }
  return true;
}

// `content`: a string, or a list of {"type": "text", "text": ...} parts (joined).
void read_content(Problems& p, const std::string& param, od::value& v, std::string& out) {
  std::string_view s;
  if (!v.get_string().get(s)) {
    out.assign(s);
    return;
  }
  od::array parts;
  if (v.get_array().get(parts)) return p.wrong_type(param, "a string or a list of text parts");
  for (auto part : parts) {
    od::object obj;
    if (part.get_object().get(obj)) return p.wrong_type(param, "a string or a list of text parts");
    std::string type, text;
    for (auto field : obj) {
      std::string_view key;
      od::value value;
      if (next_field(field, key, value)) return p.wrong_type(param, "a list of text parts");
      if (key == "type") read_string(p, param + ".type", value, type);
      if (key == "text") read_string(p, param + ".text", value, text);
    }
    if (type != "text") {
      return p.unsupported(param, fmt::format("content parts of type '{}' (only text)", type));
    }
    out += text;
  }
}

void read_messages(Problems& p, od::value& v, std::vector<ChatMessage>& out) {
  od::array arr;
  if (v.get_array().get(arr)) return p.wrong_type("messages", "a list of messages");
  for (auto item : arr) {
    const std::string param = fmt::format("messages[{}]", out.size());
    od::object obj;
    if (item.get_object().get(obj)) return p.wrong_type(param, "an object with role and content");
    ChatMessage m;
    bool have_role = false;
    for (auto field : obj) {
      std::string_view key;
      od::value value;
      if (next_field(field, key, value)) return p.wrong_type(param, "an object");
      if (is_null(value)) continue;
      if (key == "role") {
        read_string(p, param + ".role", value, m.role);
        have_role = true;
      } else if (key == "content") {
        read_content(p, param + ".content", value, m.content);
      } else if (key == "tool_calls" || key == "function_call") {
        p.unsupported(param + "." + std::string(key), "tool and function calls");
      }
    }
    if (!have_role) return p.invalid(param + ".role", fmt::format("'{}.role' is required", param));
    if (m.role == "tool" || m.role == "function") {
      p.unsupported(param + ".role", "tool and function messages");
    } else if (m.role != "system" && m.role != "developer" && m.role != "user" &&
               m.role != "assistant") {
      p.invalid(param + ".role",
                fmt::format("'{}.role' must be one of system, developer, user, assistant, got '{}'",
                            param, m.role));
    }
    out.push_back(std::move(m));
  }
  if (out.empty()) p.invalid("messages", "'messages' must hold at least one message");
}

void read_stream_options(Problems& p, od::value& v, bool& include_usage) {
  od::object obj;
  if (v.get_object().get(obj)) return p.wrong_type("stream_options", "an object");
  for (auto field : obj) {
    std::string_view key;
    od::value value;
    if (next_field(field, key, value)) return p.wrong_type("stream_options", "an object");
    if (key == "include_usage" && !is_null(value) && value.get_bool().get(include_usage)) {
      p.wrong_type("stream_options.include_usage", "true or false");
    }
  }
}

// Fields whose only supported values are their neutral ones (absent, null or the value named).
void read_unsupported(Problems& p, Endpoint endpoint, std::string_view key, od::value& v) {
  if (key == "n" || key == "best_of") {
    std::int64_t n;
    if (v.get_int64().get(n) || n != 1) p.unsupported(key, "one choice per prompt (n = 1)");
  } else if (key == "logprobs") {
    bool b = false;
    std::int64_t n = 0;
    const bool off = endpoint == Endpoint::chat ? !v.get_bool().get(b) && !b
                                                : !v.get_int64().get(n) && n == 0;
    if (!off) p.unsupported(key, "log probabilities");
  } else if (key == "top_logprobs") {
    p.unsupported(key, "log probabilities");
  } else if (key == "echo") {
    bool b = false;
    if (v.get_bool().get(b) || b) p.unsupported(key, "echoing the prompt");
  } else if (key == "suffix") {
    p.unsupported(key, "insertion (suffix)");
  } else if (key == "presence_penalty" || key == "frequency_penalty") {
    double d = 0;
    if (v.get_double().get(d) || d != 0.0) p.unsupported(key, "penalties (only 0)");
  } else if (key == "logit_bias") {
    od::object obj;
    std::size_t count = 1;
    if (v.get_object().get(obj) || obj.count_fields().get(count) || count != 0) {
      p.unsupported(key, "logit bias");
    }
  } else if (key == "tools" || key == "functions") {
    od::array arr;
    std::size_t count = 1;
    if (v.get_array().get(arr) || arr.count_elements().get(count) || count != 0) {
      p.unsupported(key, "tool and function calls");
    }
  } else if (key == "tool_choice" || key == "function_call") {
    std::string_view s;
    if (v.get_string().get(s) || s != "none") p.unsupported(key, "tool and function calls");
  } else if (key == "response_format") {
    od::object obj;
    std::string_view type;
    if (v.get_object().get(obj) || obj["type"].get_string().get(type) || type != "text") {
      p.unsupported(key, "structured output (only {\"type\": \"text\"})");
    }
  }
}

bool is_unsupported_key(std::string_view key) {
  for (std::string_view k :
       {"n", "best_of", "logprobs", "top_logprobs", "echo", "suffix", "presence_penalty",
        "frequency_penalty", "logit_bias", "tools", "functions", "tool_choice", "function_call",
        "response_format"}) {
    if (k == key) return true;
  }
  return false;
}

}  // namespace

RequestResult parse_request(Endpoint endpoint, std::string_view body) {
  auto fail = [](Error e) { return RequestResult(boost::system::in_place_error, std::move(e)); };
  auto not_json = [&] {
    return fail(Error{400, "the request body is not valid JSON", "invalid_request_error", {}, {}});
  };
  if (nests_deeper_than(body, kMaxJsonDepth)) return not_json();
  static thread_local JsonScanner scanner;
  od::document doc;
  // First pass: the whole body is JSON (the second reads only what it knows).
  if (scanner.iterate(body).get(doc) || skip_document(doc, body)) return not_json();
  od::json_type type;
  od::object obj;
  if (scanner.iterate(body).get(doc) || doc.type().get(type)) return not_json();
  if (type != od::json_type::object || doc.get_object().get(obj)) {
    return fail(Error{400, "the request body must be a JSON object", "invalid_request_error", {}, {}});
  }

  Request r;
  r.endpoint = endpoint;
  auto& g = r.params;
  g.max_tokens = endpoint == Endpoint::chat ? kChatMaxTokens : 16;
  g.temperature = 1.0;
  g.top_p = 1.0;
  Problems p;
  bool have_model = false, have_input = false, have_stream_options = false;
  const std::string_view input = endpoint == Endpoint::chat ? "messages" : "prompt";
  for (auto field : obj) {
    // The first problem is the answer; a walk stopped inside a value cannot go on.
    if (p.first) break;
    std::string_view key;
    od::value v;
    if (next_field(field, key, v)) return not_json();
    if (is_null(v)) continue;  // null means absent, as in OpenAI's API
    if (key == "model") {
      read_string(p, key, v, g.model);
      have_model = !g.model.empty();
    } else if (key == input) {
      have_input = true;
      if (endpoint == Endpoint::chat) {
        read_messages(p, v, r.messages);
      } else if (!read_strings(v, r.prompts, kMaxPrompts, false) || r.prompts.empty()) {
        p.wrong_type(key, fmt::format("a string or a list of 1..{} strings (token arrays are not "
                                      "supported)",
                                      kMaxPrompts));
      }
    } else if (key == "max_tokens" ||
               (endpoint == Endpoint::chat && key == "max_completion_tokens")) {
      read_int(p, key, v, g.max_tokens, 1, kMaxTokensLimit);
    } else if (key == "temperature") {
      read_number(p, key, v, g.temperature, 0.0, 2.0);
    } else if (key == "top_p") {
      read_number(p, key, v, g.top_p, 0.0, 1.0);
    } else if (key == "seed") {
      std::int64_t s;
      std::uint64_t u;
      if (!v.get_int64().get(s)) {
        g.seed = static_cast<std::uint64_t>(s);  // OpenAI's seeds are signed; same bits
      } else if (!v.get_uint64().get(u)) {
        g.seed = u;
      } else {
        p.wrong_type(key, "an integer");
      }
    } else if (key == "stop") {
      if (!read_strings(v, g.stop, 16, true)) {
        p.wrong_type(key, "a non-empty string or a list of at most 16 non-empty strings");
      }
    } else if (key == "stream") {
      if (v.get_bool().get(g.stream)) p.wrong_type(key, "true or false");
    } else if (key == "stream_options") {
      have_stream_options = true;
      read_stream_options(p, v, r.include_usage);
    } else if (key == "user") {
      read_string(p, key, v, r.user);
    } else if (is_unsupported_key(key)) {
      read_unsupported(p, endpoint, key, v);
    }
  }
  if (!p.first && !have_model) p.invalid("model", "'model' is required (a model id of GET /v1/models)");
  if (!p.first && !have_input) {
    p.invalid(input, fmt::format("'{}' is required", input));
  }
  if (!p.first && have_stream_options && !g.stream) {
    p.invalid("stream_options", "'stream_options' is only allowed when 'stream' is true");
  }
  if (p.first) return fail(std::move(*p.first));
  return r;
}

}  // namespace drover::proto::openai
