#include "proto/worker_codec.hpp"

#include <fmt/format.h>

#include <charconv>
#include <limits>

#include "proto/json_text.hpp"

namespace drover::proto::worker {
namespace {

template <typename T>
Decoded<T> fail(std::string why) {
  return Decoded<T>(boost::system::in_place_error, std::move(why));
}

void open_request(std::string& out, std::uint64_t id, std::string_view method) {
  out += R"({"jsonrpc":"2.0","id":)";
  append_uint(out, id);
  out += R"(,"method":)";
  append_string(out, method);
  out += R"(,"params":)";
}

void open_reply(std::string& out, std::uint64_t id) {
  out += R"({"jsonrpc":"2.0","id":)";
  append_uint(out, id);
  out += R"(,"result":)";
}

void open_notification(std::string& out, std::string_view method) {
  out += R"({"jsonrpc":"2.0","method":)";
  append_string(out, method);
  out += R"(,"params":)";
}

void model_member(std::string& out, std::string_view model) {
  if (model.empty()) return;
  out += R"(,"model":)";
  append_string(out, model);
}

// The typed readers' scanner: each read_* copies its (small) input here and walks it once.
JsonScanner& leaf_scanner() {
  static thread_local JsonScanner scanner;
  return scanner;
}

// Walks the object in `text`, calling on_field(key, value) for each member; on_field returns
// an empty string when it took the value (or skipped it), else the problem. A value it leaves
// untouched is validated by skip_value.
template <typename OnField>
std::string walk_object(std::string_view text, std::string_view what, OnField&& on_field) {
  if (text.empty()) return fmt::format("{} is missing", what);
  od::document doc;
  if (leaf_scanner().iterate(text).get(doc)) return fmt::format("{} is not JSON", what);
  od::object obj;
  if (doc.get_object().get(obj)) return fmt::format("{} is not an object", what);
  std::string problem;
  for (auto field : obj) {
    std::string_view key;
    od::value value;
    if (next_field(field, key, value)) {
      return fmt::format("{} is not JSON", what);
    }
    std::string p = on_field(key, value);
    if (!p.empty() && problem.empty()) problem = std::move(p);
  }
  if (!at_end(doc)) return fmt::format("{} is not JSON", what);
  return problem;
}

std::string read_string(od::value& v, std::string& out, std::string_view name) {
  std::string_view s;
  if (v.get_string().get(s)) return fmt::format("{} must be a string", name);
  out.assign(s);
  return {};
}

std::string read_int(od::value& v, std::int64_t& out, std::string_view name) {
  if (v.get_int64().get(out)) return fmt::format("{} must be an integer", name);
  return {};
}

std::string read_number(od::value& v, double& out, std::string_view name) {
  if (v.get_double().get(out)) return fmt::format("{} must be a number", name);
  return {};
}

std::string read_strings(od::value& v, std::vector<std::string>& out, std::string_view name) {
  od::array arr;
  if (v.get_array().get(arr)) return fmt::format("{} must be a list of strings", name);
  out.clear();
  for (auto item : arr) {
    std::string_view s;
    if (item.get_string().get(s)) return fmt::format("{} must be a list of strings", name);
    out.emplace_back(s);
  }
  return {};
}

std::string read_ints(od::value& v, std::vector<std::int64_t>& out, std::string_view name) {
  od::array arr;
  if (v.get_array().get(arr)) return fmt::format("{} must be a list of integers", name);
  out.clear();
  for (auto item : arr) {
    std::int64_t t;
    if (item.get_int64().get(t)) return fmt::format("{} must be a list of integers", name);
    out.push_back(t);
  }
  return {};
}

std::string skip(od::value& v, std::string_view what) {
  return skip_value(v, 2) ? fmt::format("{} is not JSON", what) : std::string();
}

}  // namespace

// --- supervisor -> worker --------------------------------------------------------------------

void encode_generate(std::string& out, std::uint64_t id, const GenerateRequest& r) {
  open_request(out, id, method::kGenerate);
  out += R"({"prompt":)";
  append_string(out, r.prompt);
  out += R"(,"max_tokens":)";
  append_int(out, r.max_tokens);
  out += R"(,"temperature":)";
  append_double(out, r.temperature);
  out += R"(,"top_p":)";
  append_double(out, r.top_p);
  out += R"(,"seed":)";
  append_uint(out, r.seed);
  out += r.stream ? R"(,"stream":true)" : R"(,"stream":false)";
  model_member(out, r.model);
  if (!r.stop.empty()) {
    out += R"(,"stop":[)";
    for (std::size_t i = 0; i < r.stop.size(); ++i) {
      if (i) out += ',';
      append_string(out, r.stop[i]);
    }
    out += ']';
  }
  out += "}}";
}

void encode_batch_tokenize(std::string& out, std::uint64_t id, std::string_view model,
                           const std::vector<std::string_view>& texts) {
  open_request(out, id, method::kBatchTokenize);
  out += R"({"texts":[)";
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (i) out += ',';
    append_string(out, texts[i]);
  }
  out += ']';
  model_member(out, model);
  out += "}}";
}

