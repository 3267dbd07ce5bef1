// The worker protocol's one codec (shared/DESIGN.md section 5, documented message by message in
// proto/README.md): names and constants, typed messages, their encoders and decoders. droverd,
// drover-worker and the tests all read and write the protocol through this file and nothing
// else; the Python SDK follows proto/README.md.
//
// Data plane (generate, batch_tokenize, detokenize, cancel, generate.chunk, heartbeat and the
// replies) is typed and written straight into the outgoing buffer; nothing builds a tree.
// Control plane (hello, init and its reply, load/unload_model, model.loaded) carries its
// params and results as nlohmann trees, once per worker start or model load.
//
// Decoding never throws: Decoder::decode() validates a whole message (or a JSON-RPC batch of
// them) in one on-demand walk and returns Messages whose params/result are the bytes received;
// the read_* functions turn those bytes into typed structs, with an error naming what is wrong.
// Pure functions; a Decoder is used by one thread at a time.
#pragma once

#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error_codes.hpp"
#include "proto/jsonrpc.hpp"

namespace drover::proto::worker {

// Bumped on any incompatible change; hello carries it and the supervisor refuses a mismatch.
constexpr int kProtocolVersion = 1;

// Environment of a spawned worker.
constexpr const char* kEnvWorkerId = "DROVER_WORKER_ID";
constexpr const char* kEnvControlSocket = "DROVER_CONTROL_SOCKET";

// Methods and notifications, by direction.
namespace method {
// worker -> supervisor
constexpr std::string_view kHello = "hello";              // notification, first message
constexpr std::string_view kHeartbeat = "heartbeat";      // notification
constexpr std::string_view kChunk = "generate.chunk";     // notification {id, index, text}
constexpr std::string_view kModelLoaded = "model.loaded";  // notification
// supervisor -> worker
constexpr std::string_view kInit = "init";  // request; the worker replies once it is ready
constexpr std::string_view kGenerate = "generate";
constexpr std::string_view kBatchTokenize = "batch_tokenize";
constexpr std::string_view kDetokenize = "detokenize";
constexpr std::string_view kLoadModel = "load_model";
constexpr std::string_view kUnloadModel = "unload_model";
constexpr std::string_view kWarmup = "warmup";
constexpr std::string_view kCancel = "cancel";      // notification {id}
constexpr std::string_view kShutdown = "shutdown";  // notification
constexpr std::string_view kInject = "inject";      // notification {fault}: chaos drills
}  // namespace method

template <typename T>
using Decoded = boost::system::result<T, std::string>;

// --- supervisor -> worker: the data-plane requests -------------------------------------------

struct GenerateRequest {
  std::string model;  // empty: the worker's default model
  std::string prompt;
  int max_tokens = 64;
  double temperature = 0.8;
  double top_p = 0.95;
  std::uint64_t seed = 0;
  std::vector<std::string> stop;
  bool stream = false;
};

struct BatchTokenizeRequest {
  std::string model;
  std::vector<std::string> texts;
};

struct DetokenizeRequest {
  std::string model;
  std::vector<std::int64_t> tokens;
};

// Each encoder appends one complete message (no framing) to `out`.
void encode_generate(std::string& out, std::uint64_t id, const GenerateRequest& r);
// `texts`: the texts of one or more tokenize calls merged into one request, in order.
void encode_batch_tokenize(std::string& out, std::uint64_t id, std::string_view model,
                           const std::vector<std::string_view>& texts);
void encode_detokenize(std::string& out, std::uint64_t id, const DetokenizeRequest& r);
void encode_cancel(std::string& out, std::uint64_t id);
void encode_shutdown(std::string& out);
void encode_inject(std::string& out, std::string_view fault);
// Control-plane requests (init, load_model, unload_model).
void encode_request(std::string& out, std::uint64_t id, std::string_view method, const json& params);

Decoded<GenerateRequest> read_generate(std::string_view params);
Decoded<BatchTokenizeRequest> read_batch_tokenize(std::string_view params);
Decoded<DetokenizeRequest> read_detokenize(std::string_view params);
// cancel's {id}; inject's {fault}.
Decoded<std::uint64_t> read_cancel(std::string_view params);
Decoded<std::string> read_inject(std::string_view params);

// --- worker -> supervisor: replies and notifications -----------------------------------------

struct Usage {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
};

struct GenerateResult {
  std::string text;
  std::string finish_reason;  // length | stop | cancelled
  Usage usage;
};

struct Chunk {
  std::uint64_t id = 0;  // the supervisor's request id
  std::uint64_t index = 0;
  std::string text;
};

struct Heartbeat {
  std::int64_t inflight = 0;
  std::int64_t queue_depth = 0;
  std::int64_t rss_bytes = 0;
  double tokens_per_s = 0;
  std::optional<std::vector<std::string>> models;
  std::int64_t progress = -1;  // tokens and replies so far; -1: not reported
  // A worker that steps its generations together (tinyllm): steps run since its previous
  // heartbeat and their mean wall time in microseconds; 0 steps: not reported.
  std::int64_t steps = 0;
  double step_us = 0;
};

void encode_generate_result(std::string& out, std::uint64_t id, const GenerateResult& r);
// The members `"text":..,"finish_reason":..,"usage":{..}` (no braces), shared with the
// client's generate result (proto/client_params.hpp), which adds its own after them.
void append_generate_fields(std::string& out, const GenerateResult& r);
void encode_tokens_result(std::string& out, std::uint64_t id,
                          const std::vector<std::vector<std::int64_t>>& tokens);
void encode_text_result(std::string& out, std::uint64_t id, std::string_view text);
// Control-plane results (init, load_model, unload_model).
void encode_result(std::string& out, std::uint64_t id, const json& result);
// `data`: JSON text, or empty for none.
void encode_error(std::string& out, std::uint64_t id, RpcError code, std::string_view message,
                  std::string_view data = {});
void encode_chunk(std::string& out, std::uint64_t id, std::uint64_t index, std::string_view text);
void encode_heartbeat(std::string& out, const Heartbeat& h);
// Control-plane notifications (hello, model.loaded).
void encode_notification(std::string& out, std::string_view method, const json& params);

Decoded<GenerateResult> read_generate_result(std::string_view result);
Decoded<std::vector<std::vector<std::int64_t>>> read_tokens_result(std::string_view result);
Decoded<std::string> read_text_result(std::string_view result);
Decoded<Chunk> read_chunk(std::string_view params);
Decoded<Heartbeat> read_heartbeat(std::string_view params);
// Control plane: params or a result as a tree (null for empty text).
Decoded<json> read_tree(std::string_view text);

// --- the envelope, either direction -----------------------------------------------------------

// One message received from the peer, classified. Views point into the Decoder that produced
// it and are valid until its next decode().
struct Message {
  enum class Kind { reply, notification, request };
  Kind kind = Kind::notification;
  std::uint64_t id = 0;  // reply: the request it answers; request: its id
  std::string method;    // notification / request
  std::string_view params;  // notification / request: JSON text, empty when absent
  std::string_view result;  // reply: JSON text of the result, empty when an error
  struct Error {
    int code = 0;
    std::string message;
    std::string_view data;  // JSON text, empty when absent
  };
  std::optional<Error> error;  // reply: the error
};

class Decoder {
 public:
  Decoder();
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // One message, or a JSON-RPC batch (a non-empty array of them, in order, as droverd's batch
  // queue sends). Anything that is not a JSON-RPC 2.0 reply with an unsigned integer id, nor a
  // request/notification, is an error naming the problem (the receiver treats its peer as
  // broken: it "wrote garbage").
  Decoded<std::vector<Message>> decode(std::string_view text);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace drover::proto::worker
