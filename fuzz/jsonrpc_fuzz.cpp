// Fuzz target: the JSON-RPC 2.0 envelope (proto/jsonrpc.hpp), single messages and batches, and
// the params parsers of the client methods (proto/client_params.hpp), checked differentially
// against nlohmann::json, the parser the control plane and most clients' libraries agree with.
//
// Input: the text of one framed client message, as FrameDecoder hands it to a session.
// Invariants:
//  - accept/reject agrees with nlohmann::json::parse: text nlohmann refuses is one -32700 with
//    id null (never a batch), and text it accepts is never -32700. Deliberate differences,
//    skipped: nesting deeper than kMaxJsonDepth (refused here, documented in jsonrpc.hpp), a
//    leading UTF-8 byte order mark (nlohmann skips it, simdjson refuses it; RFC 8259 section
//    8.1 allows either), and a batch refused by its length (parse_message's limit) before its
//    members are read;
//  - for text nlohmann accepts, each entry is what the spec's rules give when applied to
//    nlohmann's tree: the same batch-ness and count; a request with the same method, the same
//    notification-ness, an id whose JSON text reads (parse_json) as nlohmann's id and occurs
//    byte-exactly in the input, and params whose text reads as nlohmann's params; or a -32600
//    whose id reads as the id the spec says to echo (null when absent or itself invalid);
//  - with a batch limit, a batch of more members than the limit is refused by its length
//    (refused_batch_length = its length, no entries), a shorter one parses as without a limit;
//  - every request's params, run through every parser in client_params.hpp (whatever its
//    method, so each parser sees every shape the fuzzer finds), get the verdict of a reference
//    written over nlohmann's tree (accepted values equal to the reference's; rejections with a
//    non-empty error text);
//  - every reply (errors, -32602 with detail, results echoing the params, a batch reply joining
//    them, the worker request built from generate params) is JSON that reads back as meant.
// Exceptions are not caught around the code under test: it is on the data plane and must not
// throw.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "proto/client_params.hpp"
#include "proto/json_text.hpp"
#include "proto/jsonrpc.hpp"
#include "proto/worker_codec.hpp"

namespace {

namespace proto = drover::proto;
using drover::RpcError;
using proto::json;

// Whether nlohmann accepts the text, its tree in `value` if so.
bool nlohmann_accepts(std::string_view text, json& value) {
  // nlohmann's lexer takes a NUL byte for the end of the input (a C-string habit), so it
  // accepts `{...}\0garbage`; no JSON text holds a raw NUL (not in a string, not as
  // whitespace), so such text is refused, as it is by the codecs.
  if (text.find('\0') != std::string_view::npos) return false;
  value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return !value.is_discarded();
}

bool starts_with_bom(std::string_view text) { return text.substr(0, 3) == "\xEF\xBB\xBF"; }

json parse_reply(const std::string& text) {
  json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!v.is_discarded());
  return v;
}

// JSON text known to be valid (an id, params) as nlohmann reads it.
json tree(std::string_view text) {
  json v = proto::parse_json(text);
  FUZZ_CHECK(!v.is_discarded());
  return v;
}

bool in_input(std::string_view input, std::string_view piece) {
  return piece.data() != nullptr && input.find(piece) != std::string_view::npos;
}

// --- the envelope rules over nlohmann's tree (the reference) ----------------------------------

struct Expected {
  bool request = false;
  std::string method;
  std::optional<json> id;      // request: absent for a notification; error: the id echoed
  std::optional<json> params;  // request: absent when absent
};

Expected classify(const json& v) {
  Expected e;
  e.id = json();  // an error's id is null unless set below
  if (!v.is_object()) return e;
  json reply_id;
  if (v.contains("id")) {
    const json& id = v["id"];
    if (!(id.is_string() || id.is_number() || id.is_null())) return e;
    reply_id = id;
  }
  e.id = reply_id;
  if (!v.contains("jsonrpc") || v["jsonrpc"] != "2.0") return e;
  if (!v.contains("method") || !v["method"].is_string()) return e;
  if (v.contains("params") && !v["params"].is_object() && !v["params"].is_array()) return e;
  e.request = true;
  e.method = v["method"].get<std::string>();
  if (!v.contains("id")) e.id.reset();
  if (v.contains("params")) e.params = v["params"];
  return e;
}