void encode_detokenize(std::string& out, std::uint64_t id, const DetokenizeRequest& r) {
  open_request(out, id, method::kDetokenize);
  out += R"({"tokens":[)";
  for (std::size_t i = 0; i < r.tokens.size(); ++i) {
    if (i) out += ',';
    append_int(out, r.tokens[i]);
  }
  out += ']';
  model_member(out, r.model);
  out += "}}";
}

void encode_cancel(std::string& out, std::uint64_t id) {
  open_notification(out, method::kCancel);
  out += R"({"id":)";
  append_uint(out, id);
  out += "}}";
}

void encode_shutdown(std::string& out) {
  open_notification(out, method::kShutdown);
  out += "{}}";
}

void encode_inject(std::string& out, std::string_view fault) {
  open_notification(out, method::kInject);
  out += R"({"fault":)";
  append_string(out, fault);
  out += "}}";
}

void encode_request(std::string& out, std::uint64_t id, std::string_view method, const json& params) {
  open_request(out, id, method);
  out += dump(params);
  out += '}';
}

Decoded<GenerateRequest> read_generate(std::string_view params) {
  GenerateRequest r;
  bool prompt = false;
  auto problem = walk_object(params, "generate params", [&](std::string_view key, od::value& v) {
    if (key == "prompt") {
      prompt = true;
      return read_string(v, r.prompt, "prompt");
    }
    if (key == "model") return read_string(v, r.model, "model");
    if (key == "max_tokens") {
      std::int64_t n;
      auto p = read_int(v, n, "max_tokens");
      if (p.empty() && (n < 1 || n > std::numeric_limits<int>::max())) p = "max_tokens out of range";
      r.max_tokens = static_cast<int>(n);
      return p;
    }
    if (key == "temperature") return read_number(v, r.temperature, "temperature");
    if (key == "top_p") return read_number(v, r.top_p, "top_p");
    if (key == "seed") {
      return v.get_uint64().get(r.seed) ? std::string("seed must be an unsigned integer")
                                        : std::string();
    }
    if (key == "stream") {
      return v.get_bool().get(r.stream) ? std::string("stream must be true or false") : std::string();
    }
    if (key == "stop") return read_strings(v, r.stop, "stop");
    return skip(v, "generate params");
  });
  if (problem.empty() && !prompt) problem = "generate needs a string prompt";
  if (!problem.empty()) return fail<GenerateRequest>(std::move(problem));
  return r;
}

Decoded<BatchTokenizeRequest> read_batch_tokenize(std::string_view params) {
  BatchTokenizeRequest r;
  bool texts = false;
  auto problem = walk_object(params, "batch_tokenize params", [&](std::string_view key, od::value& v) {
    if (key == "texts") {
      texts = true;
      return read_strings(v, r.texts, "texts");
    }
    if (key == "model") return read_string(v, r.model, "model");
    return skip(v, "batch_tokenize params");
  });
  if (problem.empty() && !texts) problem = "batch_tokenize needs texts: [string]";
  if (!problem.empty()) return fail<BatchTokenizeRequest>(std::move(problem));
  return r;
}

