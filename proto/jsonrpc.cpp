#include "proto/jsonrpc.hpp"

#include "proto/json_text.hpp"

#include <cstring>

namespace drover::proto {
namespace {

RpcErrorReply invalid(std::string_view id, std::string_view detail) {
  std::string data = R"({"detail":)";
  append_string(data, detail);
  data += '}';
  return RpcErrorReply{RpcId(id), RpcError::invalid_request,
                       std::string(default_message(RpcError::invalid_request)), std::move(data)};
}

// What one batch member (or the single message) says, gathered during the walk; the checks are
// applied afterwards in the spec's order (id, jsonrpc, method, params), whatever the key order.
struct Envelope {
  bool object = false;
  bool has_id = false, id_ok = false;
  std::string_view id;
  bool has_version = false, version_ok = false;
  bool has_method = false, method_ok = false;
  std::string method;
  bool has_params = false, params_ok = false;
  std::string_view params;

  RpcEntry entry() && {
    if (!object) return invalid(kNullId, "a request must be a JSON object");
    if (has_id && !id_ok) return invalid(kNullId, "id must be a string, a number or null");
    const std::string_view reply_id = has_id ? id : kNullId;
    if (!has_version || !version_ok) return invalid(reply_id, R"(jsonrpc must be exactly "2.0")");
    if (!has_method || !method_ok) return invalid(reply_id, "method must be a string");
    if (has_params && !params_ok) return invalid(reply_id, "params must be an object or an array");
    RpcRequest req;
    req.method = std::move(method);
    if (has_params) req.params = params;
    if (has_id) req.id = RpcId(id);
    return req;
  }
};

// Walks one value that should be a request object, validating all of it. An error is a parse
// error of the whole message.
// `depth`: the nesting level of `v` (1: the message itself, 2: a batch member).
template <typename V>
simdjson::error_code read_envelope(V& v, Envelope& env, od::document& doc, std::string_view buffer,
                                   std::size_t depth) {
  od::json_type type;
  if (auto e = v.type().get(type)) return e;
  if (type != od::json_type::object) {
    if constexpr (std::is_same_v<V, od::value>) return skip_value(v, depth);
    return simdjson::INCORRECT_TYPE;  // a root scalar is judged by the caller
  }
  env.object = true;
  od::object obj;
  if (auto e = v.get_object().get(obj)) return e;
  for (auto field : obj) {
    std::string_view key;
    od::value value;
    if (auto e = next_field(field, key, value)) return e;
    od::json_type vt;
    if (auto e = value.type().get(vt)) return e;
    // A repeated key: the last one counts, as in nlohmann's parser and most others.
    if (key == "id") {
      env.has_id = true;
      env.id_ok = vt == od::json_type::string || vt == od::json_type::number ||
                  vt == od::json_type::null;
      std::string_view token;
      token = token_of(value);
      if (auto e = skip_value(value, depth + 1)) return e;
      if (env.id_ok) env.id = trim_token(token);
    } else if (key == "jsonrpc") {
      env.has_version = true;
      env.version_ok = false;
      if (vt == od::json_type::string) {
        std::string_view s;
        if (auto e = value.get_string().get(s)) return e;
        env.version_ok = s == "2.0";
      } else if (auto e = skip_value(value, depth + 1)) {
        return e;
      }
    } else if (key == "method") {
      env.has_method = true;
      env.method_ok = false;
      if (vt == od::json_type::string) {
        std::string_view s;
        if (auto e = value.get_string().get(s)) return e;
        env.method_ok = true;
        env.method.assign(s);
      } else if (auto e = skip_value(value, depth + 1)) {
        return e;
      }
    } else if (key == "params") {
      env.has_params = true;
      env.params_ok = vt == od::json_type::object || vt == od::json_type::array;
      std::string_view token;
      token = token_of(value);
      if (auto e = skip_value(value, depth + 1)) return e;
      if (env.params_ok) env.params = walked_span(doc, token, buffer);
    } else if (auto e = skip_value(value, depth + 1)) {
      return e;
    }
  }
  return simdjson::SUCCESS;
}

RpcErrorReply parse_error(std::string_view detail = {}) {
  RpcErrorReply r{RpcId(kNullId), RpcError::parse_error,
                  std::string(default_message(RpcError::parse_error)), {}};
  if (!detail.empty()) {
    r.data = R"({"detail":)";
    append_string(r.data, detail);
    r.data += '}';
  }
  return r;
}

}  // namespace

ParsedMessage parse_message(std::string_view text, std::size_t max_batch_length) {
  ParsedMessage out;
  auto fail = [&out](RpcErrorReply e) {
    out.batch = false;
    out.entries.clear();
    out.entries.emplace_back(std::move(e));
    return std::move(out);
  };
  auto walk_failed = [&](simdjson::error_code e) {
    return fail(e == simdjson::DEPTH_ERROR
                    ? parse_error("arrays and objects nested deeper than " +
                                  std::to_string(kMaxJsonDepth) + " levels")
                    : parse_error());
  };
  // The message's own padded copy: params point into it after this returns.
  out.text.resize(text.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(out.text.data(), text.data(), text.size());
  const std::string_view text_view(out.text.data(), text.size());
  static thread_local od::parser parser;
  od::document doc;
  if (parser.iterate(out.text.data(), text.size(), out.text.size()).get(doc)) return fail(parse_error());
  od::json_type type;
  if (doc.type().get(type)) return fail(parse_error());
  if (type == od::json_type::array) {
    od::array arr;
    if (doc.get_array().get(arr)) return fail(parse_error());
    std::size_t count = 0;
    if (arr.count_elements().get(count)) return fail(parse_error());
    if (count == 0) {
      if (!at_end(doc)) return fail(parse_error());
      return fail(invalid(kNullId, "an empty batch is not a request"));
    }
    out.batch = true;
    if (count > max_batch_length) {
      // Refused by its length: no member is read, so a huge batch of tiny members costs a scan.
      out.refused_batch_length = count;
      return out;
    }
    out.entries.reserve(count);
    for (auto item : arr) {
      od::value member;
      if (std::move(item).get(member)) return fail(parse_error());
      Envelope env;
      if (auto e = read_envelope(member, env, doc, text_view, 2)) return walk_failed(e);
      out.entries.push_back(std::move(env).entry());
    }
  } else if (type == od::json_type::object) {
    Envelope env;
    if (auto e = read_envelope(doc, env, doc, text_view, 1)) return walk_failed(e);
    out.entries.push_back(std::move(env).entry());
  } else {
    if (!valid_root_scalar(doc, text)) return fail(parse_error());
    return fail(invalid(kNullId, "a request must be a JSON object"));
  }
  if (!at_end(doc)) return fail(parse_error());
  return out;
}

json RpcRequest::params_tree() const { return params.empty() ? json() : parse_json(params); }

void open_result(std::string& out, std::string_view id) {
  out += R"({"jsonrpc":"2.0","id":)";
  out += id;
  out += R"(,"result":)";
}

std::string make_result(std::string_view id, std::string_view result) {
  std::string out;
  out.reserve(32 + id.size() + result.size());
  open_result(out, id);
  out += result;
  out += '}';
  return out;
}

std::string make_error(std::string_view id, RpcError code, std::string_view message,
                       std::string_view data) {
  std::string out = R"({"jsonrpc":"2.0","id":)";
  out += id;
  out += R"(,"error":{"code":)";
  append_int(out, code_of(code));
  out += R"(,"message":)";
  append_string(out, message.empty() ? default_message(code) : message);
  if (!data.empty()) {
    out += R"(,"data":)";
    out += data;
  }
  out += "}}";
  return out;
}

std::string make_error(const RpcErrorReply& e) {
  return make_error(std::string_view(e.id), e.code, std::string_view(e.message),
                    std::string_view(e.data));
}

std::string make_notification(std::string_view method, std::string_view params) {
  std::string out = R"({"jsonrpc":"2.0","method":)";
  append_string(out, method);
  out += R"(,"params":)";
  out += params;
  out += '}';
  return out;
}

std::string make_result(std::string_view id, const json& result) {
  return make_result(id, std::string_view(dump(result)));
}

std::string make_error(std::string_view id, RpcError code, std::string_view message,
                       const json& data) {
  const std::string text = data.is_null() ? std::string() : dump(data);
  return make_error(id, code, message, std::string_view(text));
}

std::string join_batch(const std::vector<std::string>& replies) {
  std::size_t size = 2;
  for (const auto& r : replies) size += r.size() + 1;
  std::string out;
  out.reserve(size);
  out.push_back('[');
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (i) out.push_back(',');
    out += replies[i];
  }
  out.push_back(']');
  return out;
}

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json parse_json(std::string_view text) {
  if (nests_deeper_than(text, kMaxJsonDepth)) return json(json::value_t::discarded);
  return json::parse(text, nullptr, /*allow_exceptions=*/false);
}

bool params_empty(std::string_view params) {
  if (params.empty()) return true;
  // Params are a validated object or array: empty when only whitespace is between the brackets.
  for (std::size_t i = 1; i + 1 < params.size(); ++i) {
    const char c = params[i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return true;
}

}  // namespace drover::proto