void check_entry(std::string_view input, const proto::RpcEntry& entry, const Expected& want) {
  if (const auto* e = std::get_if<proto::RpcErrorReply>(&entry)) {
    FUZZ_CHECK(!want.request);
    FUZZ_CHECK(e->code == RpcError::invalid_request);
    FUZZ_CHECK(tree(e->id) == *want.id);
    FUZZ_CHECK(e->id == "null" || in_input(input, e->id));
    return;
  }
  const auto& r = std::get<proto::RpcRequest>(entry);
  FUZZ_CHECK(want.request);
  FUZZ_CHECK(r.method == want.method);
  FUZZ_CHECK(r.is_notification() == !want.id.has_value());
  if (r.id) {
    FUZZ_CHECK(tree(*r.id) == *want.id);
    FUZZ_CHECK(in_input(input, *r.id));  // echoed exactly as written
  }
  FUZZ_CHECK(r.params.empty() == !want.params.has_value());
  if (want.params) {
    FUZZ_CHECK(tree(r.params) == *want.params);
    FUZZ_CHECK(in_input(input, r.params));
  }
}

// --- the params rules over nlohmann's tree (the reference) ------------------------------------

// nlohmann's integer in [lo, hi], if it is one.
bool integer_in(const json& v, std::int64_t lo, std::int64_t hi) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    return u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) &&
           static_cast<std::int64_t>(u) >= lo && static_cast<std::int64_t>(u) <= hi;
  }
  if (!v.is_number_integer()) return false;
  const auto i = v.get<std::int64_t>();
  return i >= lo && i <= hi;
}

bool number_in(const json& v, double lo, double hi) {
  if (!v.is_number()) return false;
  const double d = v.get<double>();
  return d >= lo && d <= hi;
}

bool choice(const json& v, std::initializer_list<std::string_view> allowed) {
  if (!v.is_string()) return false;
  for (auto a : allowed) {
    if (v.get<std::string>() == a) return true;
  }
  return false;
}

// Runs `check(name, value)` over an object's members, null members counting as absent; false
// when params are not an object, a member is unknown, a check fails, or a required one is absent.
template <typename Check>
bool reference_params(const std::optional<json>& params,
                      std::initializer_list<std::string_view> names,
                      std::initializer_list<std::string_view> required, Check check) {
  if (!params) return required.size() == 0;
  if (!params->is_object()) return false;
  for (const auto& [key, value] : params->items()) {
    bool known = false;
    for (auto n : names) known = known || key == n;
    if (!known) return false;
    if (!value.is_null() && !check(key, value)) return false;
  }
  for (auto r : required) {
    if (!params->contains(std::string(r)) || (*params)[std::string(r)].is_null()) return false;
  }
  return true;
}

bool reference_generate(const std::optional<json>& params) {
  return reference_params(params,
                          {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop",
                           "stream", "priority", "cache", "timeout_ms"},
                          {"prompt"}, [](const std::string& k, const json& v) {
                            if (k == "model" || k == "prompt") return v.is_string();
                            if (k == "max_tokens") return integer_in(v, 1, proto::kMaxTokensLimit);
                            if (k == "temperature") return number_in(v, 0.0, 100.0);
                            if (k == "top_p") return number_in(v, 0.0, 1.0);
                            if (k == "seed") return v.is_number_unsigned();
                            if (k == "stop") {
                              if (!v.is_array() || v.size() > 16) return false;
                              for (const auto& s : v) {
                                if (!s.is_string() || s.get<std::string>().empty()) return false;
                              }
                              return true;
                            }
                            if (k == "stream") return v.is_boolean();
                            if (k == "priority") return choice(v, {"high", "normal", "low"});
                            if (k == "cache") return choice(v, {"default", "bypass"});
                            return integer_in(v, 1, 86'400'000);  // timeout_ms
                          });
}

bool reference_tokenize(const std::optional<json>& params) {
  return reference_params(params, {"model", "text", "priority"}, {"text"},
                          [](const std::string& k, const json& v) {
                            if (k == "priority") return choice(v, {"high", "normal", "low"});
                            return v.is_string();
                          });
}

bool reference_detokenize(const std::optional<json>& params) {
  return reference_params(params, {"model", "tokens"}, {"tokens"},
                          [](const std::string& k, const json& v) {
                            if (k == "model") return v.is_string();
                            if (!v.is_array()) return false;
                            for (const auto& t : v) {
                              if (!integer_in(t, std::numeric_limits<std::int64_t>::min(),
                                              std::numeric_limits<std::int64_t>::max())) {
                                return false;
                              }
                            }
                            return true;
                          });
}

