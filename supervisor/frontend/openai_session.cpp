#include "supervisor/frontend/openai_session.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <cerrno>
#include <chrono>
#include <tuple>

#include "proto/openai_response.hpp"
#include "supervisor/frontend/chat_template.hpp"
#include "supervisor/frontend/openai_exchange.hpp"
#include "supervisor/frontend/request_handler.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {
namespace http = boost::beast::http;
namespace oa = proto::openai;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::size_t kMaxHeaderBytes = 16 * 1024;

// Compares in time that depends on the lengths only, so a key cannot be guessed byte by byte.
bool same_key(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

OpenAiSession::OpenAiSession(ConnectionStream stream, Context& context,
                             std::function<void(OpenAiSession*)> on_closed)
    : stream_(std::move(stream)),
      ctx_(context),
      buffer_(64 * 1024),
      writer_(stream_),
      done_timer_(stream_.get_executor(), asio::steady_timer::time_point::max()),
      on_closed_(std::move(on_closed)) {}

void OpenAiSession::start() {
  // (ConnectionStream turns Nagle off: SSE events leave at once.)
  spawn(stream_.get_executor(), write_loop());
  spawn(stream_.get_executor(), serve());
}

asio::awaitable<void> OpenAiSession::write_loop() {
  auto self = shared_from_this();
  const auto ec = co_await writer_.run();
  if (ec) close();
}

asio::awaitable<void> OpenAiSession::serve() {
  auto self = shared_from_this();
  if (stream_.tls()) {
    const std::string failed =
        co_await stream_.handshake(handshake_timeout(ctx_.config.server.partial_message_timeout));
    if (closed_) co_return;
    if (!failed.empty()) {
      ctx_.log->info("TLS handshake failed: {}", failed);
      close();
      co_return;
    }
  }
  while (!closed_) {
    Request request;
    if (!co_await read_request(request)) break;
    handle(request);
    if (exchange_) {
      co_await wait_for_exchange();
      exchange_.reset();
    }
    if (!keep_alive_) break;
  }
  if (closed_) co_return;
  // Close once the last response is written.
  writer_.on_drained([this] { close(); });
  if (writer_.idle()) close();
}

asio::awaitable<bool> OpenAiSession::read_request(Request& request) {
  const auto& server = ctx_.config.server;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(kMaxHeaderBytes));
  parser.body_limit(ctx_.config.openai.max_body_bytes);
  asio::steady_timer timer(stream_.get_executor());
  boost::system::error_code ec;
  if (buffer_.size() == 0) {
    // Between requests (and before the first): up to idle_timeout (0: no limit) for the first
    // bytes; the partial-message clock starts with them.
    std::size_t n = 0;
    if (server.idle_timeout.count() > 0) {
      timer.expires_after(server.idle_timeout);
      auto r = co_await (stream_.async_read_some(buffer_.prepare(4096), use_nothrow) ||
                         timer.async_wait(use_nothrow));
      if (r.index() == 1) co_return false;  // idle: closed quietly, as keep-alive allows
      std::tie(ec, n) = std::get<0>(r);
    } else {
      std::tie(ec, n) = co_await stream_.async_read_some(buffer_.prepare(4096), use_nothrow);
    }
    buffer_.commit(n);
    if (ec) co_return false;
  }
  if (server.partial_message_timeout.count() > 0) {
    timer.expires_after(server.partial_message_timeout);
    auto r = co_await (http::async_read(stream_, buffer_, parser, use_nothrow) ||
                       timer.async_wait(use_nothrow));
    if (r.index() == 1) {
      keep_alive_ = false;
      respond_error(408, fmt::format("request not completed within partial_message_timeout_ms={}",
                                     server.partial_message_timeout.count()),
                    "invalid_request_error");
      co_return false;
    }
    ec = std::get<0>(std::get<0>(r));
  } else {
    auto [rec, n] = co_await http::async_read(stream_, buffer_, parser, use_nothrow);
    ec = rec;
  }
  if (closed_) co_return false;
  if (ec) {
    keep_alive_ = false;
    if (ec == http::error::body_limit) {
      respond_error(413,
                    fmt::format("request body larger than openai.max_body_bytes={}",
                                ctx_.config.openai.max_body_bytes),
                    "invalid_request_error", {}, "request_too_large");
    } else if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      respond_error(431, "request header too large", "invalid_request_error");
    } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      respond_error(400, "malformed HTTP request: " + ec.message(), "invalid_request_error");
    }
    co_return false;
  }
  request = parser.release();
  version_ = request.version();
  keep_alive_ = request.keep_alive();
  co_return true;
}

