// TcpListener: JSON-RPC over TCP, optionally TLS (server.tcp_listen, server.tls; docs/API.md
// "Addresses", docs/SECURITY.md "TCP and TLS"). The same sessions as the Unix client socket —
// framing detection, limits, admission, pipeline — with client methods only: its sessions are
// never admin sessions, so admin methods answer -32008 as on the client socket.
//
// Binds at construction (throws std::runtime_error naming server.tcp_listen when it cannot);
// start() logs the bound address as `JSON-RPC on tcp://HOST:PORT` or `tls://HOST:PORT`, so
// a listen port 0 can be read back. Connections past server.max_connections are closed at
// accept (a plain TCP client first gets the -32001 line the Unix socket sends). TLS sessions
// handshake inside their own coroutine, bounded by handshake_timeout(), and count towards
// max_connections from accept on. Supervisor thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

#include "supervisor/frontend/session_registry.hpp"

namespace drover::supervisor {

class TcpListener {
 public:
  struct Options {
    std::string listen;  // host:port
    // Null: plain TCP. Otherwise every connection is TLS with this server context.
    std::shared_ptr<asio::ssl::context> tls;
    bool mutual_tls = false;  // for the log line
    std::size_t max_connections = 4096;
    ClientSession::Limits session;
  };

  TcpListener(asio::io_context& io, Options options, RequestHandler& handler);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  void start();
  // Stops accepting (drain); live sessions continue.
  void stop_accepting();
  void close_all() { sessions_.close_all(); }
  void end_sessions(RpcError code) { sessions_.end_sessions(code); }
  std::size_t sessions() const { return sessions_.size(); }
  SessionRegistry::Buffered buffered() const { return sessions_.buffered(); }
  // The bound address (the real port when listen asked for port 0).
  asio::ip::tcp::endpoint local_endpoint() const;

 private:
  asio::awaitable<void> accept_loop();

  asio::io_context& io_;
  Options opt_;
  asio::ip::tcp::acceptor acceptor_;
  SessionRegistry sessions_;
};

}  // namespace drover::supervisor
