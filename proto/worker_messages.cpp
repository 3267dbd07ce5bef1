#include "proto/worker_messages.hpp"

namespace drover::proto::worker {

boost::system::result<WorkerMessage, std::string> parse_worker_message(std::string_view text) {
  using R = boost::system::result<WorkerMessage, std::string>;
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return R(boost::system::in_place_error, "not JSON");
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
    if (!error->is_object() || !error->contains("code") || !(*error)["code"].is_number_integer()) {
      return R(boost::system::in_place_error, "error is not an object with an integer code");
    }
    m.error = std::move(*error);
  } else {
    m.result = std::move(*result);
  }
  return m;
}

}  // namespace drover::proto::worker
