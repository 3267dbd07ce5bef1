// Fuzz target: the worker protocol's codec (proto/worker_codec.hpp). A worker may be broken or
// malicious (and droverd's bytes are what a worker reads): neither side may crash, throw or
// half-understand a message because of the other's bytes.
//
// Input: the text of one framed message (or a JSON-RPC batch of them) from the peer.
// Invariants:
//  - Decoder::decode() returns a non-empty error text or messages; it agrees with
//    nlohmann::json::parse plus the protocol's classification rules applied to nlohmann's tree:
//    text nlohmann refuses is an error, and for text it accepts, a batch is a non-empty array
//    of valid messages, a message is an object with "jsonrpc":"2.0" that is a request
//    (string method, unsigned integer id), a notification (string method, no id) or a reply
//    (unsigned integer id, exactly one of result and error, an error being an object with an
//    integer code that fits an int and a message, if any, that is a string). Accepted messages
//    carry what nlohmann reads: kind, id, method, and params/result/error.data whose text reads
//    as nlohmann's values. Deliberate differences, skipped: nesting deeper than kMaxJsonDepth
//    (always an error here) and a leading UTF-8 byte order mark (refused here).
//  - every read_* on the params/result/data of what was decoded, and on the input itself,
//    returns a value or a non-empty error, never crashes;
//  - strings cut from the input, encoded by every encode_* and decoded again, come back as
//    themselves when they are valid UTF-8 and with U+FFFD for each byte that starts no valid
//    UTF-8 sequence otherwise (checked against a reference written here); numbers cut from the
//    input come back exactly.
// Exceptions are not caught around the code under test: it is on the data plane and must not
// throw.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "proto/json_text.hpp"
#include "proto/jsonrpc.hpp"
#include "proto/worker_codec.hpp"

namespace {

namespace proto = drover::proto;
namespace worker = drover::proto::worker;
using proto::json;
using worker::Message;

// Whether nlohmann accepts the text, its tree in `value` if so.
bool nlohmann_accepts(std::string_view text, json& value) {
  // nlohmann's lexer takes a NUL byte for the end of the input (a C-string habit), so it
  // accepts `{...}\0garbage`; no JSON text holds a raw NUL (not in a string, not as
  // whitespace), so such text is refused, as it is by the codecs.
  if (text.find('\0') != std::string_view::npos) return false;
  value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return !value.is_discarded();
}

json tree(std::string_view text) {
  json v = proto::parse_json(text);
  FUZZ_CHECK(!v.is_discarded());
  return v;
}

// --- the classification rules over nlohmann's tree (the reference) ----------------------------

struct Expected {
  Message::Kind kind = Message::Kind::notification;
  std::uint64_t id = 0;
  std::string method;
  std::optional<json> params, result;
  bool error = false;
  int code = 0;
  std::string message;
  std::optional<json> data;
};

bool fits_int(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT_MAX);
  if (!v.is_number_integer()) return false;
  const auto i = v.get<std::int64_t>();
  return i >= INT_MIN && i <= INT_MAX;
}

std::optional<Expected> classify(const json& v) {
  if (!v.is_object() || !v.contains("jsonrpc") || v["jsonrpc"] != "2.0") return std::nullopt;
  Expected e;
  if (v.contains("params")) e.params = v["params"];
  if (v.contains("method")) {
    if (!v["method"].is_string()) return std::nullopt;
    e.method = v["method"].get<std::string>();
    if (v.contains("id")) {
      if (!v["id"].is_number_unsigned()) return std::nullopt;
      e.kind = Message::Kind::request;
      e.id = v["id"].get<std::uint64_t>();
    }
    return e;
  }
  if (!v.contains("id") || !v["id"].is_number_unsigned()) return std::nullopt;
  e.kind = Message::Kind::reply;
  e.id = v["id"].get<std::uint64_t>();
  e.params.reset();  // a reply's params are read but not classified: the fields below count
  if (v.contains("result") == v.contains("error")) return std::nullopt;
  if (v.contains("result")) {
    e.result = v["result"];
    return e;
  }
  const json& err = v["error"];
  if (!err.is_object() || !err.contains("code") || !fits_int(err["code"])) return std::nullopt;
  if (err.contains("message") && !err["message"].is_string()) return std::nullopt;
  e.error = true;
  e.code = err["code"].get<int>();
  e.message = err.value("message", std::string());
  if (err.contains("data")) e.data = err["data"];
  return e;
}

