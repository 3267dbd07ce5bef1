// The worker protocol (shared/DESIGN.md section 5, documented message by message in
// proto/README.md): names, constants and the parser for what a worker sends. Shared by the
// supervisor, the C++ worker runtime and the tests. Pure, thread-safe.
#pragma once

#include <boost/system/result.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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
constexpr std::string_view kHello = "hello";          // notification, first message
constexpr std::string_view kHeartbeat = "heartbeat";  // notification
constexpr std::string_view kChunk = "generate.chunk";  // notification {id, index, text}
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

// One message received from a worker, classified. Requests from a worker (hello) and
// notifications carry method and params; replies carry the supervisor-assigned id.
struct WorkerMessage {
  enum class Kind { reply, notification, request };
  Kind kind = Kind::notification;
  std::uint64_t id = 0;   // reply: the request it answers; request: the worker's id
  json result;            // reply: the result, when no error
  json error;             // reply: the error object, or null
  std::string method;     // notification / request
  json params;            // notification / request
};

// Parses and validates one framed message from a worker. Anything that is not a JSON-RPC 2.0
// reply with an unsigned integer id, nor a request/notification, is an error (the caller
// treats the worker as broken: it "wrote garbage").
boost::system::result<WorkerMessage, std::string> parse_worker_message(std::string_view text);

// What a worker reads from droverd: one message as above, or a JSON-RPC batch (a non-empty
// array of them, sent by droverd's batch queue to workers whose hello has `capabilities.batch`),
// in order. Any invalid member makes the whole text an error.
boost::system::result<std::vector<WorkerMessage>, std::string> parse_worker_messages(
    std::string_view text);

}  // namespace drover::proto::worker