Decoded<DetokenizeRequest> read_detokenize(std::string_view params) {
  DetokenizeRequest r;
  bool tokens = false;
  auto problem = walk_object(params, "detokenize params", [&](std::string_view key, od::value& v) {
    if (key == "tokens") {
      tokens = true;
      return read_ints(v, r.tokens, "tokens");
    }
    if (key == "model") return read_string(v, r.model, "model");
    return skip(v, "detokenize params");
  });
  if (problem.empty() && !tokens) problem = "detokenize needs tokens: [int]";
  if (!problem.empty()) return fail<DetokenizeRequest>(std::move(problem));
  return r;
}

Decoded<std::uint64_t> read_cancel(std::string_view params) {
  std::optional<std::uint64_t> id;
  auto problem = walk_object(params, "cancel params", [&](std::string_view key, od::value& v) {
    if (key != "id") return skip(v, "cancel params");
    std::uint64_t n;
    if (v.get_uint64().get(n)) return std::string("cancel id must be an unsigned integer");
    id = n;
    return std::string();
  });
  if (problem.empty() && !id) problem = "cancel needs an id";
  if (!problem.empty()) return fail<std::uint64_t>(std::move(problem));
  return *id;
}

Decoded<std::string> read_inject(std::string_view params) {
  std::string fault;
  auto problem = walk_object(params, "inject params", [&](std::string_view key, od::value& v) {
    if (key != "fault") return skip(v, "inject params");
    return read_string(v, fault, "fault");
  });
  if (!problem.empty()) return fail<std::string>(std::move(problem));
  return Decoded<std::string>(boost::system::in_place_value, std::move(fault));
}

// --- worker -> supervisor --------------------------------------------------------------------

void append_generate_fields(std::string& out, const GenerateResult& r) {
  out += R"("text":)";
  append_string(out, r.text);
  out += R"(,"finish_reason":)";
  append_string(out, r.finish_reason);
  out += R"(,"usage":{"prompt_tokens":)";
  append_int(out, r.usage.prompt_tokens);
  out += R"(,"completion_tokens":)";
  append_int(out, r.usage.completion_tokens);
  out += '}';
}

void encode_generate_result(std::string& out, std::uint64_t id, const GenerateResult& r) {
  open_reply(out, id);
  out += '{';
  append_generate_fields(out, r);
  out += "}}";
}

void encode_tokens_result(std::string& out, std::uint64_t id,
                          const std::vector<std::vector<std::int64_t>>& tokens) {
  open_reply(out, id);
  out += R"({"tokens":[)";
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i) out += ',';
    out += '[';
    for (std::size_t k = 0; k < tokens[i].size(); ++k) {
      if (k) out += ',';
      append_int(out, tokens[i][k]);
    }
    out += ']';
  }
  out += "]}}";
}

void encode_text_result(std::string& out, std::uint64_t id, std::string_view text) {
  open_reply(out, id);
  out += R"({"text":)";
  append_string(out, text);
  out += "}}";
}

void encode_result(std::string& out, std::uint64_t id, const json& result) {
  open_reply(out, id);
  out += dump(result);
  out += '}';
}

void encode_error(std::string& out, std::uint64_t id, RpcError code, std::string_view message,
                  std::string_view data) {
  std::string id_text;
  append_uint(id_text, id);
  out += make_error(id_text, code, message, data);
}

void encode_chunk(std::string& out, std::uint64_t id, std::uint64_t index, std::string_view text) {
  open_notification(out, method::kChunk);
  out += R"({"id":)";
  append_uint(out, id);
  out += R"(,"index":)";
  append_uint(out, index);
  out += R"(,"text":)";
  append_string(out, text);
  out += "}}";
}

void encode_heartbeat(std::string& out, const Heartbeat& h) {
  open_notification(out, method::kHeartbeat);
  out += R"({"inflight":)";
  append_int(out, h.inflight);
  out += R"(,"queue_depth":)";
  append_int(out, h.queue_depth);
  out += R"(,"rss_bytes":)";
  append_int(out, h.rss_bytes);
  out += R"(,"tokens_per_s":)";
  append_double(out, h.tokens_per_s);
  if (h.models) {
    out += R"(,"models":[)";
    for (std::size_t i = 0; i < h.models->size(); ++i) {
      if (i) out += ',';
      append_string(out, (*h.models)[i]);
    }
    out += ']';
  }
  if (h.progress >= 0) {
    out += R"(,"progress":)";
    append_int(out, h.progress);
  }
  if (h.steps > 0) {
    out += R"(,"steps":)";
    append_int(out, h.steps);
    out += R"(,"step_us":)";
    append_double(out, h.step_us);
  }
  out += "}}";
}

