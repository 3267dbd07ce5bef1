// Fuzz target: the JSON-RPC 2.0 envelope (proto/jsonrpc.hpp), single messages and batches, and
// the params parsers of the client methods (proto/client_params.hpp).
//
// Input: the text of one framed client message, as FrameDecoder hands it to a session.
// Every request that parse_message() accepts has its params run through every params parser
// (whatever its method, so each parser sees every shape of params the fuzzer finds), and
// every outcome is turned into the reply droverd would write. Invariants:
//  - each entry is either a request with a valid envelope (params null, an object or an
//    array; id absent, null, a string or a number) or an error reply with code -32700 or
//    -32600 and an id that is null, a string or a number; -32700 only alone, never in a batch;
//  - each params parser returns either a value within the documented ranges or a non-empty
//    error text;
//  - every reply (error replies, -32602 replies with data.detail, results echoing the params,
//    a batch reply joining them, the worker's generate params) serialises to valid JSON that
//    reads back with the same id and code.
//  - parse_json agrees with nlohmann's own parser on what is JSON and what it means.
// Exceptions are not caught: parsing and validation are on the data plane and must not throw.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "proto/client_params.hpp"
#include "proto/jsonrpc.hpp"

namespace {

namespace proto = drover::proto;
using drover::RpcError;
using proto::json;

bool valid_id(const json& id) { return id.is_null() || id.is_string() || id.is_number(); }

json parse_reply(const std::string& text) {
  json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!v.is_discarded());
  return v;
}

// Serialises an error reply and checks it reads back as one, with this id and code.
std::string error_reply(const json& id, RpcError code, std::string_view message, const json& data) {
  std::string text = proto::make_error(id, code, message, data);
  json v = parse_reply(text);
  FUZZ_CHECK(v.is_object() && v.value("jsonrpc", "") == "2.0");
  FUZZ_CHECK(v.contains("id") && v["id"] == id);
  FUZZ_CHECK(v.contains("error") && v["error"].is_object());
  FUZZ_CHECK(v["error"].value("code", 0) == drover::code_of(code));
  FUZZ_CHECK(v["error"].contains("message") && v["error"]["message"].is_string());
  return text;
}

template <typename T>
void check_params_error(const proto::ParamsResult<T>& r, const json& id,
                        std::vector<std::string>& replies) {
  FUZZ_CHECK(r.has_error() != r.has_value());
  if (r.has_error()) {
    FUZZ_CHECK(!r.error().empty());
    replies.push_back(error_reply(id, RpcError::invalid_params, {}, json{{"detail", r.error()}}));
  }
}

void check_params(const proto::RpcRequest& req, std::vector<std::string>& replies) {
  const json id = req.id.value_or(nullptr);

  const auto g = proto::parse_generate_params(req.params);
  check_params_error(g, id, replies);
  if (g.has_value()) {
    FUZZ_CHECK(g->max_tokens >= 1 && g->max_tokens <= proto::kMaxTokensLimit);
    FUZZ_CHECK(g->temperature >= 0.0 && g->temperature <= 100.0);
    FUZZ_CHECK(g->top_p >= 0.0 && g->top_p <= 1.0);
    FUZZ_CHECK(g->stop.size() <= 16);
    for (const auto& s : g->stop) FUZZ_CHECK(!s.empty());
    FUZZ_CHECK(!g->timeout_ms || (*g->timeout_ms >= 1 && *g->timeout_ms <= 86'400'000));
    const json worker = g->to_worker_params(g->seed.value_or(42));
    json back = parse_reply(proto::make_request(1, "generate", worker));
    FUZZ_CHECK(back["params"] == worker);
  }

  const auto t = proto::parse_tokenize_params(req.params);
  check_params_error(t, id, replies);

  const auto d = proto::parse_detokenize_params(req.params);
  check_params_error(d, id, replies);

  const auto c = proto::parse_cancel_params(req.params);
  check_params_error(c, id, replies);
  if (c.has_value()) FUZZ_CHECK(valid_id(c->id));

  const auto none = proto::parse_no_params(req.params);
  check_params_error(none, id, replies);
  FUZZ_CHECK(none.has_value() == proto::params_empty(req.params));

  // A result reply carrying the params: serialising any parsed value must give valid JSON.
  if (!req.is_notification()) {
    const std::string text = proto::make_result(id, req.params);
    json v = parse_reply(text);
    FUZZ_CHECK(v["id"] == id && v["result"] == req.params);
    replies.push_back(text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Differential: parse_json (simdjson's fast path, nlohmann's parser as the fallback) accepts
  // and refuses exactly what nlohmann's parser does, with equal values, within the depth limit.
  {
    bool too_deep = false;
    const json ours = proto::parse_json(text, &too_deep);
    if (!too_deep) {
      const json theirs = json::parse(text, nullptr, /*allow_exceptions=*/false);
      FUZZ_CHECK(ours.is_discarded() == theirs.is_discarded());
      FUZZ_CHECK(ours.is_discarded() || ours == theirs);
    }
  }
  const proto::ParsedMessage msg = proto::parse_message(text);
  FUZZ_CHECK(!msg.entries.empty());
  FUZZ_CHECK(msg.batch || msg.entries.size() == 1);

  std::vector<std::string> replies;
  for (const proto::RpcEntry& entry : msg.entries) {
    if (const auto* e = std::get_if<proto::RpcErrorReply>(&entry)) {
      FUZZ_CHECK(e->code == RpcError::parse_error || e->code == RpcError::invalid_request);
      FUZZ_CHECK(e->code != RpcError::parse_error || (!msg.batch && msg.entries.size() == 1));
      FUZZ_CHECK(valid_id(e->id));
      FUZZ_CHECK(!e->message.empty());
      FUZZ_CHECK(e->data.is_null() || e->data.is_object());
      const std::string text_reply = proto::make_error(*e);
      FUZZ_CHECK(text_reply == error_reply(e->id, e->code, e->message, e->data));
      replies.push_back(text_reply);
      continue;
    }
    const auto& req = std::get<proto::RpcRequest>(entry);
    FUZZ_CHECK(req.params.is_null() || req.params.is_object() || req.params.is_array());
    FUZZ_CHECK(!req.id || valid_id(*req.id));
    check_params(req, replies);
  }
  if (msg.batch && !replies.empty()) {
    const json batch = parse_reply(proto::join_batch(replies));
    FUZZ_CHECK(batch.is_array() && batch.size() == replies.size());
  }
  return 0;
}
