// JSON-RPC 2.0 envelopes from clients (https://www.jsonrpc.org/specification): a scan of what a
// client sent that keeps the id and params as the bytes received, and the serialisation of
// replies around bytes. Pure functions, no I/O, thread-safe (per-thread scanners).
//
// Validation follows the spec exactly: `jsonrpc` must be "2.0"; `method` a string; `params`,
// when present, an object or array; `id`, when present, a string, number or null. A request
// without `id` is a notification and gets no reply. A batch is a non-empty array; each invalid
// member gets its own -32600; an empty array is a single -32600; text that is not JSON (anywhere
// in it, even inside params) is a single -32700 with id null. An invalid request whose id is
// itself valid is answered with that id.
//
// Ids are echoed exactly as the client wrote them (big integers, `1e2`, escapes) and compared by
// their JSON text: `RpcId` is that text ("null" for a null id). Nothing here builds a tree; the
// whole message is validated in one on-demand walk (simdjson) and params are handed on as their
// bytes, to be read into typed params by proto/client_params.hpp.
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

// The JSON text of a request id, exactly as received ("null" when the id was null or unknown).
using RpcId = std::string;
inline constexpr std::string_view kNullId = "null";

struct RpcRequest {
  std::string method;
  // The params' JSON text (an object or an array), empty when absent. Points into the
  // ParsedMessage that holds this request.
  std::string_view params;
  std::optional<RpcId> id;  // empty for a notification
  bool is_notification() const { return !id.has_value(); }
  // The params as a tree, for control-plane methods (admin, config); null when absent.
  json params_tree() const;
};

struct RpcErrorReply {
  RpcId id = RpcId(kNullId);
  RpcError code;
  std::string message;
  std::string data;  // JSON text, or empty when absent
};

using RpcEntry = std::variant<RpcRequest, RpcErrorReply>;

struct ParsedMessage {
  ParsedMessage() = default;
  ParsedMessage(ParsedMessage&&) = default;
  ParsedMessage& operator=(ParsedMessage&&) = default;
  ParsedMessage(const ParsedMessage&) = delete;
  ParsedMessage& operator=(const ParsedMessage&) = delete;

  bool batch = false;             // the reply must be an array (when there is anything to send)
  std::vector<RpcEntry> entries;  // one per batch member, or exactly one
  // Set when a batch was longer than the limit given to parse_message: entries is then empty,
  // and the whole batch is refused before anything in it is read into requests.
  std::size_t refused_batch_length = 0;
  std::vector<char> text;  // the message's bytes, which RpcRequest::params point into
};

// Parses one framed message from a client. A batch of more than `max_batch_length` members is
// refused by its length alone (refused_batch_length), before a request is built for any member.
ParsedMessage parse_message(std::string_view text, std::size_t max_batch_length = SIZE_MAX);

// --- serialisation of replies and notifications (compact JSON, no trailing newline) ---------
// `id` is the JSON text of the id; `result`, `params` and `data` are JSON text.
std::string make_result(std::string_view id, std::string_view result);
std::string make_error(std::string_view id, RpcError code, std::string_view message = {},
                       std::string_view data = {});
std::string make_error(const RpcErrorReply& e);
std::string make_notification(std::string_view method, std::string_view params);
// Appends `{"jsonrpc":"2.0","id":<id>,"result":` to out: the caller writes the result and `}`.
void open_result(std::string& out, std::string_view id);

// The same for the control plane, which builds its results as trees (admin, telemetry).
std::string make_result(std::string_view id, const json& result);
std::string make_error(std::string_view id, RpcError code, std::string_view message,
                       const json& data);

// Joins serialised replies into a batch reply ("[a,b]").
std::string join_batch(const std::vector<std::string>& replies);

// JSON text of a tree (control plane), with invalid UTF-8 replaced rather than thrown on.
std::string dump(const json& value);
// Parses JSON text without exceptions, into a discarded value when it is not JSON or nests
// deeper than kMaxJsonDepth. Control plane only (config, admin params, tests).
json parse_json(std::string_view text);

// Params helpers shared by every method: absent params, {} and [] all mean "no parameters".
bool params_empty(std::string_view params);

}  // namespace drover::proto
