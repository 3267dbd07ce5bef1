// Fuzz target: the parser of what a worker sends (proto/worker_messages.hpp). A worker may be
// broken or malicious, and droverd must never crash or throw because of its bytes.
//
// Input: the text of one framed message from a worker's control socket.
// Invariants:
//  - parse_worker_message() returns either a non-empty error text or a classified message: a
//    reply has no method, and an error that is null or what droverd can read without an
//    exception (an object with a code that fits an int and a string message); a notification
//    has id 0;
//  - the message, serialised again the way droverd and the C++ worker write messages
//    (make_request, make_notification, make_result, or an error reply), parses back to the
//    same message, so what droverd forwards from a worker is valid JSON.
// Exceptions are not caught: the parser is on the data plane and must not throw.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.hpp"
#include "proto/jsonrpc.hpp"
#include "proto/worker_messages.hpp"

namespace {

namespace proto = drover::proto;
using proto::json;
using proto::worker::WorkerMessage;

std::string serialise(const WorkerMessage& m) {
  switch (m.kind) {
    case WorkerMessage::Kind::request:
      // make_request leaves out null params; the parser reads absent params as null too.
      return proto::make_request(m.id, m.method, m.params);
    case WorkerMessage::Kind::notification: {
      // make_notification always writes params; null params are left out, as a worker would.
      if (m.params.is_null()) {
        return R"({"jsonrpc":"2.0","method":)" + json(m.method).dump() + "}";
      }
      return proto::make_notification(m.method, m.params);
    }
    case WorkerMessage::Kind::reply:
      if (!m.error.is_null()) {
        return R"({"jsonrpc":"2.0","id":)" + std::to_string(m.id) + R"(,"error":)" +
               m.error.dump(-1, ' ', false, json::error_handler_t::replace) + "}";
      }
      return proto::make_result(m.id, m.result);
  }
  return {};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The batch form (a worker line holding a JSON-RPC batch array, or one message): a value or
  // an error text, never a throw; one message parses the same either way.
  const auto many = proto::worker::parse_worker_messages(text);
  FUZZ_CHECK(many.has_value() != many.has_error());
  FUZZ_CHECK(many.has_value() || !many.error().empty());
  const auto parsed = proto::worker::parse_worker_message(text);
  if (parsed.has_value()) FUZZ_CHECK(many.has_value() && many->size() == 1);
  FUZZ_CHECK(parsed.has_value() != parsed.has_error());
  if (parsed.has_error()) {
    FUZZ_CHECK(!parsed.error().empty());
    return 0;
  }
  const WorkerMessage& m = *parsed;
  switch (m.kind) {
    case WorkerMessage::Kind::reply:
      FUZZ_CHECK(m.method.empty() && m.params.is_null());
      FUZZ_CHECK(m.error.is_null() || (m.error.is_object() && m.error.contains("code") &&
                                       m.error.at("code").is_number_integer()));
      FUZZ_CHECK(m.error.is_null() || m.result.is_null());
      if (!m.error.is_null()) {
        // What droverd reads from a worker's error (supervisor/pool/worker_link.cpp): these
        // throw unless the parser guarantees the types.
        const int code = m.error["code"].get<int>();
        FUZZ_CHECK(m.error["code"] == code);
        static_cast<void>(m.error.value("message", std::string()));
      }
      break;
    case WorkerMessage::Kind::notification:
      FUZZ_CHECK(m.id == 0);
      [[fallthrough]];
    case WorkerMessage::Kind::request:
      FUZZ_CHECK(m.result.is_null() && m.error.is_null());
      break;
  }

  const std::string again = serialise(m);
  const auto reparsed = proto::worker::parse_worker_message(again);
  FUZZ_CHECK(reparsed.has_value());
  FUZZ_CHECK(reparsed->kind == m.kind);
  FUZZ_CHECK(reparsed->id == m.id);
  FUZZ_CHECK(reparsed->method == m.method);
  FUZZ_CHECK(reparsed->params == m.params);
  FUZZ_CHECK(reparsed->result == m.result);
  FUZZ_CHECK(reparsed->error == m.error);
  return 0;
}