asio::awaitable<void> OpenAiSession::wait_for_exchange() {
  // Watch for the client going away only while nothing of its next request has arrived
  // (bytes of a pipelined request make the socket readable without meaning anything).
  bool watch = buffer_.size() == 0;
  while (!closed_ && exchange_ && !exchange_->finished()) {
    if (!watch) {
      co_await done_timer_.async_wait(use_nothrow);
      continue;
    }
    auto r = co_await (done_timer_.async_wait(use_nothrow) ||
                       stream_.async_wait_readable(use_nothrow));
    if (r.index() == 0 || closed_) continue;
    const auto [ec] = std::get<1>(r);
    char byte;
    const ssize_t n = ec ? -1 : ::recv(stream_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
      watch = false;  // a pipelined request: read after this response
      continue;
    }
    if (n < 0 && !ec && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    ctx_.log->debug("client went away during a request; cancelling its work");
    close();
  }
}

bool OpenAiSession::authorized(const Request& request) const {
  if (ctx_.api_keys.empty()) return true;
  const auto it = request.find(http::field::authorization);
  if (it == request.end()) return false;
  std::string_view value = it->value();
  constexpr std::string_view kBearer = "Bearer ";
  if (value.size() <= kBearer.size() || !value.starts_with(kBearer)) return false;
  value.remove_prefix(kBearer.size());
  bool match = false;
  for (const auto& key : ctx_.api_keys) match |= same_key(value, key);
  return match;
}

void OpenAiSession::handle(const Request& request) {
  std::string_view target = request.target();
  target = target.substr(0, target.find('?'));
  const bool post = request.method() == http::verb::post;
  const bool get = request.method() == http::verb::get;
  constexpr std::string_view kModels = "/v1/models";
  const bool completions = target == "/v1/completions";
  const bool chat = target == "/v1/chat/completions";
  const bool models = target == kModels || target.starts_with("/v1/models/");
  if (!completions && !chat && !models) {
    return respond_error(404, fmt::format("no route {} {}", std::string_view(request.method_string()), target),
                         "invalid_request_error", {}, "unknown_url");
  }
  if (!authorized(request)) {
    return respond_error(401,
                         "missing or wrong API key: send the header 'Authorization: Bearer KEY' "
                         "with a key of openai.api_keys",
                         "invalid_request_error", {}, "invalid_api_key");
  }
  if ((models && !get) || (!models && !post)) {
    return respond_error(405, fmt::format("{} takes {}", target, models ? "GET" : "POST"),
                         "invalid_request_error", {}, "method_not_allowed");
  }
  if (models) {
    return handle_models(target.size() > kModels.size() ? target.substr(kModels.size() + 1)
                                                        : std::string_view());
  }
  handle_generate(request, chat ? oa::Endpoint::chat : oa::Endpoint::completions);
}

void OpenAiSession::handle_models(std::string_view id) {
  std::vector<std::string> ids;
  // Control plane: the pool's listing is a tree (models.list's result).
  const proto::json listing = ctx_.pool.models_list();
  for (const auto& m : listing["models"]) ids.push_back(m["id"].get<std::string>());
  if (id.empty()) return respond(200, oa::encode_model_list(ids, ctx_.created));
  for (const auto& known : ids) {
    if (known == id) return respond(200, oa::encode_model(id, ctx_.created));
  }
  respond_error(404, fmt::format("the model '{}' does not exist", id), "invalid_request_error",
                "model", "model_not_found");
}

void OpenAiSession::handle_generate(const Request& request, oa::Endpoint endpoint) {
  auto parsed = oa::parse_request(endpoint, request.body());
  if (!parsed) {
    const auto& e = parsed.error();
    return respond_error(e.status, e.message, e.type, e.param, e.code);
  }
  oa::Request& r = *parsed;
  proto::GenerateParams& params = r.params;
  if (const auto it = request.find("X-Drover-Priority"); it != request.end()) {
    const std::string_view p = it->value();
    if (p == "high") {
      params.priority = proto::Priority::high;
    } else if (p == "low") {
      params.priority = proto::Priority::low;
    } else if (p != "normal") {
      return respond_error(400, "header X-Drover-Priority must be high, normal or low",
                           "invalid_request_error", "X-Drover-Priority");
    }
  }
  if (const auto it = request.find(http::field::cache_control); it != request.end()) {
    const std::string_view v = it->value();
    if (v.find("no-cache") != std::string_view::npos || v.find("no-store") != std::string_view::npos) {
      params.cache = proto::CacheMode::bypass;
    }
  }
  std::vector<std::string> prompts = std::move(r.prompts);
  if (endpoint == oa::Endpoint::chat) {
    prompts = {render_chat(chat_template_for(ctx_.config, params.model), r.messages)};
  }
  oa::ResponseHead head{endpoint,
                        fmt::format("{}-drover{:x}", endpoint == oa::Endpoint::chat ? "chatcmpl" : "cmpl",
                                    ++ctx_.next_response),
                        unix_now(), params.model};
  std::weak_ptr<OpenAiSession> weak = weak_from_this();
  OpenAiExchange::Output out;
  out.respond = [weak](int status, std::string&& body, std::optional<std::int64_t> retry_after) {
    if (auto s = weak.lock()) s->respond(status, body, retry_after);
  };
  out.begin_stream = [weak] {
    if (auto s = weak.lock()) s->begin_stream();
  };
  out.stream_events = [weak](std::string&& events) {
    auto s = weak.lock();
    return s ? s->stream_events(std::move(events)) : true;
  };
  out.end_stream = [weak](std::string&& last_events) {
    if (auto s = weak.lock()) s->end_stream(std::move(last_events));
  };
  exchange_ = std::make_shared<OpenAiExchange>(ctx_.handler, std::move(head), params.stream,
                                               r.include_usage, std::move(out));
  exchange_->start(params, prompts);
}

void OpenAiSession::respond(int status, std::string_view body,
                            std::optional<std::int64_t> retry_after_s) {
  if (closed_) return;
  std::string out = fmt::format(
      "HTTP/{}.{} {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
      version_ / 10, version_ % 10, status,
      std::string_view(http::obsolete_reason(static_cast<http::status>(status))), body.size());
  if (retry_after_s) out += fmt::format("Retry-After: {}\r\n", *retry_after_s);
  if (!keep_alive_) {
    out += "Connection: close\r\n";
  } else if (version_ == 10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  out += body;
  writer_.push(std::move(out));
  exchange_done();
}

void OpenAiSession::respond_error(int status, std::string message, std::string_view type,
                                  std::string_view param, std::string_view code) {
  respond(status, oa::encode_error(oa::Error{status, std::move(message), std::string(type),
                                             std::string(param), std::string(code)}));
}

void OpenAiSession::begin_stream() {
  if (closed_) return;
  // HTTP/1.0 has no chunked encoding: the stream ends when the connection closes.
  chunked_ = version_ >= 11;
  if (!chunked_) keep_alive_ = false;
  std::string out = fmt::format(
      "HTTP/{}.{} 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
      "Cache-Control: no-cache\r\n",
      version_ / 10, version_ % 10);
  if (chunked_) out += "Transfer-Encoding: chunked\r\n";
  if (!keep_alive_) out += "Connection: close\r\n";
  out += "\r\n";
  writer_.push(std::move(out));
}

bool OpenAiSession::stream_events(std::string&& events) {
  if (closed_) return true;  // the exchange is being cancelled
  // The JSON-RPC stream's hard limit: a client this far behind is not reading its stream.
  if (writer_.queued_bytes() > ctx_.config.server.write_buffer_bytes) {
    if (ctx_.stream_totals) ++ctx_.stream_totals->refused;
    ctx_.log->warn("a client left more than server.write_buffer_bytes={} of its stream unread; "
                   "failing the stream (slow consumer)",
                   ctx_.config.server.write_buffer_bytes);
    return false;
  }
  write_events(std::move(events));
  return true;
}

void OpenAiSession::write_events(std::string&& events) {
  if (chunked_) {
    std::string framed = fmt::format("{:x}\r\n", events.size());
    framed += events;
    framed += "\r\n";
    writer_.push(std::move(framed));
  } else {
    writer_.push(std::move(events));
  }
}

void OpenAiSession::end_stream(std::string&& last_events) {
  if (closed_) return;
  write_events(std::move(last_events));
  if (chunked_) writer_.push("0\r\n\r\n");
  exchange_done();
}

void OpenAiSession::exchange_done() { done_timer_.cancel(); }

void OpenAiSession::close() {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  if (exchange_) exchange_->cancel();
  writer_.close();
  done_timer_.cancel();
  stream_.close();
  if (on_closed_) on_closed_(this);
}

}  // namespace drover::supervisor
