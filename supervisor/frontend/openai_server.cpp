#include "supervisor/frontend/openai_server.hpp"

#include <fmt/format.h>

#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <fstream>
#include <stdexcept>

#include "common/listen_endpoint.hpp"
#include "common/tls_context.hpp"
#include "supervisor/frontend/request_handler.hpp"

namespace drover::supervisor {
using tcp = asio::ip::tcp;

namespace {

// api_keys and the lines of api_keys_file (blank lines and # comments skipped).
std::vector<std::string> load_keys(const OpenAiConfig& c) {
  std::vector<std::string> keys = c.api_keys;
  if (c.api_keys_file.empty()) return keys;
  std::ifstream in(c.api_keys_file);
  if (!in) throw std::runtime_error(fmt::format("openai.api_keys_file: cannot read '{}'", c.api_keys_file));
  std::size_t found = 0;
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    keys.push_back(line.substr(first, last - first + 1));
    ++found;
  }
  if (found == 0) {
    throw std::runtime_error(fmt::format("openai.api_keys_file: '{}' holds no key", c.api_keys_file));
  }
  return keys;
}

}  // namespace

OpenAiServer::OpenAiServer(asio::io_context& io, const Config& config, RequestHandler& handler,
                           WorkerPool& pool, StreamFlow::Counters* stream_totals)
    : io_(io),
      context_{config,
               handler,
               pool,
               load_keys(config.openai),
               std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count(),
               0,
               stream_totals,
               component_logger("openai")},
      acceptor_(open_tcp_listener(io, config.openai.listen, "openai.listen")),
      tls_(config.openai.tls.enabled() ? make_tls_server_context(config.openai.tls, "openai.tls")
                                       : nullptr),
      log_(context_.log) {}

OpenAiServer::~OpenAiServer() { stop(); }

tcp::endpoint OpenAiServer::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void OpenAiServer::start() {
  log_->info("OpenAI-compatible API on {}://{}/v1 ({}{})", tls_ ? "https" : "http",
             endpoint_text(local_endpoint()),
             tls_ && !context_.config.openai.tls.client_ca_file.empty()
                 ? "client certificates required, "
                 : "",
             context_.api_keys.empty() ? "no authentication"
                                       : fmt::format("{} API keys", context_.api_keys.size()));
  spawn(io_, accept_loop());
}

void OpenAiServer::stop_accepting() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

void OpenAiServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_accepting();
  auto sessions = std::exchange(sessions_, {});
  for (auto& [ptr, s] : sessions) s->close();
}

asio::awaitable<void> OpenAiServer::accept_loop() {
  while (!stopped_ && acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
    if (stopped_ || ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      // EMFILE and friends: log, pause briefly, keep the endpoint alive.
      log_->error("accept failed: {}", ec.message());
      asio::steady_timer pause(io_, Millis(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    if (sessions_.size() >= context_.config.server.max_connections) {
      log_->warn("refusing HTTP connection: server.max_connections={} reached",
                 context_.config.server.max_connections);
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    auto session = std::make_shared<OpenAiSession>(
        tls_ ? ConnectionStream(std::move(socket), *tls_) : ConnectionStream(std::move(socket)),
        context_, [this](OpenAiSession* s) { sessions_.erase(s); });
    sessions_.emplace(session.get(), session);
    session->start();
  }
}

}  // namespace drover::supervisor
