#include "supervisor/frontend/connection_stream.hpp"

#include <fmt/format.h>
#include <poll.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>

namespace drover::supervisor {
using namespace asio::experimental::awaitable_operators;

ConnectionStream::ConnectionStream(Tcp socket) : tcp_(std::move(socket)) {
  boost::system::error_code ignored;
  tcp_->set_option(asio::ip::tcp::no_delay(true), ignored);
}

ConnectionStream::ConnectionStream(Tcp socket, asio::ssl::context& tls) {
  boost::system::error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  tls_ = std::make_unique<Tls>(std::move(socket), tls);
}

ConnectionStream::executor_type ConnectionStream::get_executor() {
  if (tls_) return tls_->get_executor();
  if (tcp_) return tcp_->get_executor();
  return unix_->get_executor();
}

int ConnectionStream::native_handle() {
  if (tls_) return tls_->lowest_layer().native_handle();
  if (tcp_) return tcp_->native_handle();
  return unix_->native_handle();
}

asio::awaitable<std::string> ConnectionStream::handshake(std::chrono::milliseconds timeout) {
  if (!tls_) co_return std::string();
  asio::steady_timer timer(get_executor(), timeout);
  auto r = co_await (tls_->async_handshake(Tls::server, use_nothrow) || timer.async_wait(use_nothrow));
  if (r.index() == 1) co_return fmt::format("not completed within {} ms", timeout.count());
  const auto [ec] = std::get<0>(r);
  co_return ec ? ec.message() : std::string();
}

std::size_t ConnectionStream::try_read(asio::mutable_buffer buffer, boost::system::error_code& ec) {
  if (!non_blocking_) {
    if (tcp_) {
      tcp_->non_blocking(true, ec);
    } else {
      unix_->non_blocking(true, ec);
    }
    if (ec) return 0;
    non_blocking_ = true;
  }
  return tcp_ ? tcp_->read_some(buffer, ec) : unix_->read_some(buffer, ec);
}

bool ConnectionStream::peer_gone() {
  // A peer that shut down only its write side leaves us readable with EOF; a peer that closed
  // (or died) also sets POLLHUP on a Unix socket, and POLLHUP/POLLERR on TCP after a reset.
  pollfd p{native_handle(), POLLOUT, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

void ConnectionStream::shutdown_receive() {
  boost::system::error_code ignored;
  if (tls_) {
    tls_->lowest_layer().shutdown(Tcp::shutdown_receive, ignored);
  } else if (tcp_) {
    tcp_->shutdown(Tcp::shutdown_receive, ignored);
  } else {
    unix_->shutdown(Unix::shutdown_receive, ignored);
  }
}

void ConnectionStream::close() {
  boost::system::error_code ignored;
  if (tls_) {
    tls_->lowest_layer().close(ignored);
  } else if (tcp_) {
    tcp_->close(ignored);
  } else {
    unix_->close(ignored);
  }
}

}  // namespace drover::supervisor