void encode_notification(std::string& out, std::string_view method, const json& params) {
  open_notification(out, method);
  out += dump(params);
  out += '}';
}

Decoded<GenerateResult> read_generate_result(std::string_view result) {
  GenerateResult r;
  bool text = false, reason = false;
  auto problem = walk_object(result, "generate result", [&](std::string_view key, od::value& v) {
    if (key == "text") {
      text = true;
      return read_string(v, r.text, "text");
    }
    if (key == "finish_reason") {
      reason = true;
      return read_string(v, r.finish_reason, "finish_reason");
    }
    if (key != "usage") return skip(v, "generate result");
    od::object usage;
    if (v.get_object().get(usage)) return std::string("usage must be an object");
    for (auto field : usage) {
      std::string_view k;
      od::value u;
      if (next_field(field, k, u)) {
        return std::string("generate result is not JSON");
      }
      std::string p = k == "prompt_tokens"       ? read_int(u, r.usage.prompt_tokens, "usage.prompt_tokens")
                      : k == "completion_tokens" ? read_int(u, r.usage.completion_tokens,
                                                            "usage.completion_tokens")
                                                 : skip(u, "generate result");
      if (!p.empty()) return p;
    }
    return std::string();
  });
  if (problem.empty() && (!text || !reason)) {
    problem = "generate result needs a string text and finish_reason";
  }
  if (!problem.empty()) return fail<GenerateResult>(std::move(problem));
  return r;
}

Decoded<std::vector<std::vector<std::int64_t>>> read_tokens_result(std::string_view result) {
  std::vector<std::vector<std::int64_t>> lists;
  bool tokens = false;
  auto problem = walk_object(result, "batch_tokenize result", [&](std::string_view key, od::value& v) {
    if (key != "tokens") return skip(v, "batch_tokenize result");
    tokens = true;
    od::array arr;
    if (v.get_array().get(arr)) return std::string("tokens must be a list of integer lists");
    lists.clear();
    for (auto item : arr) {
      od::value list;
      if (std::move(item).get(list)) return std::string("batch_tokenize result is not JSON");
      lists.emplace_back();
      if (!read_ints(list, lists.back(), "tokens").empty()) {
        return std::string("tokens must be a list of integer lists");
      }
    }
    return std::string();
  });
  if (problem.empty() && !tokens) problem = "batch_tokenize result needs tokens";
  if (!problem.empty()) return fail<std::vector<std::vector<std::int64_t>>>(std::move(problem));
  return lists;
}

Decoded<std::string> read_text_result(std::string_view result) {
  std::string text;
  bool found = false;
  auto problem = walk_object(result, "detokenize result", [&](std::string_view key, od::value& v) {
    if (key != "text") return skip(v, "detokenize result");
    found = true;
    return read_string(v, text, "text");
  });
  if (problem.empty() && !found) problem = "detokenize result needs a string text";
  if (!problem.empty()) return fail<std::string>(std::move(problem));
  return Decoded<std::string>(boost::system::in_place_value, std::move(text));
}

Decoded<Chunk> read_chunk(std::string_view params) {
  Chunk c;
  bool id = false, index = false, text = false;
  auto problem = walk_object(params, "generate.chunk params", [&](std::string_view key, od::value& v) {
    if (key == "id") {
      id = !v.get_uint64().get(c.id);
      return std::string();
    }
    if (key == "index") {
      index = !v.get_uint64().get(c.index);
      return std::string();
    }
    if (key == "text") {
      std::string_view s;
      text = !v.get_string().get(s);
      c.text.assign(s);
      return std::string();
    }
    return skip(v, "generate.chunk params");
  });
  if (problem.empty() && !(id && index && text)) {
    problem = "generate.chunk needs unsigned id and index and string text";
  }
  if (!problem.empty()) return fail<Chunk>(std::move(problem));
  return c;
}