void check_message(const Message& m, const Expected& e) {
  FUZZ_CHECK(m.kind == e.kind);
  FUZZ_CHECK(m.id == e.id);
  if (m.kind == Message::Kind::reply) {
    FUZZ_CHECK(m.method.empty());
    FUZZ_CHECK(m.error.has_value() == e.error);
    if (e.error) {
      FUZZ_CHECK(m.error->code == e.code);
      FUZZ_CHECK(m.error->message == e.message);
      FUZZ_CHECK(m.error->data.empty() == !e.data.has_value());
      if (e.data) FUZZ_CHECK(tree(m.error->data) == *e.data);
      FUZZ_CHECK(m.result.empty());
    } else {
      FUZZ_CHECK(!m.result.empty() && tree(m.result) == *e.result);
    }
    return;
  }
  FUZZ_CHECK(m.method == e.method);
  FUZZ_CHECK(!m.error.has_value());
  FUZZ_CHECK(m.params.empty() == !e.params.has_value());
  if (e.params) FUZZ_CHECK(tree(m.params) == *e.params);
}

// --- typed readers: a value or a non-empty error, on any text ----------------------------------

template <typename T>
void answered(const worker::Decoded<T>& r) {
  FUZZ_CHECK(r.has_value() != r.has_error());
  FUZZ_CHECK(r.has_value() || !r.error().empty());
}

void read_everything(std::string_view text) {
  answered(worker::read_generate(text));
  answered(worker::read_batch_tokenize(text));
  answered(worker::read_detokenize(text));
  answered(worker::read_cancel(text));
  answered(worker::read_inject(text));
  answered(worker::read_generate_result(text));
  answered(worker::read_tokens_result(text));
  answered(worker::read_text_result(text));
  answered(worker::read_chunk(text));
  answered(worker::read_heartbeat(text));
  answered(worker::read_tree(text));
}

// --- encode -> decode round trip -----------------------------------------------------------------

