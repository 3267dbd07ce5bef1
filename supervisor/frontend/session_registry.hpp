// SessionRegistry: the live ClientSessions of one JSON-RPC listener (Asio's
// `connection_manager`), shared by the Unix-socket Listener and the TcpListener: it enforces
// server.max_connections at accept, creates and starts sessions, and reaches every session at
// shutdown. Supervisor thread only.
#pragma once

#include <memory>
#include <string_view>
#include <unordered_map>

#include "supervisor/frontend/client_session.hpp"

namespace drover::supervisor {

class RequestHandler;

class SessionRegistry {
 public:
  SessionRegistry(RequestHandler& handler, bool admin, std::size_t max_connections,
                  const ClientSession::Limits& limits)
      : handler_(handler), admin_(admin), max_connections_(max_connections), limits_(limits) {}

  // Whether max_connections is reached. When it is, logs a warning naming `where` and, if
  // `explain`, tells the client why (best effort, never blocking: one NDJSON -32001 line on
  // `fd`, since the client has not said which framing it speaks; not over TLS, where plain
  // bytes would be garbage). The caller then closes the connection.
  bool full(int fd, bool explain, std::string_view where) const;
  // Starts a session on an accepted connection.
  void open(ConnectionStream stream);

  std::size_t size() const { return sessions_.size(); }
  // Bytes accepted for these clients and not yet written (stream flow metrics).
  struct Buffered {
    std::size_t total = 0;
    std::size_t max = 0;     // the largest single connection's
    int coalescing = 0;      // connections coalescing their stream chunks
  };
  Buffered buffered() const;
  // Answers every unfinished call of every session with `code`, then closes each session once
  // its replies are written.
  void end_sessions(RpcError code);
  // Closes every live session now.
  void close_all();

 private:
  RequestHandler& handler_;
  bool admin_;
  std::size_t max_connections_;
  ClientSession::Limits limits_;
  std::unordered_map<ClientSession*, std::shared_ptr<ClientSession>> sessions_;
};

}  // namespace drover::supervisor
