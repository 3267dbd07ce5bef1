// JSON-RPC error codes: the spec's and drover's own (shared/DESIGN.md section 4).
// One list so the supervisor, the worker runtime, droverctl and the tests agree on numbers and
// on the exact message strings the JSON-RPC 2.0 spec defines.
#pragma once

#include <string_view>

namespace drover {

enum class RpcError : int {
  // JSON-RPC 2.0 section 5.1.
  parse_error = -32700,
  invalid_request = -32600,
  method_not_found = -32601,
  invalid_params = -32602,
  internal_error = -32603,
  // drover's application errors.
  overloaded = -32001,          // data: retry_after_ms
  no_healthy_worker = -32002,   // data: retry_after_ms
  worker_failed = -32003,       // data: attempts, worker
  timed_out = -32004,           // data: timeout_ms
  cancelled = -32005,
  unknown_model = -32006,       // data: model
  message_too_large = -32007,   // data: limit_bytes
  not_permitted = -32008,
  shutting_down = -32009,
  slow_consumer = -32010,
};

constexpr int code_of(RpcError e) { return static_cast<int>(e); }

// The spec fixes the first three messages ("Parse error", "Invalid Request", "Method not found");
// the rest are ours, short and stable so clients may show them as they are.
constexpr std::string_view default_message(RpcError e) {
  switch (e) {
    case RpcError::parse_error: return "Parse error";
    case RpcError::invalid_request: return "Invalid Request";
    case RpcError::method_not_found: return "Method not found";
    case RpcError::invalid_params: return "Invalid params";
    case RpcError::internal_error: return "Internal error";
    case RpcError::overloaded: return "Overloaded";
    case RpcError::no_healthy_worker: return "No healthy worker";
    case RpcError::worker_failed: return "Worker failed";
    case RpcError::timed_out: return "Timed out";
    case RpcError::cancelled: return "Cancelled";
    case RpcError::unknown_model: return "Unknown model";
    case RpcError::message_too_large: return "Message too large";
    case RpcError::not_permitted: return "Not permitted on this socket";
    case RpcError::shutting_down: return "Shutting down";
    case RpcError::slow_consumer: return "Slow consumer";
  }
  return "Error";
}

}  // namespace drover
