// OpenAiSession: one HTTP/1.1 connection of the OpenAI-compatible API (Asio's `connection`).
// Reads requests with Boost.Beast's parser, one at a time (keep-alive; a pipelined request
// waits in the buffer until the previous response is written), answers
//   GET  /v1/models, GET /v1/models/{id}
//   POST /v1/completions, POST /v1/chat/completions   (through an OpenAiExchange)
// and writes responses and Server-Sent Events through one ordered WriteQueue.
//
// Limits, as the JSON-RPC client socket's: between requests a connection may idle for
// server.idle_timeout_ms; a request begun must arrive whole within
// server.partial_message_timeout_ms (408, then closed); a body past openai.max_body_bytes gets
// 413 and the connection is closed (what follows cannot be framed).
//
// Disconnects: while a request is being answered the session watches its socket; end of input
// or an error (the client went away) cancels the exchange's calls at their workers. A write
// that fails does the same.
//
// Shared-owned by the OpenAiServer's registry and its own coroutines; supervisor thread only.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/async_util.hpp"
#include "common/config.hpp"
#include "common/log.hpp"
#include "proto/openai_request.hpp"
#include "supervisor/frontend/connection_stream.hpp"
#include "supervisor/frontend/stream_flow.hpp"

namespace drover::supervisor {

class OpenAiExchange;
class RequestHandler;
class WorkerPool;

class OpenAiSession : public std::enable_shared_from_this<OpenAiSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  // What every session of one server shares.
  struct Context {
    const Config& config;
    RequestHandler& handler;
    WorkerPool& pool;
    std::vector<std::string> api_keys;  // empty: no authentication
    std::int64_t created = 0;           // droverd's start (Unix s), the models' `created`
    std::uint64_t next_response = 0;    // response ids
    // The client sockets' stream counters (refusals count in slow_consumer_cancels_total).
    StreamFlow::Counters* stream_totals = nullptr;
    std::shared_ptr<spdlog::logger> log;
  };

  // `stream`: TCP, or TLS (openai.tls) which handshakes first within
  // handshake_timeout(server.partial_message_timeout_ms).
  OpenAiSession(ConnectionStream stream, Context& context,
                std::function<void(OpenAiSession*)> on_closed);

  void start();
  // Closes now: cancels the exchange in progress, drops unwritten output.
  void close();

 private:
  asio::awaitable<void> serve();
  asio::awaitable<void> write_loop();
  // Reads one request into `request`; false when the connection is to close (answered with
  // an error first where HTTP allows).
  asio::awaitable<bool> read_request(Request& request);
  // Waits until the exchange has written its response, or the client goes away.
  asio::awaitable<void> wait_for_exchange();
  void handle(const Request& request);
  void handle_generate(const Request& request, proto::openai::Endpoint endpoint);
  void handle_models(std::string_view id);
  bool authorized(const Request& request) const;

  // Writes a whole response: status line, headers and a JSON body.
  void respond(int status, std::string_view body,
               std::optional<std::int64_t> retry_after_s = std::nullopt);
  void respond_error(int status, std::string message, std::string_view type,
                     std::string_view param = {}, std::string_view code = {});
  void begin_stream();
  bool stream_events(std::string&& events);
  void end_stream(std::string&& last_events);
  void write_events(std::string&& events);  // framed as one HTTP chunk when chunked
  void exchange_done();

  ConnectionStream stream_;
  Context& ctx_;
  boost::beast::flat_buffer buffer_;
  WriteQueue<ConnectionStream> writer_;
  asio::steady_timer done_timer_;  // cancelled when the exchange in progress has answered
  std::shared_ptr<OpenAiExchange> exchange_;
  // The request being answered: its HTTP version and whether the connection stays open.
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool chunked_ = false;  // the stream in progress uses chunked transfer encoding
  std::function<void(OpenAiSession*)> on_closed_;
  bool closed_ = false;
};

}  // namespace drover::supervisor
