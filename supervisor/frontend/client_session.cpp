#include "supervisor/frontend/client_session.hpp"

#include <array>
#include <vector>
#include <tuple>

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/log.hpp"
#include "common/rollout.hpp"
#include "supervisor/frontend/request_handler.hpp"

namespace drover::supervisor {
namespace {
std::uint64_t g_next_session_id = 1;  // supervisor thread only
}

ClientSession::ClientSession(ConnectionStream stream, RequestHandler& handler, bool admin,
                             const Limits& limits, std::function<void(ClientSession*)> on_closed)
    : stream_(std::move(stream)),
      handler_(handler),
      admin_(admin),
      id_(g_next_session_id++),
      decoder_(limits.max_message_bytes),
      limits_(limits),
      writer_(stream_),
      flow_(
          [&limits] {
            StreamFlowLimits l = limits.stream;
            l.hard_limit_bytes = limits.write_buffer_bytes;
            return l;
          }(),
          limits.stream_totals),
      flow_timer_(stream_.get_executor()),
      resume_timer_(stream_.get_executor()),
      on_closed_(std::move(on_closed)) {}

void ClientSession::start() {
  writer_.on_drained([this] {
    // The client caught up: leave coalescing without waiting for the next tick.
    if (flow_.active()) flow_tick();
    maybe_finish();
  });
  writer_.on_written([this] {
    if (paused_ && buffered_bytes() <= limits_.write_buffer_bytes / 2) resume_timer_.cancel();
  });
  spawn(stream_.get_executor(), run());
}

asio::awaitable<void> ClientSession::run() {
  auto self = shared_from_this();
  if (stream_.tls()) {
    const std::string failed =
        co_await stream_.handshake(handshake_timeout(limits_.partial_message_timeout));
    if (closed_) co_return;
    if (!failed.empty()) {
      component_logger("frontend")->info("session {}: TLS handshake failed: {}", id_, failed);
      close();
      co_return;
    }
  }
  spawn(stream_.get_executor(), write_loop());
  if (limits_.idle_timeout.count() > 0 || limits_.partial_message_timeout.count() > 0) {
    spawn(stream_.get_executor(), watchdog());
  }
  // (Two statements: g++ 12 miscompiles a co_await of a conditional between two awaitables.)
  if (stream_.tls()) {
    co_await tls_read_loop();
  } else {
    co_await read_loop();
  }
}

asio::awaitable<void> ClientSession::watchdog() {
  auto self = shared_from_this();
  const auto shortest = [this] {
    const auto i = limits_.idle_timeout, p = limits_.partial_message_timeout;
    return i.count() == 0 ? p : p.count() == 0 ? i : std::min(i, p);
  }();
  asio::steady_timer timer(stream_.get_executor());
  while (!closed_) {
    timer.expires_after(std::max(shortest / 4, Millis(5)));
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec || closed_) co_return;
    const auto now = std::chrono::steady_clock::now();
    if (reading_ && !paused_ && partial_since_ && limits_.partial_message_timeout.count() > 0 &&
        now - *partial_since_ >= limits_.partial_message_timeout) {
      component_logger("frontend")->warn("session {}: message not completed within {} ms; closing",
                                         id_, limits_.partial_message_timeout.count());
      write_reply(proto::make_error(
          proto::kNullId, RpcError::invalid_request, {},
          proto::json{{"detail", fmt::format("message not completed within partial_message_timeout_ms={}",
                                             limits_.partial_message_timeout.count())}}));
      close_when_idle();
      continue;
    }
    if (reading_ && limits_.idle_timeout.count() > 0 && calls_.empty() && writer_.idle() &&
        !partial_since_ && now - last_input_ >= limits_.idle_timeout) {
      component_logger("frontend")->debug("session {}: idle for {} ms; closing", id_,
                                          limits_.idle_timeout.count());
      close();
    }
  }
}

asio::awaitable<void> ClientSession::read_loop() {
  auto self = shared_from_this();
  // Reads go through one 64 KiB buffer shared by every session on this thread instead of one
  // per session: a session waits for readability holding no buffer, then reads without
  // blocking and hands the bytes to its decoder before anything else can run. At 1,000 idle
  // connections that is 64 MB less RSS. The first read is tried at once (what asio's
  // async_read_some does too), so a busy connection makes no extra syscall.
  static thread_local std::array<char, 64 * 1024> buf;
  while (reading_ && !closed_) {
    if (over_write_limit()) {
      if (!co_await wait_for_writer()) co_return;
      // Frames left in the decoder when the pause began go first.
      if (handle_buffered_frames()) continue;
      if (!reading_ || closed_) co_return;
    }
    boost::system::error_code ec;
    const std::size_t n = stream_.try_read(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      std::tie(ec) = co_await stream_.async_wait_readable(use_nothrow);
      if (closed_ || !reading_) co_return;
      if (!ec) continue;
    }
    if (!after_read(ec, buf.data(), n)) co_return;
  }
}

