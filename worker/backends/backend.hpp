// Backend: the model engine inside a worker process (sim, tinyllm, ...). The WorkerRuntime
// owns one and calls it from its single io_context thread; a backend that computes for long
// must do so off that thread (a thread pool) and resume the coroutine when done, so the
// runtime keeps answering cancels and heartbeats meanwhile.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error_codes.hpp"
#include "proto/jsonrpc.hpp"
#include "proto/worker_codec.hpp"

namespace drover::worker {

using proto::json;

struct BackendError {
  RpcError code = RpcError::internal_error;
  std::string message;
  json data;
};

template <typename T>
using BackendResult = boost::system::result<T, BackendError>;

// The worker protocol's generate request (proto/worker_codec.hpp), as the backend gets it.
using GenerateRequest = proto::worker::GenerateRequest;

struct GenerateOutcome {
  std::string text;
  std::string finish_reason;  // length | stop | cancelled
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

// Set by the runtime when the supervisor cancels a request; backends poll it between tokens.
// A backend that waits (a timer, an engine call) may set `wake` for the time of the wait so a
// cancel ends the wait at once instead of at its deadline.
struct CancelFlag {
  bool cancelled = false;
  std::function<void()> wake;

  void cancel() {
    cancelled = true;
    if (wake) wake();
  }
};

// Receives each generated piece of text as it is produced, whether or not the request
// streams: the runtime forwards it only for streaming requests, and counts it as progress
// (heartbeat `progress`) either way.
using ChunkSink = std::function<void(const std::string& text)>;

// Faults for chaos drills. crash, hang and garbage are enacted by the runtime for any
// backend; stall (stop producing tokens but keep heartbeating) and slow (a tenth of the
// speed) need the backend's cooperation.
enum class Fault { none, crash, hang, garbage, stall, slow };

// Steps of a backend that computes its generations together (one forward pass per step for
// all of them): how many ran and their summed wall time. Heartbeats report them (`steps`,
// `step_us`) so droverd's batch queue can size batches by the worker's own step time.
struct StepStats {
  std::uint64_t steps = 0;
  std::chrono::microseconds busy{0};
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Models this backend serves once loaded (reported in hello, init and heartbeats).
  virtual std::vector<std::string> models() const = 0;
  // Loads (and warms) the models. Called once, for init, before the worker is ready.
  virtual boost::asio::awaitable<BackendResult<json>> load() = 0;
  virtual boost::asio::awaitable<BackendResult<GenerateOutcome>> generate(
      const GenerateRequest& request, ChunkSink on_chunk, std::shared_ptr<CancelFlag> cancel) = 0;
  virtual BackendResult<std::vector<std::vector<std::int64_t>>> batch_tokenize(
      const std::string& model, const std::vector<std::string>& texts) = 0;
  virtual BackendResult<std::string> detokenize(const std::string& model,
                                                const std::vector<std::int64_t>& tokens) = 0;
  // Steps run since the previous call (zero for a backend that runs each request alone).
  virtual StepStats take_step_stats() { return {}; }
  // Fault injection hook, consulted once per request; only sim injects faults on its own.
  virtual Fault next_fault() { return Fault::none; }
  // An operator-injected stall or slow fault; returns false when the backend cannot enact it.
  virtual bool inject(Fault) { return false; }
  // Whether inject(fault) would enact it, without enacting it: the runtime reports the faults
  // it can enact in its init reply, so droverd refuses a drill that would do nothing.
  virtual bool can_inject(Fault) const { return false; }
};

}  // namespace drover::worker