Decoded<Heartbeat> read_heartbeat(std::string_view params) {
  Heartbeat h;
  auto problem = walk_object(params, "heartbeat params", [&](std::string_view key, od::value& v) {
    if (key == "inflight") return read_int(v, h.inflight, "inflight");
    if (key == "queue_depth") return read_int(v, h.queue_depth, "queue_depth");
    if (key == "rss_bytes") return read_int(v, h.rss_bytes, "rss_bytes");
    if (key == "tokens_per_s") return read_number(v, h.tokens_per_s, "tokens_per_s");
    if (key == "progress") return read_int(v, h.progress, "progress");
    if (key == "steps") return read_int(v, h.steps, "steps");
    if (key == "step_us") return read_number(v, h.step_us, "step_us");
    if (key == "models") {
      h.models.emplace();
      return read_strings(v, *h.models, "models");
    }
    return skip(v, "heartbeat params");
  });
  if (!problem.empty()) return fail<Heartbeat>(std::move(problem));
  return h;
}

Decoded<json> read_tree(std::string_view text) {
  if (text.empty()) return Decoded<json>(boost::system::in_place_value, json());
  json value = parse_json(text);
  if (value.is_discarded()) return fail<json>("not JSON");
  return Decoded<json>(boost::system::in_place_value, std::move(value));
}

// --- envelope ----------------------------------------------------------------------------------

struct Decoder::Impl {
  JsonScanner scanner;
};

Decoder::Decoder() : impl_(std::make_unique<Impl>()) {}
Decoder::~Decoder() = default;

namespace {

bool int_code(std::string_view token, int& out) {
  std::int64_t v = 0;
  const auto r = std::from_chars(token.data(), token.data() + token.size(), v);
  if (r.ec != std::errc() || r.ptr != token.data() + token.size()) return false;
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) return false;
  out = static_cast<int>(v);
  return true;
}