asio::awaitable<void> ClientSession::tls_read_loop() {
  auto self = shared_from_this();
  // One TLS record's payload: OpenSSL hands out at most that per read.
  std::vector<char> buf(16 * 1024);
  while (reading_ && !closed_) {
    if (over_write_limit()) {
      if (!co_await wait_for_writer()) co_return;
      if (handle_buffered_frames()) continue;
      if (!reading_ || closed_) co_return;
    }
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(buf), use_nothrow);
    if (!after_read(ec, buf.data(), n)) co_return;
  }
}

bool ClientSession::after_read(const boost::system::error_code& ec, const char* data,
                               std::size_t n) {
  if (closed_ || !reading_) return false;
  if (ec) {
    // TLS: a peer that closes without close_notify (stream_truncated) is at its end as well.
    const bool eof = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
    if (eof && !stream_.peer_gone()) {
      close_when_idle();  // half-close: answer what was asked, then close
    } else {
      close();
    }
    return false;
  }
  last_input_ = std::chrono::steady_clock::now();
  decoder_.feed(std::string_view(data, n));
  handle_buffered_frames();
  return true;
}

bool ClientSession::handle_buffered_frames() {
  bool completed = false;
  bool paused = false;
  while (reading_ && !closed_) {
    if (over_write_limit()) {
      paused = true;
      break;
    }
    auto frame = decoder_.next();
    if (!frame) break;
    completed = true;
    handle_frame(*frame);
  }
  // The slow-loris clock runs from the start of the message still incomplete: from now if
  // this read completed one (the rest began in this read), else since it began. (A pause
  // stops it: what waits in the decoder is ours to take, not the client's to finish.)
  if (decoder_.buffered() == 0) {
    partial_since_.reset();
  } else if (completed || !partial_since_) {
    partial_since_ = std::chrono::steady_clock::now();
  }
  return paused;
}

asio::awaitable<bool> ClientSession::wait_for_writer() {
  paused_ = true;
  if (limits_.stream_totals) ++limits_.stream_totals->reader_pauses;
  component_logger("frontend")
      ->debug("session {}: {} bytes of replies unread (write_buffer_bytes={}); not reading", id_,
              buffered_bytes(), limits_.write_buffer_bytes);
  if (limits_.idle_timeout.count() > 0) {
    resume_timer_.expires_after(limits_.idle_timeout);
  } else {
    resume_timer_.expires_at(asio::steady_timer::time_point::max());
  }
  auto [ec] = co_await resume_timer_.async_wait(use_nothrow);
  paused_ = false;
  if (closed_ || !reading_) co_return false;
  if (!ec && over_write_limit()) {
    component_logger("frontend")
        ->warn("session {}: client read none of {} bytes of replies for idle_timeout_ms={}; "
               "closing",
               id_, buffered_bytes(), limits_.idle_timeout.count());
    if (limits_.stream_totals) ++limits_.stream_totals->backlog_closes;
    close();
    co_return false;
  }
  co_return true;
}

void ClientSession::handle_frame(proto::Frame& frame) {
  switch (frame.kind) {
    case proto::Frame::Kind::message:
      handler_.handle(*this, proto::parse_message(frame.body, handler_.max_batch_length()));
      return;
    case proto::Frame::Kind::too_large:
      write_reply(proto::make_error(proto::kNullId, RpcError::message_too_large, {},
                                    proto::json{{"limit_bytes", decoder_.max_message_bytes()}}));
      return;
    case proto::Frame::Kind::bad_header:
      // The stream cannot be resynchronised: answer, then close once written.
      write_reply(proto::make_error(proto::kNullId, RpcError::parse_error, {},
                                    proto::json{{"detail", frame.detail}}));
      close_when_idle();
      return;
    case proto::Frame::Kind::invalid_header:
      // Parsed but ambiguous (a duplicate Content-Length): refused, and as unrecoverable.
      write_reply(proto::make_error(proto::kNullId, RpcError::invalid_request, {},
                                    proto::json{{"detail", frame.detail}}));
      close_when_idle();
      return;
  }
}

