// ConnectionStream: the byte stream of one client connection — a Unix socket, a TCP socket, or
// TLS over TCP — behind one Asio AsyncReadStream/AsyncWriteStream face, so ClientSession,
// OpenAiSession and Beast are written once for all three. Owned by its session; supervisor
// thread only.
//
// Each operation picks its transport with one branch instead of templating the sessions on the
// stream type: a predictable branch costs nothing next to the syscall it guards, and the
// sessions' logic (framing, flow control, call tracking) stays one non-template class.
//
// Reading: a plain socket supports try_read() (a non-blocking read) + async_wait_readable(),
// which lets ClientSession read through one buffer shared by every connection on the thread.
// TLS does not: OpenSSL may hold decrypted bytes that no readiness of the socket announces,
// and a record may be half received when the socket is readable; a TLS connection reads with
// async_read_some into a buffer of its own (ClientSession, tls() == true).
//
// Writing through TLS: asio's ssl::stream encrypts only the first buffer of a sequence per
// write_some, so a gathered write of 64 replies would cost 64 records and 64 sends. Writes are
// copied into a 16 KiB staging buffer (one TLS record's payload) and sent as one record.
#pragma once

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <memory>
#include <optional>
#include <string>

#include "common/async_util.hpp"

namespace drover::supervisor {

// The TLS handshake's bound: server.partial_message_timeout_ms (a handshake is a message begun
// and not completed), or 30 s when that timeout is 0 (off): a handshake is never unbounded.
inline std::chrono::milliseconds handshake_timeout(std::chrono::milliseconds partial_message) {
  return partial_message.count() > 0 ? partial_message : std::chrono::milliseconds(30'000);
}

class ConnectionStream {
 public:
  using Unix = asio::local::stream_protocol::socket;
  using Tcp = asio::ip::tcp::socket;
  using Tls = asio::ssl::stream<Tcp>;
  using executor_type = Unix::executor_type;

  explicit ConnectionStream(Unix socket) : unix_(std::move(socket)) {}
  // Plain TCP (Nagle off: replies and stream chunks are small and latency-bound).
  explicit ConnectionStream(Tcp socket);
  // TLS over TCP, as the server side; handshake() must complete before anything else.
  ConnectionStream(Tcp socket, asio::ssl::context& tls);

  executor_type get_executor();
  bool tls() const { return tls_ != nullptr; }
  int native_handle();

  // TLS: the server handshake, bounded by `timeout` (a client that never handshakes cannot
  // hold a connection). Plain sockets: success at once. The empty string on success, else
  // why it failed ("not completed within N ms", OpenSSL's reason), for the caller's log.
  asio::awaitable<std::string> handshake(std::chrono::milliseconds timeout);

  // REQUIRES: !tls(). A non-blocking read (would_block when nothing is there); the socket is
  // put into non-blocking mode by the first call.
  std::size_t try_read(asio::mutable_buffer buffer, boost::system::error_code& ec);
  // Waits until the socket is readable (TLS: the TCP socket under it, which says that bytes
  // or an EOF arrived, not that a whole record did).
  template <typename Token>
  auto async_wait_readable(Token&& token) {
    if (tls_) return tls_->lowest_layer().async_wait(Tcp::wait_read, std::forward<Token>(token));
    if (tcp_) return tcp_->async_wait(Tcp::wait_read, std::forward<Token>(token));
    return unix_->async_wait(Unix::wait_read, std::forward<Token>(token));
  }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (tls_) {
            tls_->async_read_some(b, std::move(handler));
          } else if (tcp_) {
            tcp_->async_read_some(b, std::move(handler));
          } else {
            unix_->async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_) {
            tls_->async_write_some(asio::buffer(stage(b)), std::move(handler));
          } else if (tcp_) {
            tcp_->async_write_some(b, std::move(handler));
          } else {
            unix_->async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  // Whether the peer is gone for good (POLLHUP/POLLERR), as opposed to having only shut down
  // its write side. Over TCP a close looks like a half-close until a write fails.
  bool peer_gone();
  void shutdown_receive();
  void close();

 private:
  // Copies the front of `buffers` (up to one TLS record's payload) into staging_.
  template <typename ConstBuffers>
  const std::string& stage(const ConstBuffers& buffers) {
    staging_.clear();
    for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
         ++it) {
      const asio::const_buffer b(*it);
      const std::size_t take = std::min(b.size(), kTlsRecordBytes - staging_.size());
      staging_.append(static_cast<const char*>(b.data()), take);
      if (staging_.size() == kTlsRecordBytes) break;
    }
    return staging_;
  }

  static constexpr std::size_t kTlsRecordBytes = 16 * 1024;

  std::optional<Unix> unix_;
  std::optional<Tcp> tcp_;
  std::unique_ptr<Tls> tls_;
  std::string staging_;  // TLS writes only
  bool non_blocking_ = false;
};

}  // namespace drover::supervisor
