#include "proto/jsonrpc.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace drover::proto {
namespace {

bool valid_id(const json& id) { return id.is_string() || id.is_number() || id.is_null(); }

RpcErrorReply invalid(json id, std::string detail) {
  return RpcErrorReply{std::move(id), RpcError::invalid_request,
                       std::string(default_message(RpcError::invalid_request)),
                       json{{"detail", std::move(detail)}}};
}

// True when the text opens more than `limit` arrays/objects at once; brackets inside strings do
// not count. A scan of the bytes, so that deep text is refused before anything recurses over it.
// For text that is not JSON the answer does not matter: the parser rejects it anyway.
bool nests_deeper_than(std::string_view text, std::size_t limit) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

// simdjson's DOM as an nlohmann value. REQUIRES: the document nests at most kMaxJsonDepth
// levels (checked before parsing), so the recursion is bounded. Duplicate keys: the last one
// wins, as in nlohmann's own parser.
json to_nlohmann(simdjson::dom::element e) {
  using T = simdjson::dom::element_type;
  switch (e.type()) {
    case T::OBJECT: {
      json out = json::object();
      for (auto field : simdjson::dom::object(e)) {
        out[std::string(field.key)] = to_nlohmann(field.value);
      }
      return out;
    }
    case T::ARRAY: {
      json out = json::array();
      auto& items = out.get_ref<json::array_t&>();
      for (auto item : simdjson::dom::array(e)) items.push_back(to_nlohmann(item));
      return out;
    }
    case T::STRING:
      return std::string(std::string_view(e));
    case T::INT64: {
      // nlohmann reads an integer without a minus sign as unsigned; so do we ("-0" aside,
      // which becomes an unsigned 0).
      const std::int64_t v(e);
      return v >= 0 ? json(static_cast<std::uint64_t>(v)) : json(v);
    }
    case T::UINT64:
      return std::uint64_t(e);
    case T::DOUBLE:
      return double(e);
    case T::BOOL:
      return bool(e);
    case T::NULL_VALUE:
      return nullptr;
  }
  return nullptr;
}

}  // namespace

json parse_json(std::string_view text, bool* too_deep) {
  const bool deep = nests_deeper_than(text, kMaxJsonDepth);
  if (too_deep) *too_deep = deep;
  if (deep) return json(json::value_t::discarded);
  // simdjson finds the structure several times faster than nlohmann's character-at-a-time
  // lexer (the largest item of droverd's profile); the values are then built as nlohmann
  // values, which the rest of the code works with. Text simdjson refuses (not JSON, or a form
  // it does not represent, such as an integer beyond 64 bits) goes to nlohmann's parser, so
  // what is accepted, and as which types, is what nlohmann alone would do. Per thread, a parser
  // and a padded copy buffer are kept between messages (no allocation per parse); messages
  // over kSimdjsonMaxBytes go straight to nlohmann, so a rare huge one does not leave the
  // parser holding buffers its size for good.
  constexpr std::size_t kSimdjsonMaxBytes = 1 << 20;
  if (text.size() <= kSimdjsonMaxBytes) {
    static thread_local simdjson::dom::parser parser;
    static thread_local std::vector<char> padded;
    if (padded.size() < text.size() + simdjson::SIMDJSON_PADDING) {
      padded.resize(std::max<std::size_t>(4096, 2 * text.size()) + simdjson::SIMDJSON_PADDING);
    }
    std::memcpy(padded.data(), text.data(), text.size());
    simdjson::dom::element root;
    if (parser.parse(padded.data(), text.size(), /*realloc_if_needed=*/false).get(root) ==
        simdjson::SUCCESS) {
      return to_nlohmann(root);
    }
  }
  return json::parse(text, nullptr, /*allow_exceptions=*/false);
}

