#include "supervisor/frontend/tcp_listener.hpp"

#include <boost/asio/steady_timer.hpp>

#include "common/listen_endpoint.hpp"
#include "common/log.hpp"

namespace drover::supervisor {
using tcp = asio::ip::tcp;

TcpListener::TcpListener(asio::io_context& io, Options options, RequestHandler& handler)
    : io_(io),
      opt_(std::move(options)),
      acceptor_(open_tcp_listener(io, opt_.listen, "server.tcp_listen")),
      sessions_(handler, /*admin=*/false, opt_.max_connections, opt_.session) {}

TcpListener::~TcpListener() {
  stop_accepting();
  close_all();
}

tcp::endpoint TcpListener::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void TcpListener::start() {
  component_logger("frontend")
      ->info("JSON-RPC on {}://{}{}", opt_.tls ? "tls" : "tcp", endpoint_text(local_endpoint()),
             !opt_.tls ? "" : opt_.mutual_tls ? " (client certificates required)" : "");
  spawn(io_, accept_loop());
}

void TcpListener::stop_accepting() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

asio::awaitable<void> TcpListener::accept_loop() {
  auto log = component_logger("frontend");
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      // EMFILE and friends: log, back off briefly, keep the listener alive.
      log->error("accept on {} failed: {}", opt_.listen, ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    if (sessions_.full(socket.native_handle(), /*explain=*/!opt_.tls, opt_.listen)) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    if (opt_.tls) {
      sessions_.open(ConnectionStream(std::move(socket), *opt_.tls));
    } else {
      sessions_.open(ConnectionStream(std::move(socket)));
    }
  }
}

}  // namespace drover::supervisor