asio::awaitable<void> ClientSession::write_loop() {
  auto self = shared_from_this();
  const auto ec = co_await writer_.run();
  if (ec) close();
}

void ClientSession::write_reply(std::string&& json_text) {
  if (closed_ || overflowed_) return;
  // Replies of calls accepted before the read loop paused still arrive; past twice the limit
  // the client is not coming back for them. Closing is posted: this may run inside a call's
  // completion, which close() would cancel under its feet.
  const std::size_t buffered = buffered_bytes();
  if (buffered > limits_.write_buffer_bytes &&
      buffered + json_text.size() > 2 * limits_.write_buffer_bytes) {
    component_logger("frontend")
        ->warn("session {}: {} bytes of replies unread, past 2 x write_buffer_bytes={}; closing",
               id_, buffered, limits_.write_buffer_bytes);
    if (limits_.stream_totals) ++limits_.stream_totals->backlog_closes;
    overflowed_ = true;
    writer_.close();
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
    return;
  }
  // Held chunks first: a stream's final reply must follow all of its chunks.
  flow_.flush_all(frames_);
  write_frames();
  writer_.push(proto::encode_frame(decoder_.framing(), json_text));
}

bool ClientSession::write_chunk(const StreamChunk& chunk) {
  if (closed_) return true;
  // Rolled out by the client's id, like every stage (common/rollout.hpp); no hash at 0 or 100.
  const int percent = limits_.stream_coalescing_percent;
  const bool coalescible =
      percent >= 100 ||
      (percent > 0 && in_rollout("stream_coalescing", chunk.client_id, percent));
  const auto verdict = flow_.on_chunk(chunk.stream, chunk.client_id, chunk.text, coalescible,
                                      writer_.queued_bytes(), std::chrono::steady_clock::now(), frames_);
  write_frames();
  arm_flow_timer();
  // Refused: the worker link fails the call with -32010, cancels it and logs it.
  return verdict == StreamFlow::Verdict::accepted;
}

void ClientSession::write_frames() {
  for (const auto& f : frames_) writer_.push(proto::encode_frame(decoder_.framing(), f.notification()));
  frames_.clear();
}

void ClientSession::flow_tick() {
  flow_.on_tick(writer_.queued_bytes(), std::chrono::steady_clock::now(), frames_);
  write_frames();
  arm_flow_timer();
}

void ClientSession::arm_flow_timer() {
  if (flow_timer_armed_ || closed_ || !flow_.active()) return;
  flow_timer_armed_ = true;
  // Interval 0 (no pacing) still needs a tick to notice the low watermark.
  flow_timer_.expires_after(std::max(flow_.limits().coalesce_interval, Millis(1)));
  flow_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    self->flow_timer_armed_ = false;
    if (!ec && !self->closed_) self->flow_tick();
  });
}

void ClientSession::track(const std::shared_ptr<Call>& call) { calls_.emplace(call.get(), call); }

void ClientSession::forget(const Call* call) {
  if (!closed_) {
    // A batched stream's reply is written later, with its batch: its chunks go now.
    flow_.end_stream(call, frames_);
    write_frames();
  }
  calls_.erase(call);
  maybe_finish();
}

std::vector<std::shared_ptr<Call>> ClientSession::find_calls(std::string_view id) const {
  std::vector<std::shared_ptr<Call>> out;
  for (const auto& [ptr, call] : calls_) {
    if (!call->is_notification() && call->client_id() == id) out.push_back(call);
  }
  return out;
}

void ClientSession::close_when_idle() {
  reading_ = false;
  resume_timer_.cancel();
  stream_.shutdown_receive();
  maybe_finish();
}

void ClientSession::end(RpcError code) {
  auto calls = calls_;
  for (auto& [ptr, call] : calls) {
    call->finish_error(code);
    handler_.cancel(call);
  }
  close_when_idle();
}

void ClientSession::maybe_finish() {
  if (!closed_ && !reading_ && calls_.empty() && writer_.idle()) close();
}

void ClientSession::close() {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  auto calls = std::exchange(calls_, {});
  if (!calls.empty()) {
    component_logger("frontend")
        ->info("session {} closed with {} requests in flight; cancelling them", id_, calls.size());
  }
  for (auto& [ptr, call] : calls) {
    call->detach_sink();
    handler_.cancel(call);
  }
  writer_.close();
  flow_timer_.cancel();
  resume_timer_.cancel();
  stream_.close();
  if (on_closed_) on_closed_(this);
}

}  // namespace drover::supervisor
