// ClientSession: one client connection (Asio's `connection`). Owns its socket, frame decoder
// and bounded write queue; hands each decoded message to the RequestHandler and tracks the
// calls it started so that cancel can find them and a disconnect cancels them at the workers.
// Shared-owned by the Listener's registry and its own coroutines; supervisor thread only.
//
// End of input: if the peer only shut down its write side (`socat` after stdin EOF), the
// session finishes the calls already accepted, writes their replies and then closes. If the
// peer is gone (POLLHUP, or a write fails), everything it started is cancelled at once.
//
// Stream chunks go through the connection's StreamFlow (stream_flow.hpp): written at once
// while the client keeps up, coalesced above the high watermark (a timer paces the held
// frames), refused past write_buffer_bytes (-32010). A reply first flushes what is held, so
// it always follows its stream's chunks.
//
// Reply backpressure: replies are never refused, so a client that writes requests and never
// reads would otherwise grow the write queue without bound (a telemetry.metrics line earns a
// reply ~30x its size). Past write_buffer_bytes unsent, the session stops taking frames (they
// wait in the decoder, then in the kernel, then the client's own write blocks) until the writer
// is below half of it. A session paused for idle_timeout, or whose unsent bytes would pass
// 2 x write_buffer_bytes (replies of calls accepted before the pause), is closed with a warning.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/async_util.hpp"
#include "proto/framing.hpp"
#include "supervisor/frontend/connection_stream.hpp"
#include "supervisor/frontend/stream_flow.hpp"
#include "supervisor/pool/call.hpp"

namespace drover::supervisor {

class RequestHandler;

class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  // Per-connection limits (server.* in the config; 0 disables a timeout).
  struct Limits {
    std::size_t max_message_bytes = 8 * 1024 * 1024;
    std::size_t write_buffer_bytes = 16 * 1024 * 1024;
    // Nothing in flight, nothing to write and no bytes received for this long: closed.
    std::chrono::milliseconds idle_timeout{600'000};
    // A message begun but not completed within this long (slow-loris): -32600, then closed.
    std::chrono::milliseconds partial_message_timeout{30'000};
    // Stream flow control (streaming.*; its hard limit is write_buffer_bytes) and the
    // percentage of requests whose chunks may be coalesced (feature_flags.stream_coalescing).
    StreamFlowLimits stream;
    int stream_coalescing_percent = 100;
    // Where every session's flow counters add up (the supervisor's); null: not counted.
    StreamFlow::Counters* stream_totals = nullptr;
  };

  // `stream`: a Unix socket, TCP or TLS (connection_stream.hpp); a TLS session handshakes
  // first, within handshake_timeout(partial_message_timeout).
  ClientSession(ConnectionStream stream, RequestHandler& handler, bool admin, const Limits& limits,
                std::function<void(ClientSession*)> on_closed);

  void start();
  // Closes now: cancels every call this client started and drops unwritten output.
  void close();
  // Stops reading; closes once the calls already accepted have been answered and written.
  void close_when_idle();
  // Answers every unfinished call with `code` (cancelling it at its worker), then closes once
  // the replies are written.
  void end(RpcError code);

  bool admin() const { return admin_; }
  std::uint64_t id() const { return id_; }

  // Writes a final reply (or a batch of them). Never refused: every request gets its answer.
  void write_reply(std::string&& json_text);
  // Writes (or holds, to coalesce) a stream chunk; false when the client has more than
  // write_buffer_bytes unread, i.e. it is not reading its stream.
  bool write_chunk(const StreamChunk& chunk);
  // Bytes accepted for this client and not yet written to its socket (held chunks included).
  std::size_t buffered_bytes() const { return writer_.queued_bytes() + flow_.held_bytes(); }
  bool coalescing() const { return flow_.coalescing(); }

  // Call tracking for cancel and disconnect.
  void track(const std::shared_ptr<Call>& call);
  void forget(const Call* call);
  // Unfinished calls of this connection whose client id is `id` (compared as JSON text).
  std::vector<std::shared_ptr<Call>> find_calls(std::string_view id) const;
  std::size_t outstanding() const { return calls_.size(); }

 private:
  asio::awaitable<void> run();
  // Plain sockets: waits for readability, then reads through the thread's shared buffer.
  asio::awaitable<void> read_loop();
  // TLS: reads through a buffer of its own (connection_stream.hpp says why).
  asio::awaitable<void> tls_read_loop();
  // Whether reading may go on after a read: false (and the session closing) on an error.
  bool after_read(const boost::system::error_code& ec, const char* data, std::size_t n);
  // Hands complete frames in the decoder to the handler until none is left or the unsent
  // output passes write_buffer_bytes (true: stopped for backpressure).
  bool handle_buffered_frames();
  // Waits until the writer is below half of write_buffer_bytes; false when the session closed
  // or stopped reading meanwhile (closes it when paused for idle_timeout).
  asio::awaitable<bool> wait_for_writer();
  bool over_write_limit() const { return buffered_bytes() > limits_.write_buffer_bytes; }
  asio::awaitable<void> write_loop();
  // Enforces idle_timeout and partial_message_timeout, checked every quarter of the shorter.
  asio::awaitable<void> watchdog();
  void handle_frame(proto::Frame& frame);
  void maybe_finish();
  // Stream flow: writes the frames StreamFlow released; paces held ones with flow_timer_.
  void write_frames();
  void flow_tick();
  void arm_flow_timer();

  ConnectionStream stream_;
  RequestHandler& handler_;
  bool admin_;
  std::uint64_t id_;
  proto::FrameDecoder decoder_;
  Limits limits_;
  Clock::time_point last_input_ = std::chrono::steady_clock::now();
  std::optional<Clock::time_point> partial_since_;  // a message is half received since
  WriteQueue<ConnectionStream> writer_;
  StreamFlow flow_;
  std::vector<StreamFlow::Frame> frames_;  // scratch, reused
  asio::steady_timer flow_timer_;
  bool flow_timer_armed_ = false;
  asio::steady_timer resume_timer_;  // a paused read loop waits on it; cancelled to resume
  bool paused_ = false;
  bool overflowed_ = false;  // past the hard limit: output dropped, close() posted
  std::function<void(ClientSession*)> on_closed_;
  std::unordered_map<const Call*, std::shared_ptr<Call>> calls_;
  bool reading_ = true;
  bool closed_ = false;
};

}  // namespace drover::supervisor
