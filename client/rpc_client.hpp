// RpcClient: a small blocking JSON-RPC client for droverd's Unix sockets, used by droverctl,
// drover-bench and the integration tests. One connection, one thread; every read takes a
// deadline so a caller can never hang on a silent server.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "proto/framing.hpp"
#include "proto/jsonrpc.hpp"

namespace drover::client {

using json = proto::json;

class ClientError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RpcClient {
 public:
  // Connects to a Unix socket; throws ClientError when it cannot.
  explicit RpcClient(const std::string& path, proto::Framing framing = proto::Framing::ndjson,
                     std::size_t max_message_bytes = 64 * 1024 * 1024);
  // Takes ownership of an already connected stream socket (an accepted connection, one end of
  // a socketpair): drover-bench --direct plays the supervisor on a worker's link this way.
  static RpcClient adopt(int fd, proto::Framing framing = proto::Framing::ndjson,
                         std::size_t max_message_bytes = 64 * 1024 * 1024);
  ~RpcClient();
  RpcClient(RpcClient&& other) noexcept;
  RpcClient& operator=(RpcClient&&) = delete;
  RpcClient(const RpcClient&) = delete;

  // Sends bytes as they are (tests use this for malformed input and split writes).
  void send_raw(std::string_view bytes);
  // Sends one message in this connection's framing.
  void send(const json& message);
  // Sends a request with a fresh numeric id and returns that id.
  std::int64_t send_request(std::string_view method, const json& params = nullptr);

  // The next message from the server, or nullopt if none arrives before the timeout.
  // Throws ClientError when the server closed the connection.
  std::optional<json> read(std::chrono::milliseconds timeout);
  // Like read(), but returns the raw text of the message.
  std::optional<std::string> read_text(std::chrono::milliseconds timeout);

  // Sends a request and waits for its reply (the whole reply object, result or error).
  // Notifications that arrive meanwhile go to on_notification. Throws ClientError on timeout.
  json call(std::string_view method, const json& params = nullptr,
            std::chrono::milliseconds timeout = std::chrono::seconds(30),
            const std::function<void(const json&)>& on_notification = {});

  // Half-close: no more requests, replies still readable.
  void shutdown_write();
  void close();
  bool closed_by_server() const { return eof_; }
  int fd() const { return fd_; }

 private:
  RpcClient(int fd, proto::Framing framing, std::size_t max_message_bytes);
  bool fill(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  proto::Framing framing_;
  proto::FrameDecoder decoder_;
  std::int64_t next_id_ = 1;
  bool eof_ = false;
};

}  // namespace drover::client