// `depth`: the nesting level of `v` (1: the message itself, 2: a batch member).
template <typename V>
Decoded<Message> classify(V& v, od::document& doc, std::string_view buffer, std::size_t depth) {
  auto bad = [](simdjson::error_code e) {
    return fail<Message>(e == simdjson::DEPTH_ERROR ? "arrays and objects nested deeper than " +
                                                          std::to_string(kMaxJsonDepth) + " levels"
                                                    : std::string("not JSON"));
  };
  auto raw_of = [&doc, buffer](std::string_view token) { return walked_span(doc, token, buffer); };
  od::object obj;
  if (auto e = v.get_object().get(obj)) {
    // Only a batch member gets here with another type: validate it to tell which error.
    if (e != simdjson::INCORRECT_TYPE) return fail<Message>("not JSON");
    if constexpr (std::is_same_v<V, od::value>) {
      if (auto e2 = skip_value(v, depth)) return bad(e2);
    }
    return fail<Message>("not a JSON object");
  }
  bool version_ok = false, has_method = false, method_ok = false, has_id = false, id_ok = false;
  bool has_result = false, has_error = false, error_ok = false;
  std::string error_problem;
  Message m;
  Message::Error err;
  for (auto field : obj) {
    std::string_view key;
    od::value value;
    if (next_field(field, key, value)) {
      return fail<Message>("not JSON");
    }
    std::string_view token;
    if (!(token = token_of(value)).data()) return fail<Message>("not JSON");
    od::json_type type;
    if (value.type().get(type)) return fail<Message>("not JSON");
    if (key == "jsonrpc" && type == od::json_type::string) {
      std::string_view s;
      if (value.get_string().get(s)) return fail<Message>("not JSON");
      version_ok = s == "2.0";
      continue;
    } else if (key == "method" && type == od::json_type::string) {
      has_method = true;
      std::string_view s;
      if (value.get_string().get(s)) return fail<Message>("not JSON");
      method_ok = true;
      m.method.assign(s);
      continue;
    } else if (key == "jsonrpc") {
      version_ok = false;
    } else if (key == "method") {
      has_method = true;
      method_ok = false;
    } else if (key == "id") {
      has_id = true;
      id_ok = type == od::json_type::number && read_uint(value, m.id);
    } else if (key == "params") {
      if (auto e = skip_value(value, depth + 1)) return bad(e);
      m.params = raw_of(token);
      continue;
    } else if (key == "result") {
      has_result = true;
      if (auto e = skip_value(value, depth + 1)) return bad(e);
      m.result = raw_of(token);
      continue;
    } else if (key == "error") {
      has_error = true;
      err = Message::Error{};  // a repeated "error": nothing of an earlier one remains
      error_ok = false;
      od::object eo;
      if (value.get_object().get(eo)) {
        if (auto e = skip_value(value, depth + 1)) return bad(e);
        continue;
      }
      bool code = false, message_ok = true;
      for (auto ef : eo) {
        std::string_view ek;
        od::value ev;
        std::string_view et;
        if (next_field(ef, ek, ev) ||
            !(et = token_of(ev)).data()) {
          return fail<Message>("not JSON");
        }
        od::json_type etype;
        if (ev.type().get(etype)) return fail<Message>("not JSON");
        if (ek == "code") {
          code = etype == od::json_type::number && int_code(trim_token(et), err.code);
        } else if (ek == "message") {
          std::string_view s;
          message_ok = etype == od::json_type::string && !ev.get_string().get(s);
          if (message_ok) err.message.assign(s);
          continue;
        } else if (ek == "data") {
          if (auto e = skip_value(ev, depth + 2)) return bad(e);
          err.data = raw_of(et);
          continue;
        }
        if (auto e = skip_value(ev, depth + 2)) return bad(e);
      }
      error_ok = code && message_ok;
      if (!code) error_problem = "error is not an object with an integer code";
      if (!message_ok) error_problem = "error message is not a string";
      continue;
    }
    if (auto e = skip_value(value, depth + 1)) return bad(e);
  }
  if (!version_ok) return fail<Message>(R"(jsonrpc is not "2.0")");
  if (has_method) {
    if (!method_ok) return fail<Message>("method is not a string");
    if (has_id) {
      if (!id_ok) return fail<Message>("request id is not an unsigned integer");
      m.kind = Message::Kind::request;
    } else {
      m.kind = Message::Kind::notification;
    }
    return m;
  }
  if (!has_id || !id_ok) return fail<Message>("reply id is not an unsigned integer");
  m.kind = Message::Kind::reply;
  if (has_result == has_error) return fail<Message>("reply must have exactly one of result and error");
  if (has_error) {
    if (!error_ok) {
      return fail<Message>(error_problem.empty() ? "error is not an object with an integer code"
                                                 : error_problem);
    }
    m.error = std::move(err);
  }
  return m;
}

}  // namespace

Decoded<std::vector<Message>> Decoder::decode(std::string_view text) {
  using R = Decoded<std::vector<Message>>;
  od::document doc;
  if (impl_->scanner.iterate(text).get(doc)) return fail<std::vector<Message>>("not JSON");
  od::json_type type;
  if (doc.type().get(type)) return fail<std::vector<Message>>("not JSON");
  std::vector<Message> out;
  if (type == od::json_type::array) {
    od::array arr;
    if (doc.get_array().get(arr)) return fail<std::vector<Message>>("not JSON");
    std::size_t i = 0;
    for (auto item : arr) {
      od::value member;
      if (std::move(item).get(member)) return fail<std::vector<Message>>("not JSON");
      auto m = classify(member, doc, impl_->scanner.buffer(), 2);
      if (!m) return fail<std::vector<Message>>(fmt::format("batch member {}: {}", i, m.error()));
      out.push_back(std::move(*m));
      ++i;
    }
    if (out.empty()) return fail<std::vector<Message>>("empty batch");
  } else if (type == od::json_type::object) {
    auto m = classify(doc, doc, impl_->scanner.buffer(), 1);
    if (!m) return R(boost::system::in_place_error, m.error());
    out.push_back(std::move(*m));
  } else {
    if (!valid_root_scalar(doc, text)) return fail<std::vector<Message>>("not JSON");
    return fail<std::vector<Message>>("not a JSON object");
  }
  if (!at_end(doc)) return fail<std::vector<Message>>("not JSON");
  return out;
}

}  // namespace drover::proto::worker
