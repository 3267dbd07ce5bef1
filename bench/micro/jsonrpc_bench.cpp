// The JSON work droverd does per generate call (shared/DESIGN.md section 4a): scan the client's
// envelope, read the typed params, write the worker request, read the worker's reply, and for
// a stream write and read each chunk, all through the byte-carrying codecs of proto/. Each has
// a before-figure beside it: nlohmann-json parsing the same bytes into a tree and dumping it
// again, which is what droverd did per message before the codecs (BM_Nlohmann_*).
// Sample bytes: bench/micro/sample_messages.hpp.
#include <benchmark/benchmark.h>

#include <string>
#include <string_view>
#include <variant>

#include "bench/micro/sample_messages.hpp"
#include "proto/client_params.hpp"
#include "proto/jsonrpc.hpp"
#include "proto/worker_codec.hpp"

namespace drover::bench {
namespace {

void per_message(benchmark::State& state, std::string_view bytes) {
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}

// --- client -> droverd ---------------------------------------------------------------------------

void BM_ParseMessage_Generate(benchmark::State& state) {
  for (auto _ : state) {
    proto::ParsedMessage parsed = proto::parse_message(kGenerateRequest);
    if (parsed.entries.size() != 1 ||
        !std::holds_alternative<proto::RpcRequest>(parsed.entries[0])) {
      state.SkipWithError("sample request did not parse as one request");
      return;
    }
    benchmark::DoNotOptimize(parsed);
  }
  per_message(state, kGenerateRequest);
}
BENCHMARK(BM_ParseMessage_Generate);

void BM_ParseGenerateParams(benchmark::State& state) {
  for (auto _ : state) {
    auto parsed = proto::parse_generate_params(kGenerateParams);
    if (!parsed) {
      state.SkipWithError("sample params were rejected");
      return;
    }
    benchmark::DoNotOptimize(parsed);
  }
  per_message(state, kGenerateParams);
}
BENCHMARK(BM_ParseGenerateParams);

// --- droverd -> worker ---------------------------------------------------------------------------

void BM_EncodeGenerate(benchmark::State& state) {
  const auto params = proto::parse_generate_params(kGenerateParams);
  const proto::worker::GenerateRequest request = params->to_worker_request(7);
  std::string out;
  proto::worker::encode_generate(out, 88, request);
  if (out != kWorkerGenerateRequest) {
    state.SkipWithError("kWorkerGenerateRequest is not what encode_generate writes");
    return;
  }
  for (auto _ : state) {
    out.clear();
    proto::worker::encode_generate(out, 88, request);
    benchmark::DoNotOptimize(out.data());
  }
  per_message(state, out);
  state.SetLabel(std::to_string(out.size()) + " B");
}
BENCHMARK(BM_EncodeGenerate);

// --- worker -> droverd ---------------------------------------------------------------------------

void BM_DecodeReadGenerateResult(benchmark::State& state) {
  std::string expected;
  proto::worker::encode_generate_result(
      expected, 88,
      {"the drover moves herd across plains at dawn and dusk with steady pace under wide sky",
       "length",
       {71, 16}});
  if (expected != kWorkerGenerateReply) {
    state.SkipWithError("kWorkerGenerateReply is not what encode_generate_result writes");
    return;
  }
  proto::worker::Decoder decoder;
  for (auto _ : state) {
    auto messages = decoder.decode(kWorkerGenerateReply);
    if (!messages || messages->size() != 1) {
      state.SkipWithError("sample reply did not decode");
      return;
    }
    auto result = proto::worker::read_generate_result((*messages)[0].result);
    if (!result) {
      state.SkipWithError("sample result was rejected");
      return;
    }
    benchmark::DoNotOptimize(result);
  }
  per_message(state, kWorkerGenerateReply);
}
BENCHMARK(BM_DecodeReadGenerateResult);

void BM_EncodeChunk(benchmark::State& state) {
  std::string out;
  proto::worker::encode_chunk(out, 88, 3, " across");
  if (out != kWorkerChunk) {
    state.SkipWithError("kWorkerChunk is not what encode_chunk writes");
    return;
  }
  for (auto _ : state) {
    out.clear();
    proto::worker::encode_chunk(out, 88, 3, " across");
    benchmark::DoNotOptimize(out.data());
  }
  per_message(state, out);
}
BENCHMARK(BM_EncodeChunk);

void BM_DecodeReadChunk(benchmark::State& state) {
  proto::worker::Decoder decoder;
  for (auto _ : state) {
    auto messages = decoder.decode(kWorkerChunk);
    if (!messages || messages->size() != 1) {
      state.SkipWithError("sample chunk did not decode");
      return;
    }
    auto chunk = proto::worker::read_chunk((*messages)[0].params);
    if (!chunk) {
      state.SkipWithError("sample chunk was rejected");
      return;
    }
    benchmark::DoNotOptimize(chunk);
  }
  per_message(state, kWorkerChunk);
}
BENCHMARK(BM_DecodeReadChunk);

// --- droverd -> client ---------------------------------------------------------------------------

// The final reply: the client's id spliced in front of the result written from typed fields.
void BM_EncodeClientGenerateReply(benchmark::State& state) {
  const proto::worker::GenerateResult result{
      "the drover moves herd across plains at dawn and dusk with steady pace under wide sky",
      "length",
      {71, 16}};
  std::string out;
  for (auto _ : state) {
    out.clear();
    proto::open_result(out, "1042");
    proto::encode_generate_result(out, result, 1, "miss",
                                  proto::GenerateTiming{0.004, 0.061, 0.083});
    out += '}';
    benchmark::DoNotOptimize(out.data());
  }
  per_message(state, out);
  state.SetLabel(std::to_string(out.size()) + " B");
}
BENCHMARK(BM_EncodeClientGenerateReply);

// --- before: nlohmann parse + dump of the same bytes ---------------------------------------------

void nlohmann_parse_dump(benchmark::State& state, std::string_view bytes) {
  for (auto _ : state) {
    proto::json tree = proto::json::parse(bytes);
    std::string out = tree.dump();
    benchmark::DoNotOptimize(out.data());
  }
  per_message(state, bytes);
}

void BM_Nlohmann_ParseDump_GenerateRequest(benchmark::State& state) {
  nlohmann_parse_dump(state, kGenerateRequest);
}
BENCHMARK(BM_Nlohmann_ParseDump_GenerateRequest);

void BM_Nlohmann_ParseDump_GenerateParams(benchmark::State& state) {
  nlohmann_parse_dump(state, kGenerateParams);
}
BENCHMARK(BM_Nlohmann_ParseDump_GenerateParams);

void BM_Nlohmann_ParseDump_WorkerGenerateRequest(benchmark::State& state) {
  nlohmann_parse_dump(state, kWorkerGenerateRequest);
}
BENCHMARK(BM_Nlohmann_ParseDump_WorkerGenerateRequest);

void BM_Nlohmann_ParseDump_WorkerGenerateReply(benchmark::State& state) {
  nlohmann_parse_dump(state, kWorkerGenerateReply);
}
BENCHMARK(BM_Nlohmann_ParseDump_WorkerGenerateReply);

void BM_Nlohmann_ParseDump_WorkerChunk(benchmark::State& state) {
  nlohmann_parse_dump(state, kWorkerChunk);
}
BENCHMARK(BM_Nlohmann_ParseDump_WorkerChunk);

// The old reply path: the result as a tree, dumped into make_result.
void BM_Nlohmann_MakeResult_Generate(benchmark::State& state) {
  const proto::json result = generate_result();
  std::size_t bytes = 0;
  for (auto _ : state) {
    std::string reply = proto::make_result("1042", result);
    bytes = reply.size();
    benchmark::DoNotOptimize(reply.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_Nlohmann_MakeResult_Generate);

}  // namespace
}  // namespace drover::bench