RpcEntry validate_request(json value) {
  if (!value.is_object()) return invalid(nullptr, "a request must be a JSON object");
  json id = nullptr;
  const auto id_it = value.find("id");
  const bool has_id = id_it != value.end();
  if (has_id) {
    if (!valid_id(*id_it)) return invalid(nullptr, "id must be a string, a number or null");
    id = *id_it;
  }
  const auto version = value.find("jsonrpc");
  if (version == value.end() || !version->is_string() || *version != "2.0") {
    return invalid(id, "jsonrpc must be exactly \"2.0\"");
  }
  const auto method = value.find("method");
  if (method == value.end() || !method->is_string()) {
    return invalid(id, "method must be a string");
  }
  RpcRequest req;
  req.method = method->get<std::string>();
  const auto params = value.find("params");
  if (params != value.end()) {
    if (!params->is_object() && !params->is_array()) {
      return invalid(id, "params must be an object or an array");
    }
    req.params = std::move(*params);
  }
  if (has_id) req.id = std::move(id);
  return req;
}

ParsedMessage parse_message(std::string_view text) {
  ParsedMessage out;
  bool too_deep = false;
  json value = parse_json(text, &too_deep);
  if (value.is_discarded()) {
    json data = nullptr;
    if (too_deep) {
      data = json{{"detail", "arrays and objects nested deeper than " +
                                 std::to_string(kMaxJsonDepth) + " levels"}};
    }
    out.entries.push_back(RpcErrorReply{nullptr, RpcError::parse_error,
                                        std::string(default_message(RpcError::parse_error)),
                                        std::move(data)});
    return out;
  }
  if (value.is_array()) {
    if (value.empty()) {
      out.entries.push_back(invalid(nullptr, "an empty batch is not a request"));
      return out;
    }
    out.batch = true;
    out.entries.reserve(value.size());
    for (auto& member : value) out.entries.push_back(validate_request(std::move(member)));
    return out;
  }
  out.entries.push_back(validate_request(std::move(value)));
  return out;
}

// Replies are assembled as text so members keep the conventional order (jsonrpc, id, then
// result/error) and only the payload goes through the serialiser.
namespace {

void dump_to(std::string& out, const json& v) {
  out += v.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string make_result(const json& id, const json& result) {
  std::string out = R"({"jsonrpc":"2.0","id":)";
  dump_to(out, id);
  out += R"(,"result":)";
  dump_to(out, result);
  out += '}';
  return out;
}

std::string make_error(const json& id, RpcError code, std::string_view message, const json& data) {
  std::string out = R"({"jsonrpc":"2.0","id":)";
  dump_to(out, id);
  out += R"(,"error":{"code":)";
  out += std::to_string(code_of(code));
  out += R"(,"message":)";
  dump_to(out, json(message.empty() ? default_message(code) : message));
  if (!data.is_null()) {
    out += R"(,"data":)";
    dump_to(out, data);
  }
  out += "}}";
  return out;
}

std::string make_error(const RpcErrorReply& e) { return make_error(e.id, e.code, e.message, e.data); }

std::string make_notification(std::string_view method, const json& params) {
  std::string out = R"({"jsonrpc":"2.0","method":)";
  dump_to(out, json(method));
  out += R"(,"params":)";
  dump_to(out, params);
  out += '}';
  return out;
}

std::string make_request(const json& id, std::string_view method, const json& params) {
  std::string out = R"({"jsonrpc":"2.0","id":)";
  dump_to(out, id);
  out += R"(,"method":)";
  dump_to(out, json(method));
  if (!params.is_null()) {
    out += R"(,"params":)";
    dump_to(out, params);
  }
  out += '}';
  return out;
}

std::string join_batch(const std::vector<std::string>& replies) {
  std::string out = "[";
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (i) out.push_back(',');
    out += replies[i];
  }
  out.push_back(']');
  return out;
}

bool params_empty(const json& params) {
  return params.is_null() || ((params.is_object() || params.is_array()) && params.empty());
}

}  // namespace drover::proto
