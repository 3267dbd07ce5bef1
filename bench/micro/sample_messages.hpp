// Representative messages shared by the micro-benchmarks, so every codec is measured on the
// same bytes: a client's unary generate request (about 200 bytes, the size the NDJSON and
// Content-Length figures in docs/PERFORMANCE.md refer to), the result droverd sends back for
// it (16 sim tokens, with the usage, worker, cache and timing members the supervisor adds), and
// the worker-protocol messages of the same call: the worker's generate request, its reply and
// one streamed chunk.
#pragma once

#include <string_view>

#include "proto/jsonrpc.hpp"

namespace drover::bench {

inline constexpr std::string_view kGenerateRequest =
    R"({"jsonrpc":"2.0","id":1042,"method":"generate","params":{"model":"sim",)"
    R"("prompt":"Summarise in one sentence: the quick brown fox jumps over the lazy dog.",)"
    R"("max_tokens":16,"temperature":0.7,"seed":7}})";

// The params of kGenerateRequest, as parse_message hands them on.
inline constexpr std::string_view kGenerateParams =
    R"({"model":"sim",)"
    R"("prompt":"Summarise in one sentence: the quick brown fox jumps over the lazy dog.",)"
    R"("max_tokens":16,"temperature":0.7,"seed":7})";

// What droverd sends the worker for kGenerateRequest (proto::worker::encode_generate's bytes).
inline constexpr std::string_view kWorkerGenerateRequest =
    R"({"jsonrpc":"2.0","id":88,"method":"generate","params":{"prompt":)"
    R"("Summarise in one sentence: the quick brown fox jumps over the lazy dog.",)"
    R"("max_tokens":16,"temperature":0.7,"top_p":0.95,"seed":7,"stream":false,"model":"sim"}})";

// The worker's reply to it (proto::worker::encode_generate_result's bytes).
inline constexpr std::string_view kWorkerGenerateReply =
    R"({"jsonrpc":"2.0","id":88,"result":{"text":)"
    R"("the drover moves herd across plains at dawn and dusk with steady pace under wide sky",)"
    R"("finish_reason":"length","usage":{"prompt_tokens":71,"completion_tokens":16}}})";

// One streamed token (proto::worker::encode_chunk's bytes).
inline constexpr std::string_view kWorkerChunk =
    R"({"jsonrpc":"2.0","method":"generate.chunk","params":{"id":88,"index":3,"text":" across"}})";

inline proto::json generate_params() { return proto::json::parse(kGenerateRequest)["params"]; }

inline proto::json generate_result() {
  return {{"text",
           "the drover moves herd across plains at dawn and dusk with steady pace under wide sky"},
          {"finish_reason", "length"},
          {"usage", {{"prompt_tokens", 71}, {"completion_tokens", 16}}},
          {"worker", 1},
          {"cache", "miss"},
          {"timing", {{"queue_ms", 0.004}, {"ttft_ms", 0.061}, {"total_ms", 0.083}}}};
}

}  // namespace drover::bench
