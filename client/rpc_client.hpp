// RpcClient: a small blocking JSON-RPC client for droverd, used by droverctl, drover-bench and
// the integration tests. One connection, one thread; every read takes a deadline so a caller
// can never hang on a silent server.
//
// Addresses: a Unix socket path, `tcp://HOST:PORT` (server.tcp_listen) or `tls://HOST:PORT`
// (server.tcp_listen with server.tls). Over TLS (OpenSSL, 1.2 or later) the server's
// certificate must chain to TlsOptions::ca_file (the system's CAs when empty) and name HOST:
// a host name is checked against the certificate's DNS names (and sent as SNI), an IP address
// against its IP addresses (RFC 6125, as curl does). cert_file/key_file present a client
// certificate (mutual TLS).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
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

// PEM files of a tls:// connection (droverctl --tls-ca/--tls-cert/--tls-key, or DROVER_TLS_CA,
// DROVER_TLS_CERT, DROVER_TLS_KEY through from_environment()).
struct TlsOptions {
  std::string ca_file;    // CAs that may sign the server's certificate; empty: the system's
  std::string cert_file;  // client certificate chain (mutual TLS), with key_file
  std::string key_file;
  static TlsOptions from_environment();
};

class TlsChannel;

class RpcClient {
 public:
  // Connects to `address` (see above); throws ClientError when it cannot, the TLS handshake
  // included (within 30 s).
  explicit RpcClient(const std::string& address, proto::Framing framing = proto::Framing::ndjson,
                     std::size_t max_message_bytes = 64 * 1024 * 1024, const TlsOptions& tls = {});
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

  // Half-close: no more requests, replies still readable (TLS: sends close_notify).
  void shutdown_write();
  void close();
  bool closed_by_server() const { return eof_; }
  // The socket. Writing to it directly bypasses TLS: plain connections only.
  int fd() const { return fd_; }
  bool tls() const { return tls_ != nullptr; }

 private:
  RpcClient(int fd, proto::Framing framing, std::size_t max_message_bytes);
  bool fill(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::unique_ptr<TlsChannel> tls_;  // tls:// only
  proto::Framing framing_;
  proto::FrameDecoder decoder_;
  std::int64_t next_id_ = 1;
  bool eof_ = false;
};

}  // namespace drover::client
