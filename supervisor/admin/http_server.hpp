// HttpServer: droverd's operator endpoints over HTTP/1.1 (Boost.Beast), on metrics.listen:
//   GET /metrics  the Prometheus text exposition (format 0.0.4)
//   GET /healthz  200 "ok" while the process runs (liveness: the event loop answers)
//   GET /readyz   200 while Endpoints::ready says so (at least one worker ready, not draining),
//                 503 with the reason otherwise (readiness)
// HEAD is answered like GET without the body; other methods get 405, other paths 404.
//
// Connections are keep-alive, one coroutine each, bounded: at most kMaxConnections at once,
// request headers up to kMaxHeaderBytes (431 beyond) and bodies up to kMaxBodyBytes (413
// beyond). A request must arrive whole within kHeaderTimeout of its first byte (of the accept,
// for a connection's first request); between requests a keep-alive connection may idle for
// kIdleTimeout; one that cannot take a response within kWriteTimeout is closed. Malformed
// requests get 400 and the connection is closed.
//
// Probes must get through whatever other local users do: when every slot is taken, a new
// connection evicts the one that has waited longest for a request (reading, not writing a
// response), so 64 idle connections cannot starve /healthz. Only when every connection is
// writing a response (each bounded by kWriteTimeout) is a new one closed at accept.
//
// Ownership: the Supervisor owns the server; the server's state (acceptor, live connections,
// endpoints) is shared with its coroutines, so a coroutine that wakes after stop() or after the
// server is gone finds its socket closed and ends without touching the Supervisor. Supervisor
// thread only: the endpoint callbacks run on the io_context thread like everything else.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace drover::supervisor {

class HttpServer {
 public:
  static constexpr std::size_t kMaxConnections = 64;
  static constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
  static constexpr std::size_t kMaxBodyBytes = 1024;
  // Short: the kubelet and Prometheus send a request in one write.
  static constexpr std::chrono::seconds kHeaderTimeout{5};
  static constexpr std::chrono::seconds kIdleTimeout{30};
  static constexpr std::chrono::seconds kWriteTimeout{10};

  struct Readiness {
    bool ready = false;
    std::string detail;  // the response body, e.g. "2/2 workers ready"
  };
  struct Endpoints {
    std::function<std::string()> metrics;
    std::function<Readiness()> ready;
  };

  // Resolves and binds `listen` ("host:port", see MetricsConfig). Throws std::runtime_error
  // naming the address when it cannot (malformed, unresolvable, in use, not permitted).
  HttpServer(boost::asio::io_context& io, const std::string& listen, Endpoints endpoints);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void start();
  // Closes the acceptor and every connection. Idempotent.
  void stop();
  // The bound address (the real port when listen asked for port 0).
  boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace drover::supervisor
