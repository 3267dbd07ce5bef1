// Listener: one Unix socket that clients connect to (Asio's `server` + `connection_manager`).
// Binds safely — a stale socket file from a dead droverd is removed, a live droverd owning the
// path is refused, a non-socket file is never deleted — sets the file mode, accepts
// connections into ClientSessions and keeps the registry of live sessions so shutdown can
// reach them. Supervisor thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <sys/types.h>

#include <string>
#include <vector>

#include "common/config.hpp"
#include "supervisor/frontend/session_registry.hpp"

namespace drover::supervisor {

class RequestHandler;

// Binds and listens on `path` with `mode`, owned by `owner`:`group` (-1: unchanged, as chown(2)
// takes them). Throws std::runtime_error with the reason when the path is owned by a live
// server, is not a socket, or cannot be bound, chowned or chmodded.
asio::local::stream_protocol::acceptor bind_unix_socket(asio::io_context& io,
                                                        const std::string& path,
                                                        std::uint32_t mode,
                                                        uid_t owner = static_cast<uid_t>(-1),
                                                        gid_t group = static_cast<gid_t>(-1));

class Listener {
 public:
  struct Options {
    std::string path;
    std::uint32_t mode = 0660;
    // Owner and group of the socket file (-1: droverd's): server.socket_group, and the user
    // droverd drops to, so it can still remove the file at exit.
    uid_t owner = static_cast<uid_t>(-1);
    gid_t group = static_cast<gid_t>(-1);
    bool admin = false;
    // Admin listener only: peer uids accepted (SO_PEERCRED) besides our own uid and root.
    std::vector<std::uint32_t> allowed_uids;
    std::size_t max_connections = 4096;
    ClientSession::Limits session;
  };

  // Binds at once (throws on failure, see bind_unix_socket).
  Listener(asio::io_context& io, Options options, RequestHandler& handler);
  ~Listener();

  void start();
  // Stops accepting and removes the socket file (a failure, e.g. EACCES after the privilege
  // drop in a directory droverd's user cannot write, is logged; the next start replaces the
  // file as stale); live sessions continue.
  void stop_accepting();
  // Closes every live session now.
  void close_all() { sessions_.close_all(); }
  // Answers every unfinished call of every session with `code`, then closes each session once
  // its replies are written.
  void end_sessions(RpcError code) { sessions_.end_sessions(code); }
  std::size_t sessions() const { return sessions_.size(); }
  // Bytes accepted for this listener's clients and not yet written (stream flow metrics).
  using Buffered = SessionRegistry::Buffered;
  Buffered buffered() const { return sessions_.buffered(); }
  const std::string& path() const { return opt_.path; }

 private:
  asio::awaitable<void> accept_loop();
  // SO_PEERCRED check of an admin connection; closes it (and logs) when refused.
  bool peer_allowed(asio::local::stream_protocol::socket& socket);

  asio::io_context& io_;
  Options opt_;
  asio::local::stream_protocol::acceptor acceptor_;
  SessionRegistry sessions_;
  bool accepting_ = false;
};

}  // namespace drover::supervisor