// cancel: `id` is required, and null is a valid id (not "absent").
bool reference_cancel(const std::optional<json>& params) {
  if (!params || !params->is_object() || !params->contains("id")) return false;
  for (const auto& [key, value] : params->items()) {
    if (key != "id") return false;
  }
  const json& id = (*params)["id"];
  return id.is_string() || id.is_number() || id.is_null();
}

template <typename T>
void check_verdict(const proto::ParamsResult<T>& r, bool reference, std::string_view id,
                   std::vector<std::string>& replies) {
  FUZZ_CHECK(r.has_error() != r.has_value());
  FUZZ_CHECK(r.has_value() == reference);
  if (r.has_error()) {
    FUZZ_CHECK(!r.error().empty());
    std::string data = R"({"detail":)";
    proto::append_string(data, r.error());
    data += '}';
    const std::string reply =
        proto::make_error(id, RpcError::invalid_params, std::string_view(), std::string_view(data));
    const json v = parse_reply(reply);
    FUZZ_CHECK(v["error"]["code"] == -32602 && v["error"]["data"]["detail"] == r.error());
    replies.push_back(reply);
  }
}

void check_params(std::string_view input, const proto::RpcRequest& req,
                  const std::optional<json>& params, std::vector<std::string>& replies) {
  const std::string_view id_text = req.id ? std::string_view(*req.id) : proto::kNullId;
  const json id = tree(id_text);

  const auto g = proto::parse_generate_params(req.params);
  check_verdict(g, reference_generate(params), id_text, replies);
  if (g.has_value()) {
    const json& p = *params;
    const auto given = [&p](const char* key) { return p.contains(key) && !p.at(key).is_null(); };
    FUZZ_CHECK(g->prompt == p.at("prompt").get<std::string>());
    FUZZ_CHECK(g->model == (given("model") ? p.at("model").get<std::string>() : std::string()));
    FUZZ_CHECK(g->max_tokens ==
               (given("max_tokens") ? p.at("max_tokens").get<std::int64_t>() : 64));
    FUZZ_CHECK(g->temperature == (given("temperature") ? p.at("temperature").get<double>() : 0.8));
    FUZZ_CHECK(g->top_p == (given("top_p") ? p.at("top_p").get<double>() : 0.95));
    FUZZ_CHECK(g->seed.has_value() == given("seed"));
    if (g->seed) FUZZ_CHECK(*g->seed == p.at("seed").get<std::uint64_t>());
    FUZZ_CHECK(g->stop.size() == (given("stop") ? p.at("stop").size() : 0));
    FUZZ_CHECK(g->stream == (given("stream") && p.at("stream").get<bool>()));
    FUZZ_CHECK(g->timeout_ms.has_value() == given("timeout_ms"));
    if (g->timeout_ms) FUZZ_CHECK(*g->timeout_ms == p.at("timeout_ms").get<std::int64_t>());
    // The worker request built from them goes through the worker codec and back unchanged.
    const proto::worker::GenerateRequest w = g->to_worker_request(g->seed.value_or(42));
    std::string wire;
    proto::worker::encode_generate(wire, 1, w);
    static proto::worker::Decoder decoder;
    const auto decoded = decoder.decode(wire);
    FUZZ_CHECK(decoded.has_value() && decoded->size() == 1);
    const auto back = proto::worker::read_generate((*decoded)[0].params);
    FUZZ_CHECK(back.has_value());
    FUZZ_CHECK(back->prompt == w.prompt && back->model == w.model && back->stop == w.stop);
    FUZZ_CHECK(back->max_tokens == w.max_tokens && back->seed == w.seed &&
               back->stream == w.stream);
    FUZZ_CHECK(back->temperature == w.temperature && back->top_p == w.top_p);
  }

  const auto t = proto::parse_tokenize_params(req.params);
  check_verdict(t, reference_tokenize(params), id_text, replies);
  if (t.has_value()) FUZZ_CHECK(t->text == params->at("text").get<std::string>());

  const auto d = proto::parse_detokenize_params(req.params);
  check_verdict(d, reference_detokenize(params), id_text, replies);
  if (d.has_value()) FUZZ_CHECK(d->tokens.size() == params->at("tokens").size());

  const auto c = proto::parse_cancel_params(req.params);
  check_verdict(c, reference_cancel(params), id_text, replies);
  if (c.has_value()) {
    FUZZ_CHECK(tree(c->id) == params->at("id"));
    FUZZ_CHECK(in_input(input, c->id));  // the id as written, to match a request's id text
  }

  const auto none = proto::parse_no_params(req.params);
  const bool empty = !params || params->empty();
  check_verdict(none, empty, id_text, replies);
  FUZZ_CHECK(proto::params_empty(req.params) == empty);

  // A result reply carrying the params: what the client reads is the id and params it sent.
  if (!req.is_notification()) {
    const std::string text =
        proto::make_result(*req.id, req.params.empty() ? std::string_view("null") : req.params);
    const json v = parse_reply(text);
    FUZZ_CHECK(v["id"] == id && v["result"] == params.value_or(json()));
    replies.push_back(text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const proto::ParsedMessage msg = proto::parse_message(text);
  FUZZ_CHECK(msg.refused_batch_length == 0);  // no limit given
  FUZZ_CHECK(!msg.entries.empty());
  FUZZ_CHECK(msg.batch || msg.entries.size() == 1);
  const auto* first_error = std::get_if<proto::RpcErrorReply>(&msg.entries[0]);
  const bool parse_error = first_error && first_error->code == RpcError::parse_error;
  if (parse_error) {
    FUZZ_CHECK(!msg.batch && msg.entries.size() == 1 && first_error->id == "null");
  }

  // The differential check against nlohmann.
  const bool too_deep = proto::nests_deeper_than(text, proto::kMaxJsonDepth);
  json value;
  const bool accepted = nlohmann_accepts(text, value);
  const bool skip = too_deep || starts_with_bom(text);
  if (too_deep) FUZZ_CHECK(parse_error);
  if (!skip) FUZZ_CHECK(parse_error == !accepted);

  // Every reply serialises to JSON that reads back with its id and code.
  std::vector<std::string> replies;
  for (const proto::RpcEntry& entry : msg.entries) {
    if (const auto* e = std::get_if<proto::RpcErrorReply>(&entry)) {
      FUZZ_CHECK(e->code == RpcError::parse_error || e->code == RpcError::invalid_request);
      FUZZ_CHECK(e->code != RpcError::parse_error || !msg.batch);
      FUZZ_CHECK(!e->message.empty());
      const std::string reply = proto::make_error(*e);
      const json v = parse_reply(reply);
      FUZZ_CHECK(v.value("jsonrpc", "") == "2.0" && v["id"] == tree(e->id));
      FUZZ_CHECK(v["error"]["code"] == drover::code_of(e->code));
      FUZZ_CHECK(e->data.empty() || v["error"]["data"].is_object());
      replies.push_back(reply);
    }
  }

  // The batch limit: a batch longer than the limit is refused by its length (even one whose
  // members are not JSON: they are not read); anything else parses as without a limit. (A
  // skipped text may be a long batch nlohmann reads and parse_message refuses: a leading BOM.)
  constexpr std::size_t kLimit = 2;
  const proto::ParsedMessage limited = proto::parse_message(text, kLimit);
  if (limited.refused_batch_length > 0) {
    FUZZ_CHECK(limited.batch && limited.entries.empty());
    FUZZ_CHECK(limited.refused_batch_length > kLimit);
    FUZZ_CHECK(!accepted || (value.is_array() && value.size() == limited.refused_batch_length));
  } else {
    FUZZ_CHECK(limited.batch == msg.batch && limited.entries.size() == msg.entries.size());
    FUZZ_CHECK(skip || !accepted || !value.is_array() || value.size() <= kLimit);
  }
  if (skip || !accepted) return 0;

  std::vector<Expected> expected;
  if (value.is_array()) {
    if (value.empty()) {
      FUZZ_CHECK(!msg.batch && msg.entries.size() == 1);
      FUZZ_CHECK(std::get<proto::RpcErrorReply>(msg.entries[0]).code == RpcError::invalid_request);
      return 0;
    }
    FUZZ_CHECK(msg.batch && msg.entries.size() == value.size());
    for (const auto& member : value) expected.push_back(classify(member));
  } else {
    FUZZ_CHECK(!msg.batch);
    expected.push_back(classify(value));
  }
  for (std::size_t i = 0; i < expected.size(); ++i) {
    check_entry(text, msg.entries[i], expected[i]);
    if (const auto* req = std::get_if<proto::RpcRequest>(&msg.entries[i])) {
      check_params(text, *req, expected[i].params, replies);
    }
  }
  if (msg.batch && !replies.empty()) {
    const json batch = parse_reply(proto::join_batch(replies));
    FUZZ_CHECK(batch.is_array() && batch.size() == replies.size());
  }
  return 0;
}
