#include "proto/worker_messages.hpp"

#include <limits>

namespace drover::proto::worker {
namespace {

// An error code droverd can hold in an int (it reads it with get<int>() and casts to RpcError).
bool int_code(const json& code) {
  if (code.is_number_unsigned()) {
    return code.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int>::max());
  }
  if (!code.is_number_integer()) return false;
  const std::int64_t c = code.get<std::int64_t>();
  return c >= std::numeric_limits<int>::min() && c <= std::numeric_limits<int>::max();
}

boost::system::result<json, std::string> parse_text(std::string_view text) {
  using R = boost::system::result<json, std::string>;
  bool too_deep = false;
  json value = parse_json(text, &too_deep);
  if (too_deep) {
    return R(boost::system::in_place_error,
             "arrays and objects nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  if (value.is_discarded()) return R(boost::system::in_place_error, "not JSON");
  return R(boost::system::in_place_value, std::move(value));
}

boost::system::result<WorkerMessage, std::string> classify(json& value) {
  using R = boost::system::result<WorkerMessage, std::string>;
  if (!value.is_object()) return R(boost::system::in_place_error, "not a JSON object");
  const auto version = value.find("jsonrpc");
  if (version == value.end() || *version != "2.0") {
    return R(boost::system::in_place_error, "jsonrpc is not \"2.0\"");
  }
  WorkerMessage m;
  const auto method = value.find("method");
  const auto id = value.find("id");
  if (method != value.end()) {
    if (!method->is_string()) return R(boost::system::in_place_error, "method is not a string");
    m.method = method->get<std::string>();
    if (auto p = value.find("params"); p != value.end()) m.params = std::move(*p);
    if (id != value.end()) {
      if (!id->is_number_unsigned()) {
        return R(boost::system::in_place_error, "request id is not an unsigned integer");
      }
      m.kind = WorkerMessage::Kind::request;
      m.id = id->get<std::uint64_t>();
    } else {
      m.kind = WorkerMessage::Kind::notification;
    }
    return m;
  }
  if (id == value.end() || !id->is_number_unsigned()) {
    return R(boost::system::in_place_error, "reply id is not an unsigned integer");
  }
  m.kind = WorkerMessage::Kind::reply;
  m.id = id->get<std::uint64_t>();
  const auto result = value.find("result");
  const auto error = value.find("error");
  if ((result == value.end()) == (error == value.end())) {
    return R(boost::system::in_place_error, "reply must have exactly one of result and error");
  }
  if (error != value.end()) {
    // JSON-RPC 2.0 section 5.1: an integer code and a string message. droverd reads them as an
    // int and a std::string, which would throw on anything else.
    if (!error->is_object() || !error->contains("code") || !int_code((*error)["code"])) {
      return R(boost::system::in_place_error, "error is not an object with an integer code");
    }
    if (const auto message = error->find("message");
        message != error->end() && !message->is_string()) {
      return R(boost::system::in_place_error, "error message is not a string");
    }
    m.error = std::move(*error);
  } else {
    m.result = std::move(*result);
  }
  return m;
}

}  // namespace

boost::system::result<WorkerMessage, std::string> parse_worker_message(std::string_view text) {
  using R = boost::system::result<WorkerMessage, std::string>;
  auto value = parse_text(text);
  if (!value) return R(boost::system::in_place_error, value.error());
  return classify(*value);
}

boost::system::result<std::vector<WorkerMessage>, std::string> parse_worker_messages(
    std::string_view text) {
  using R = boost::system::result<std::vector<WorkerMessage>, std::string>;
  auto value = parse_text(text);
  if (!value) return R(boost::system::in_place_error, value.error());
  std::vector<WorkerMessage> out;
  if (!value->is_array()) {
    auto m = classify(*value);
    if (!m) return R(boost::system::in_place_error, m.error());
    out.push_back(std::move(*m));
    return out;
  }
  if (value->empty()) return R(boost::system::in_place_error, "empty batch");
  out.reserve(value->size());
  for (std::size_t i = 0; i < value->size(); ++i) {
    auto m = classify((*value)[i]);
    if (!m) {
      return R(boost::system::in_place_error,
               "batch member " + std::to_string(i) + ": " + m.error());
    }
    out.push_back(std::move(*m));
  }
  return out;
}

}  // namespace drover::proto::worker
