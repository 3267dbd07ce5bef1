#include "supervisor/admin/http_server.hpp"

#include <fmt/format.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <stdexcept>
#include <unordered_map>

#include "common/async_util.hpp"
#include "common/config.hpp"
#include "common/listen_endpoint.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "supervisor/version.hpp"

namespace drover::supervisor {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

using Clock = std::chrono::steady_clock;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";


Response make_response(const Request& req, http::status status, std::string_view content_type,
                       std::string body) {
  Response res{status, req.version()};
  res.set(http::field::server, fmt::format("droverd/{}", kVersion));
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

// A response to a request that could not be read; the connection closes after it.
Response error_response(http::status status, std::string body) {
  Response res{status, 11};
  res.set(http::field::server, fmt::format("droverd/{}", kVersion));
  res.set(http::field::content_type, kTextPlain);
  res.body() = std::move(body);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

}  // namespace

struct HttpServer::State : std::enable_shared_from_this<State> {
  struct Connection {
    explicit Connection(tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    // Waiting for a request (evictable), since `waiting_since`; false while one is answered.
    bool waiting = true;
    Clock::time_point waiting_since = Clock::now();
  };

  State(asio::io_context& io, Endpoints e) : io(io), acceptor(io), endpoints(std::move(e)) {}

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::shared_ptr<Connection> c);
  // Closes the connection that has waited longest for a request; false when none is waiting.
  bool evict_idle();
  Response route(const Request& req);

  asio::io_context& io;
  tcp::acceptor acceptor;
  Endpoints endpoints;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections;
  bool stopped = false;
  std::shared_ptr<spdlog::logger> log = component_logger("http");
};

HttpServer::HttpServer(asio::io_context& io, const std::string& listen, Endpoints endpoints)
    : state_(std::make_shared<State>(io, std::move(endpoints))) {
  const tcp::endpoint ep = resolve_listen_endpoint(io, listen, "metrics.listen");
  auto& a = state_->acceptor;
  boost::system::error_code ec;
  a.open(ep.protocol(), ec);
  // SO_REUSEADDR: a restarted droverd may bind while old connections sit in TIME_WAIT.
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen, ec.message()));
}

HttpServer::~HttpServer() { stop(); }

tcp::endpoint HttpServer::local_endpoint() const {
  boost::system::error_code ec;
  return state_->acceptor.local_endpoint(ec);
}

void HttpServer::start() {
  state_->log->info("metrics and probes on http://{} (/metrics, /healthz, /readyz)",
                    endpoint_text(local_endpoint()));
  spawn(state_->io, state_->accept_loop());
}

void HttpServer::stop() {
  auto& s = *state_;
  if (s.stopped) return;
  s.stopped = true;
  boost::system::error_code ignored;
  s.acceptor.close(ignored);
  for (auto& [ptr, c] : std::exchange(s.connections, {})) c->stream.close();
}

asio::awaitable<void> HttpServer::State::accept_loop() {
  auto self = shared_from_this();
  while (!stopped) {
    auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
    if (stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: log, pause briefly, keep the endpoint alive.
      log->error("accept failed: {}", ec.message());
      asio::steady_timer pause(io, Millis(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    if (connections.size() >= kMaxConnections && !evict_idle()) {
      log->warn("refusing HTTP connection: {} connections open, all answering", connections.size());
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    auto c = std::make_shared<Connection>(std::move(socket));
    connections.emplace(c.get(), c);
    spawn(io, serve(std::move(c)));
  }
}

bool HttpServer::State::evict_idle() {
  Connection* oldest = nullptr;
  for (const auto& [ptr, c] : connections) {
    if (c->waiting && (oldest == nullptr || c->waiting_since < oldest->waiting_since)) oldest = ptr;
  }
  if (oldest == nullptr) return false;
  const auto it = connections.find(oldest);
  log->warn("evicted idle HTTP connection (waiting {} ms for a request) to admit a new one: {} "
            "connections open",
            std::chrono::duration_cast<Millis>(Clock::now() - oldest->waiting_since).count(),
            connections.size());
  // Its coroutine wakes with an error and ends; it holds its own reference, so erasing here
  // frees the slot at once and its later erase() finds nothing.
  it->second->stream.close();
  connections.erase(it);
  return true;
}

asio::awaitable<void> HttpServer::State::serve(std::shared_ptr<Connection> c) {
  auto self = shared_from_this();
  // Bounded: the parser limits apply first; this only caps what one read may buffer ahead.
  beast::flat_buffer buffer(64 * 1024);
  for (bool first = true;; first = false) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(kMaxHeaderBytes));
    parser.body_limit(kMaxBodyBytes);
    c->waiting = true;
    c->waiting_since = Clock::now();
    boost::system::error_code ec;
    if (!first && buffer.size() == 0) {
      // Keep-alive idle: wait up to kIdleTimeout for the next request's first bytes.
      c->stream.expires_after(kIdleTimeout);
      auto [rec, n] = co_await c->stream.async_read_some(buffer.prepare(4096), use_nothrow);
      buffer.commit(n);
      ec = rec;
    }
    if (!ec) {
      // The rest of the request (a new connection's whole first one) within kHeaderTimeout.
      c->stream.expires_after(kHeaderTimeout);
      auto [rec, unused] = co_await http::async_read(c->stream, buffer, parser, use_nothrow);
      ec = rec;
    }
    if (stopped) co_return;
    c->waiting = false;
    if (ec) {
      std::optional<Response> refusal;
      if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
        refusal = error_response(http::status::request_header_fields_too_large,
                                 "request header too large\n");
      } else if (ec == http::error::body_limit) {
        refusal = error_response(http::status::payload_too_large, "request body too large\n");
      } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
                 ec != http::error::end_of_stream && ec != http::error::partial_message) {
        // Not HTTP: bad method, version, target, field or chunk syntax.
        refusal = error_response(http::status::bad_request, "malformed request\n");
      }
      if (refusal) {
        c->stream.expires_after(kWriteTimeout);
        co_await http::async_write(c->stream, *refusal, use_nothrow);
      }
      break;
    }
    Request req = parser.release();
    Response res = route(req);
    c->stream.expires_after(kWriteTimeout);
    if (req.method() == http::verb::head) {
      http::response_serializer<http::string_body> sr{res};
      auto [wec, wn] = co_await http::async_write_header(c->stream, sr, use_nothrow);
      ec = wec;
    } else {
      auto [wec, wn] = co_await http::async_write(c->stream, res, use_nothrow);
      ec = wec;
    }
    if (ec || stopped || !res.keep_alive()) break;
  }
  if (!stopped) {
    boost::system::error_code ignored;
    c->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    c->stream.close();
    connections.erase(c.get());
  }
}

Response HttpServer::State::route(const Request& req) {
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  const bool known = target == "/metrics" || target == "/healthz" || target == "/readyz";
  if (!known) return make_response(req, http::status::not_found, kTextPlain, "not found\n");
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    Response res =
        make_response(req, http::status::method_not_allowed, kTextPlain, "method not allowed\n");
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  if (target == "/metrics") {
    return make_response(req, http::status::ok, metrics::kContentType, endpoints.metrics());
  }
  if (target == "/healthz") return make_response(req, http::status::ok, kTextPlain, "ok\n");
  const Readiness r = endpoints.ready();
  return make_response(req, r.ready ? http::status::ok : http::status::service_unavailable,
                       kTextPlain, r.detail + "\n");
}

}  // namespace drover::supervisor
