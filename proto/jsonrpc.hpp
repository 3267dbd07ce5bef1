// JSON-RPC 2.0 envelopes (https://www.jsonrpc.org/specification): parsing and validation of
// what a peer sent, and serialisation of replies. Pure functions, no I/O, thread-safe.
//
// Validation follows the spec exactly: `jsonrpc` must be "2.0"; `method` a string; `params`,
// when present, an object or array; `id`, when present, a string, number or null. A request
// without `id` is a notification and gets no reply. A batch is a non-empty array; each invalid
// member gets its own -32600; an empty array is a single -32600; text that is not JSON is a
// single -32700 with id null. An invalid request whose id is itself valid is answered with that
// id (the spec's "if there was an error in detecting the id" null rule covers the rest).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/error_codes.hpp"

namespace drover::proto {

using json = nlohmann::json;

// Deepest nesting of arrays and objects accepted in a message, from a client or a worker.
// nlohmann's dump(), copies and comparisons recurse once per level, so a value nested deeper than
// the stack allows (an 8 MiB client message or a 64 MiB worker reply can nest millions of levels)
// would crash whoever serialises or copies it. The protocols themselves nest 4 levels or so.
inline constexpr std::size_t kMaxJsonDepth = 256;

// Parses JSON text without exceptions: a discarded value when the text is not JSON or nests
// arrays and objects deeper than kMaxJsonDepth (then *too_deep, when given, is set to true).
json parse_json(std::string_view text, bool* too_deep = nullptr);

struct RpcRequest {
  std::string method;
  json params;             // null when absent, otherwise an object or an array
  std::optional<json> id;  // empty for a notification; otherwise null, a string or a number
  bool is_notification() const { return !id.has_value(); }
};

struct RpcErrorReply {
  json id;  // null when the id could not be determined
  RpcError code;
  std::string message;
  json data;  // null when absent
};

using RpcEntry = std::variant<RpcRequest, RpcErrorReply>;

struct ParsedMessage {
  bool batch = false;            // the reply must be an array (when there is anything to send)
  std::vector<RpcEntry> entries;  // one per batch member, or exactly one
};

// Parses one framed message from a client.
ParsedMessage parse_message(std::string_view text);

// Validates one already-parsed JSON value as a request object.
RpcEntry validate_request(json value);

// Serialisation of replies and notifications (compact JSON, no trailing newline).
std::string make_result(const json& id, const json& result);
std::string make_error(const json& id, RpcError code, std::string_view message = {},
                       const json& data = nullptr);
std::string make_error(const RpcErrorReply& e);
std::string make_notification(std::string_view method, const json& params);
std::string make_request(const json& id, std::string_view method, const json& params);

// Joins serialised replies into a batch reply ("[a,b]").
std::string join_batch(const std::vector<std::string>& replies);

// Params helpers shared by every method: absent params, {} and [] all mean "no parameters".
bool params_empty(const json& params);

}  // namespace drover::proto
