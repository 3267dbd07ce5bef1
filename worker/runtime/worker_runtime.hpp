// WorkerRuntime: the worker side of the protocol (proto/README.md). Connects to the control
// socket, says hello, waits for init (loading the backend's models before replying, which is
// what marks the worker ready), then serves requests concurrently — one coroutine per
// generate, so cancel and heartbeats are handled while tokens are produced — until the
// supervisor says shutdown or goes away. Single-threaded: everything runs on one io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/async_util.hpp"
#include "common/config.hpp"
#include "proto/framing.hpp"
#include "proto/worker_messages.hpp"
#include "worker/backends/backend.hpp"

namespace drover::worker {

// Builds the backend named in init ("sim", ...); an error string fails init.
using BackendFactory =
    std::function<boost::system::result<std::unique_ptr<Backend>, std::string>(const std::string& name)>;

struct RuntimeOptions {
  std::string control_socket;
  int worker_id = 0;
  std::size_t max_message_bytes = 64 * 1024 * 1024;
};

class WorkerRuntime {
 public:
  WorkerRuntime(asio::io_context& io, RuntimeOptions options, BackendFactory factory);

  // Serves until shutdown or the supervisor closes the socket; returns the exit code.
  asio::awaitable<int> run();

 private:
  void handle(std::string_view text);
  void on_init(std::uint64_t id, const json& params);
  // Runs init's preload entries (warmup requests per model); the per-model report, or an
  // error when fail_fast and a model failed.
  asio::awaitable<BackendResult<json>> warm_up(const json& preload, double load_ms);
  void on_generate(std::uint64_t id, const json& params);
  void on_batch_tokenize(std::uint64_t id, const json& params);
  void on_detokenize(std::uint64_t id, const json& params);
  void on_inject(const json& params);
  bool enact_fault();
  bool enact(Fault fault);
  asio::awaitable<void> heartbeat_loop();
  asio::awaitable<void> serve_generate(std::uint64_t id, GenerateRequest req,
                                       std::shared_ptr<CancelFlag> cancel);
  void reply(std::uint64_t id, const json& result);
  void reply_error(std::uint64_t id, const BackendError& e);
  void send(const std::string& json_text);
  void maybe_exit();

  asio::io_context& io_;
  RuntimeOptions opt_;
  BackendFactory factory_;
  std::unique_ptr<Backend> backend_;
  asio::local::stream_protocol::socket socket_;
  WriteQueue<asio::local::stream_protocol::socket> writer_;
  proto::FrameDecoder decoder_;
  std::unordered_map<std::uint64_t, std::shared_ptr<CancelFlag>> running_;
  Millis heartbeat_interval_{1000};
  asio::steady_timer heartbeat_timer_;
  std::uint64_t tokens_since_heartbeat_ = 0;
  // Tokens produced plus requests answered since start: the supervisor's stall detector
  // watches it move.
  std::int64_t progress_ = 0;
  bool ready_ = false;
  bool stopping_ = false;
  bool done_ = false;
  int exit_code_ = 0;
};

}  // namespace drover::worker
