// Typed params of the client methods (shared/DESIGN.md section 4), read once at the edge from
// the params' JSON text (RpcRequest::params) in one on-demand walk, without a tree.
// Errors are the text of a -32602 reply and name the offending param and what is allowed.
// Unknown params are errors too, so a typo ("max_token") is reported, not ignored.
// Pure, thread-safe.
#pragma once

#include <boost/system/result.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/jsonrpc.hpp"
#include "proto/worker_codec.hpp"

namespace drover::proto {

template <typename T>
using ParamsResult = boost::system::result<T, std::string>;

enum class Priority { high, normal, low };
enum class CacheMode { use, bypass };  // "default" on the wire is CacheMode::use

struct GenerateParams {
  std::string model;  // empty: the pool's default model
  std::string prompt;
  int max_tokens = 64;
  double temperature = 0.8;
  double top_p = 0.95;
  std::optional<std::uint64_t> seed;  // absent: the supervisor assigns one and records it
  std::vector<std::string> stop;
  bool stream = false;
  Priority priority = Priority::normal;
  CacheMode cache = CacheMode::use;
  std::optional<std::int64_t> timeout_ms;

  // The worker's generate request (the fields a worker needs, seed resolved).
  worker::GenerateRequest to_worker_request(std::uint64_t resolved_seed) const;
};

struct TokenizeParams {
  std::string model;
  std::string text;
  Priority priority = Priority::normal;
};

struct DetokenizeParams {
  std::string model;
  std::vector<std::int64_t> tokens;
};

struct CancelParams {
  RpcId id;  // the JSON text of the request id to cancel, as the client wrote it
};

constexpr int kMaxTokensLimit = 1 << 20;

// `params`: the params' JSON text, empty when absent. REQUIRES: valid JSON (parse_message checked
// the whole message); text that is not is refused as "params are not JSON".
ParamsResult<GenerateParams> parse_generate_params(std::string_view params);
ParamsResult<TokenizeParams> parse_tokenize_params(std::string_view params);
ParamsResult<DetokenizeParams> parse_detokenize_params(std::string_view params);
ParamsResult<CancelParams> parse_cancel_params(std::string_view params);
// For methods without parameters: absent, {} and [] are accepted; anything else is an error.
ParamsResult<bool> parse_no_params(std::string_view params);

std::string to_string(Priority p);

// --- results and notifications sent to clients (their JSON text) -----------------------------

// How long a generate took, for its result's `timing`.
struct GenerateTiming {
  double queue_ms = 0, ttft_ms = 0, total_ms = 0;
};

// generate's result: the worker's text, finish_reason and usage, then `worker` (null when no
// worker was involved), `cache` and `timing`.
void encode_generate_result(std::string& out, const worker::GenerateResult& r, int worker_slot,
                            std::string_view cache, const GenerateTiming& timing);
// tokenize's {"tokens": [...]}.
void encode_tokens_result(std::string& out, const std::vector<std::int64_t>& tokens);
// detokenize's {"text": ...}.
void encode_text_result(std::string& out, std::string_view text);
// A generate.chunk notification of the stream whose request id is `id` (JSON text);
// `coalesced` > 0: the frame carries that many worker chunks (stream flow control).
void encode_chunk_notification(std::string& out, std::string_view id, std::uint64_t index,
                               std::string_view text, std::size_t coalesced = 0);

}  // namespace drover::proto
