// OpenAiServer: the OpenAI-compatible HTTP API's listener (shared/DESIGN.md section 4b,
// docs/OPENAI.md) on openai.listen, on droverd's io_context. Accepts TCP connections (at most
// server.max_connections at once; more are closed at accept with a warning) and runs one
// OpenAiSession per connection; stop() closes the acceptor and every session (their calls are
// cancelled at the workers).
//
// With openai.tls the API is served over HTTPS (TLS 1.2+, mutual TLS with a client_ca_file;
// common/tls_context.hpp), the log line then says https://.
//
// Start-up checks (control plane, so they throw std::runtime_error naming the key): listen
// must bind; the TLS files must load; api_keys_file must be readable and hold at least one key. The keys of api_keys and
// api_keys_file together are the accepted Bearer tokens; none means no authentication (the
// config refuses that on a non-loopback address unless openai.allow_unauthenticated).
//
// Owned by the Supervisor; supervisor thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/config.hpp"
#include "supervisor/frontend/openai_session.hpp"

namespace drover::supervisor {

class RequestHandler;
class WorkerPool;

class OpenAiServer {
 public:
  // `config` (the live configuration), `handler` and `pool` must outlive the server.
  // `stream_totals`: the client sockets' stream counters, shared (may be null).
  OpenAiServer(asio::io_context& io, const Config& config, RequestHandler& handler,
               WorkerPool& pool, StreamFlow::Counters* stream_totals = nullptr);
  ~OpenAiServer();
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  void start();
  // Stops accepting; sessions finish what they are answering (draining).
  void stop_accepting();
  // Closes the acceptor and every session. Idempotent.
  void stop();
  // The bound address (the real port when listen asked for port 0).
  asio::ip::tcp::endpoint local_endpoint() const;
  std::size_t sessions() const { return sessions_.size(); }

 private:
  asio::awaitable<void> accept_loop();

  asio::io_context& io_;
  OpenAiSession::Context context_;
  asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<asio::ssl::context> tls_;  // openai.tls; null: plain HTTP
  std::unordered_map<OpenAiSession*, std::shared_ptr<OpenAiSession>> sessions_;
  bool stopped_ = false;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
