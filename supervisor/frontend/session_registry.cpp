#include "supervisor/frontend/session_registry.hpp"

#include <sys/socket.h>

#include <algorithm>

#include "common/log.hpp"
#include "proto/jsonrpc.hpp"

namespace drover::supervisor {

bool SessionRegistry::full(int fd, bool explain, std::string_view where) const {
  if (sessions_.size() < max_connections_) return false;
  component_logger("frontend")
      ->warn("refusing connection on {}: server.max_connections={} reached", where, max_connections_);
  if (explain) {
    const std::string why =
        proto::make_error(proto::kNullId, RpcError::overloaded, {},
                          proto::json{{"reason", "max_connections"},
                                      {"limit", max_connections_},
                                      {"retry_after_ms", 100}}) +
        "\n";
    [[maybe_unused]] const auto sent = ::send(fd, why.data(), why.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  return true;
}

void SessionRegistry::open(ConnectionStream stream) {
  auto session = std::make_shared<ClientSession>(
      std::move(stream), handler_, admin_, limits_,
      [this](ClientSession* s) { sessions_.erase(s); });
  sessions_.emplace(session.get(), session);
  session->start();
}

SessionRegistry::Buffered SessionRegistry::buffered() const {
  Buffered b;
  for (const auto& [ptr, session] : sessions_) {
    const std::size_t n = session->buffered_bytes();
    b.total += n;
    b.max = std::max(b.max, n);
    b.coalescing += session->coalescing() ? 1 : 0;
  }
  return b;
}

void SessionRegistry::end_sessions(RpcError code) {
  // Copy: a session may close (and unregister) while being ended.
  auto sessions = sessions_;
  for (auto& [ptr, s] : sessions) s->end(code);
}

void SessionRegistry::close_all() {
  auto sessions = std::exchange(sessions_, {});
  for (auto& [ptr, s] : sessions) s->close();
}

}  // namespace drover::supervisor