// What a string must come back as: each byte that does not start a valid UTF-8 sequence (RFC
// 3629: no overlong forms, no surrogates, nothing past U+10FFFF) replaced with U+FFFD. Written
// independently of proto/json_text.cpp: decode the code point, then check its range.
std::string sanitised(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xE  ? 3
                    : (c >> 3) == 0x1E ? 4
                                       : 0;
    bool ok = n > 0 && i + n <= s.size();
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; ok && k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      ok = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (ok) {
      static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    if (ok) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

// Cuts the input into pieces at 0xFE bytes (a byte no UTF-8 text holds, so the fuzzer can place
// cuts deliberately); numbers come from the first bytes.
struct Pieces {
  std::vector<std::string> strings;
  std::uint64_t u = 0;
  std::int64_t i = 0;
  double d = 0;
};

Pieces cut(std::string_view text) {
  Pieces p;
  std::memcpy(&p.u, text.data(), std::min(text.size(), sizeof p.u));
  std::memcpy(&p.i, text.data(), std::min(text.size(), sizeof p.i));
  std::memcpy(&p.d, text.data(), std::min(text.size(), sizeof p.d));
  if (!std::isfinite(p.d)) p.d = 0.5;  // JSON has no NaN: encoders write null for it
  std::size_t from = 0;
  for (std::size_t k = 0; k <= text.size() && p.strings.size() < 8; ++k) {
    if (k == text.size() || static_cast<unsigned char>(text[k]) == 0xFE) {
      p.strings.emplace_back(text.substr(from, k - from));
      from = k + 1;
    }
  }
  return p;
}

const Message& only(worker::Decoder& d, const std::string& wire, std::vector<Message>& keep) {
  auto r = d.decode(wire);
  FUZZ_CHECK(r.has_value());
  FUZZ_CHECK(r->size() == 1);
  keep = std::move(*r);
  return keep[0];
}

void round_trip(std::string_view text) {
  const Pieces p = cut(text);
  const std::string& a = p.strings[0];
  const std::string& b = p.strings.size() > 1 ? p.strings[1] : a;
  worker::Decoder d;
  std::vector<Message> keep;

  worker::GenerateRequest g{
      a, b, 1 + static_cast<int>(p.u % 100000), p.d, std::fabs(p.d), p.u, {}, (p.u & 1) != 0};
  for (std::size_t k = 1; k < p.strings.size(); ++k) g.stop.push_back(p.strings[k]);
  std::string wire;
  worker::encode_generate(wire, p.u, g);
  {
    const Message& m = only(d, wire, keep);
    FUZZ_CHECK(m.kind == Message::Kind::request && m.id == p.u && m.method == "generate");
    const auto r = worker::read_generate(m.params);
    FUZZ_CHECK(r.has_value());
    FUZZ_CHECK(r->model == sanitised(a) && r->prompt == sanitised(b));
    FUZZ_CHECK(r->max_tokens == g.max_tokens && r->seed == g.seed && r->stream == g.stream);
    FUZZ_CHECK(r->temperature == g.temperature && r->top_p == g.top_p);
    FUZZ_CHECK(r->stop.size() == g.stop.size());
    for (std::size_t k = 0; k < g.stop.size(); ++k) FUZZ_CHECK(r->stop[k] == sanitised(g.stop[k]));
  }

  std::vector<std::string_view> views(p.strings.begin(), p.strings.end());
  wire.clear();
  worker::encode_batch_tokenize(wire, p.u, b, views);
  {
    const auto r = worker::read_batch_tokenize(only(d, wire, keep).params);
    FUZZ_CHECK(r.has_value() && r->texts.size() == views.size() && r->model == sanitised(b));
    for (std::size_t k = 0; k < views.size(); ++k) FUZZ_CHECK(r->texts[k] == sanitised(views[k]));
  }

  wire.clear();
  worker::encode_detokenize(wire, p.u, worker::DetokenizeRequest{a, {p.i, -(p.i / 2), 0}});
  {
    const auto r = worker::read_detokenize(only(d, wire, keep).params);
    FUZZ_CHECK(r.has_value() && r->model == sanitised(a));
    FUZZ_CHECK((r->tokens == std::vector<std::int64_t>{p.i, -(p.i / 2), 0}));
  }

  wire.clear();
  worker::encode_cancel(wire, p.u);
  FUZZ_CHECK(*worker::read_cancel(only(d, wire, keep).params) == p.u);
  wire.clear();
  worker::encode_inject(wire, a);
  FUZZ_CHECK(*worker::read_inject(only(d, wire, keep).params) == sanitised(a));

  const worker::GenerateResult result{a, b, {p.i, p.i / 3}};
  wire.clear();
  worker::encode_generate_result(wire, p.u, result);
  {
    const Message& m = only(d, wire, keep);
    FUZZ_CHECK(m.kind == Message::Kind::reply && m.id == p.u && !m.error);
    const auto r = worker::read_generate_result(m.result);
    FUZZ_CHECK(r.has_value() && r->text == sanitised(a) && r->finish_reason == sanitised(b));
    FUZZ_CHECK(r->usage.prompt_tokens == p.i && r->usage.completion_tokens == p.i / 3);
  }

  wire.clear();
  worker::encode_tokens_result(wire, p.u, {{p.i}, {}, {1, 2}});
  FUZZ_CHECK((*worker::read_tokens_result(only(d, wire, keep).result) ==
              std::vector<std::vector<std::int64_t>>{{p.i}, {}, {1, 2}}));
  wire.clear();
  worker::encode_text_result(wire, p.u, a);
  FUZZ_CHECK(*worker::read_text_result(only(d, wire, keep).result) == sanitised(a));

  wire.clear();
  worker::encode_error(wire, p.u, drover::RpcError::internal_error, a,
                       p.strings.size() > 2 ? R"({"x":[1]})" : "");
  {
    const Message& m = only(d, wire, keep);
    FUZZ_CHECK(m.kind == Message::Kind::reply && m.error);
    FUZZ_CHECK(m.error->code == -32603);
    FUZZ_CHECK(m.error->message == (a.empty() ? std::string("Internal error") : sanitised(a)));
    FUZZ_CHECK(m.error->data == (p.strings.size() > 2 ? R"({"x":[1]})" : ""));
  }

  wire.clear();
  worker::encode_chunk(wire, p.u, p.u / 7, b);
  {
    const Message& m = only(d, wire, keep);
    FUZZ_CHECK(m.kind == Message::Kind::notification && m.method == "generate.chunk");
    const auto r = worker::read_chunk(m.params);
    FUZZ_CHECK(r.has_value() && r->id == p.u && r->index == p.u / 7 && r->text == sanitised(b));
  }

  worker::Heartbeat h;
  h.inflight = p.i;
  h.tokens_per_s = p.d;
  h.models = p.strings;
  h.progress = p.i < 0 ? -1 : p.i;
  wire.clear();
  worker::encode_heartbeat(wire, h);
  {
    const auto r = worker::read_heartbeat(only(d, wire, keep).params);
    FUZZ_CHECK(r.has_value() && r->inflight == p.i && r->tokens_per_s == p.d);
    FUZZ_CHECK(r->progress == h.progress && r->models && r->models->size() == p.strings.size());
    for (std::size_t k = 0; k < p.strings.size(); ++k) {
      FUZZ_CHECK((*r->models)[k] == sanitised(p.strings[k]));
    }
  }

  // The control plane's trees (nlohmann's dump with invalid UTF-8 replaced): valid JSON that
  // reads back as a tree with the same shape.
  wire.clear();
  worker::encode_request(wire, p.u, "init", json{{"s", a}, {"n", p.i}});
  {
    const auto r = worker::read_tree(only(d, wire, keep).params);
    FUZZ_CHECK(r.has_value() && r->is_object() && (*r)["n"] == p.i && (*r)["s"].is_string());
  }

  // A batch of the pieces' chunks, in order.
  std::string batch = "[";
  for (std::size_t k = 0; k < p.strings.size(); ++k) {
    if (k) batch += ',';
    worker::encode_chunk(batch, p.u, k, p.strings[k]);
  }
  batch += ']';
  const auto many = d.decode(batch);
  FUZZ_CHECK(many.has_value() && many->size() == p.strings.size());
  for (std::size_t k = 0; k < p.strings.size(); ++k) {
    const auto r = worker::read_chunk((*many)[k].params);
    FUZZ_CHECK(r.has_value() && r->index == k && r->text == sanitised(p.strings[k]));
  }
}

void decode_and_compare(std::string_view text) {
  static worker::Decoder decoder;
  const auto decoded = decoder.decode(text);
  FUZZ_CHECK(decoded.has_value() != decoded.has_error());
  FUZZ_CHECK(decoded.has_value() || !decoded.error().empty());
  if (decoded.has_value()) {
    FUZZ_CHECK(!decoded->empty());
    for (const Message& m : *decoded) {
      read_everything(m.params);
      read_everything(m.result);
      if (m.error) read_everything(m.error->data);
    }
  }

  // The differential check against nlohmann and the classification rules.
  const bool too_deep = proto::nests_deeper_than(text, proto::kMaxJsonDepth);
  if (too_deep) FUZZ_CHECK(decoded.has_error());
  if (too_deep || text.substr(0, 3) == "\xEF\xBB\xBF") return;
  json value;
  bool valid = nlohmann_accepts(text, value);
  std::vector<Expected> expected;
  if (valid && value.is_array()) {
    valid = !value.empty();
    for (const auto& member : value) {
      auto e = classify(member);
      if (!e) {
        valid = false;
        break;
      }
      expected.push_back(std::move(*e));
    }
  } else if (valid) {
    auto e = classify(value);
    valid = e.has_value();
    if (valid) expected.push_back(std::move(*e));
  }
  FUZZ_CHECK(decoded.has_value() == valid);
  if (!valid) return;
  FUZZ_CHECK(decoded->size() == expected.size());
  for (std::size_t k = 0; k < expected.size(); ++k) check_message((*decoded)[k], expected[k]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  decode_and_compare(text);
  // The typed readers on the raw input (what a peer's params could be, valid or not).
  read_everything(text);
  round_trip(text);
  return 0;
}
