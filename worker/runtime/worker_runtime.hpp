// WorkerRuntime: the worker side of the protocol (proto/README.md). Connects to the control
// socket (or, with RuntimeOptions::stdio, speaks on stdin/stdout), says hello, waits for init (loading the backend's models before replying, which is
// what marks the worker ready), then serves requests concurrently — one coroutine per
// generate, so cancel and heartbeats are handled while tokens are produced — until the
// supervisor says shutdown or goes away. Single-threaded: everything runs on one io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <vector>
#include <set>
#include <string>
#include <unordered_map>

#include "common/async_util.hpp"
#include "common/config.hpp"
#include "proto/fd_passing.hpp"
#include "proto/framing.hpp"
#include "proto/shm_channel.hpp"
#include "proto/worker_codec.hpp"
#include "worker/backends/backend.hpp"
#include "worker/runtime/model_registry.hpp"

namespace drover::worker {

// Builds a backend: for init, spec.backend names it ("sim", "tinyllm") and spec.id is empty
// (the model the worker's flags name); for load_model, spec is the catalog entry (id, backend,
// path, options). An error string fails init or the load.
using BackendFactory =
    std::function<boost::system::result<std::unique_ptr<Backend>, std::string>(const ModelSpec& spec)>;

struct RuntimeOptions {
  std::string control_socket;
  // Speak the protocol on stdin/stdout instead of connecting to control_socket: for
  // supervisors that spawn workers with stdio pipes (bench/baselines/node, drover-bench
  // --direct --worker-stdio). fd 1 is then pointed at stderr, so nothing but protocol bytes
  // ever reaches the supervisor's pipe. REQUIRES: stdin and stdout are pipes or sockets.
  bool stdio = false;
  int worker_id = 0;
  std::size_t max_message_bytes = 64 * 1024 * 1024;
};

class WorkerRuntime {
 public:
  WorkerRuntime(asio::io_context& io, RuntimeOptions options, BackendFactory factory);

  // Serves until shutdown or the supervisor closes the socket; returns the exit code.
  asio::awaitable<int> run();

 private:
  // Sets input_/output_ up for the configured transport; false (logged) when it cannot.
  asio::awaitable<bool> open_link();
  void close_link();
  void handle(std::string_view text);
  void handle(proto::worker::Message& m);
  void on_init(std::uint64_t id, const json& params);
  // Runs init's preload entries (warmup requests per model); the per-model report, or an
  // error when fail_fast and a model failed.
  asio::awaitable<BackendResult<json>> warm_up(const json& preload, double load_ms);
  void on_generate(std::uint64_t id, GenerateRequest request);
  void on_batch_tokenize(std::uint64_t id, const proto::worker::BatchTokenizeRequest& request);
  void on_detokenize(std::uint64_t id, const proto::worker::DetokenizeRequest& request);
  void on_load_model(std::uint64_t id, const json& params);
  void on_unload_model(std::uint64_t id, const json& params);
  // Builds and loads the backend of a catalog model and registers it; the load report
  // ({model, load_ms, ...}) or the error (-32006 naming the model).
  asio::awaitable<BackendResult<json>> load_model(ModelSpec spec);
  void on_inject(const std::string& fault);
  bool enact_fault();
  bool enact(Fault fault);
  // The "exit_after_reply" drill, after the reply was sent: see on_inject.
  [[noreturn]] void exit_unannounced();
  asio::awaitable<void> heartbeat_loop();
  asio::awaitable<void> serve_generate(std::uint64_t id, GenerateRequest req,
                                       std::shared_ptr<Backend> backend,
                                       std::shared_ptr<CancelFlag> cancel);
  void reply(std::uint64_t id, const json& result);
  // Sends a reply (any kind); the exit_after_reply drill exits right after it.
  void send_reply(const std::string& reply);
  void reply_error(std::uint64_t id, const BackendError& e);
  // A request over max_message_bytes: answered -32007 (by the id in its first bytes) instead
  // of ending the worker; over shm the answer takes the deferred line's place in the ring's
  // order. false when it cannot be answered (no id).
  bool refuse_too_large(const proto::Frame& frame);
  void send(const std::string& json_text);
  void send_notification(std::string_view method, const json& params);
  // Reads the control socket, keeping descriptors that arrive (SCM_RIGHTS) for init.
  asio::awaitable<boost::system::result<std::size_t>> read_link(std::vector<char>& buf);
  // init's `transport`: maps the offered segment; the init reply's `transport` object.
  json prepare_transport(const json& transport);
  // After the init reply: from now on everything goes through the channel.
  void activate_transport();
  void on_channel_failed(const std::string& why);
  void maybe_exit();

  asio::io_context& io_;
  RuntimeOptions opt_;
  BackendFactory factory_;
  // The backend built for init (the worker's own model); fault injection consults it.
  std::shared_ptr<Backend> backend_;
  ModelRegistry models_;
  std::set<std::string> loading_;
  // The link to the supervisor: the connected control socket (output_ a dup of it), or stdin
  // and stdout. Descriptors rather than sockets so one type serves both transports.
  asio::posix::stream_descriptor input_;
  asio::posix::stream_descriptor output_;
  WriteQueue<asio::posix::stream_descriptor> writer_;
  proto::FrameDecoder decoder_;
  proto::worker::Decoder codec_;  // what droverd sends, read without a tree
  std::unordered_map<std::uint64_t, std::shared_ptr<CancelFlag>> running_;
  Millis heartbeat_interval_{1000};
  asio::steady_timer heartbeat_timer_;
  std::uint64_t tokens_since_heartbeat_ = 0;
  // Tokens produced plus requests answered since start: the supervisor's stall detector
  // watches it move.
  std::int64_t progress_ = 0;
  // Descriptors received on the control socket and not yet claimed by init.
  std::vector<proto::UniqueFd> received_fds_;
  std::optional<proto::shm::ChannelResources> shm_resources_;  // mapped, not yet active
  std::shared_ptr<proto::shm::ShmChannel> channel_;
  bool ready_ = false;
  bool stopping_ = false;
  bool exit_after_reply_ = false;  // the "exit_after_reply" drill is armed
  bool done_ = false;
  int exit_code_ = 0;
};

}  // namespace drover::worker
