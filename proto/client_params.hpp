// Typed params of the client methods (shared/DESIGN.md section 4), parsed once at the edge.
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

  // The params of the worker's generate request (the fields a worker needs, seed resolved).
  json to_worker_params(std::uint64_t resolved_seed) const;
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
  json id;  // the request id to cancel, as the client wrote it
};

constexpr int kMaxTokensLimit = 1 << 20;

ParamsResult<GenerateParams> parse_generate_params(const json& params);
ParamsResult<TokenizeParams> parse_tokenize_params(const json& params);
ParamsResult<DetokenizeParams> parse_detokenize_params(const json& params);
ParamsResult<CancelParams> parse_cancel_params(const json& params);
// For methods without parameters: absent, {} and [] are accepted; anything else is an error.
ParamsResult<bool> parse_no_params(const json& params);

std::string to_string(Priority p);

}  // namespace drover::proto
