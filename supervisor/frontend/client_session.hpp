// ClientSession: one client connection (Asio's `connection`). Owns its socket, frame decoder
// and bounded write queue; hands each decoded message to the RequestHandler and tracks the
// calls it started so that cancel can find them and a disconnect cancels them at the workers.
// Shared-owned by the Listener's registry and its own coroutines; supervisor thread only.
//
// End of input: if the peer only shut down its write side (`socat` after stdin EOF), the
// session finishes the calls already accepted, writes their replies and then closes. If the
// peer is gone (POLLHUP, or a write fails), everything it started is cancelled at once.
#pragma once

#include <boost/asio/local/stream_protocol.hpp>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/async_util.hpp"
#include "proto/framing.hpp"
#include "supervisor/pipeline/call.hpp"

namespace drover::supervisor {

class RequestHandler;

class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  using Socket = asio::local::stream_protocol::socket;

  ClientSession(Socket socket, RequestHandler& handler, bool admin, std::size_t max_message_bytes,
                std::size_t write_buffer_bytes, std::function<void(ClientSession*)> on_closed);

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
  // Writes a stream notification; false when the client has more than write_buffer_bytes
  // unread, i.e. it is not reading its stream.
  bool write_chunk(std::string&& json_text);

  // Call tracking for cancel and disconnect.
  void track(const std::shared_ptr<Call>& call);
  void forget(const Call* call);
  // Unfinished calls of this connection whose client id equals `id`.
  std::vector<std::shared_ptr<Call>> find_calls(const proto::json& id) const;
  std::size_t outstanding() const { return calls_.size(); }

 private:
  asio::awaitable<void> read_loop();
  asio::awaitable<void> write_loop();
  void handle_frame(proto::Frame& frame);
  bool peer_gone() const;
  void maybe_finish();

  Socket socket_;
  RequestHandler& handler_;
  bool admin_;
  std::uint64_t id_;
  proto::FrameDecoder decoder_;
  std::size_t write_buffer_bytes_;
  WriteQueue<Socket> writer_;
  std::function<void(ClientSession*)> on_closed_;
  std::unordered_map<const Call*, std::shared_ptr<Call>> calls_;
  bool reading_ = true;
  bool closed_ = false;
};

}  // namespace drover::supervisor
