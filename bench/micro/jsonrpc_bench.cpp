// The JSON work droverd does per generate call at the edge: parse and validate the envelope,
// parse the typed params, and serialise the result. These are full nlohmann-json parses; the
// figures bound what the envelope-only scan of shared/STYLE.md smell 2 would save.
#include <benchmark/benchmark.h>

#include <string>
#include <variant>

#include "bench/micro/sample_messages.hpp"
#include "proto/client_params.hpp"
#include "proto/jsonrpc.hpp"

namespace drover::bench {
namespace {

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
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kGenerateRequest.size()));
}
BENCHMARK(BM_ParseMessage_Generate);

void BM_ParseGenerateParams(benchmark::State& state) {
  const proto::json params = generate_params();
  for (auto _ : state) {
    auto parsed = proto::parse_generate_params(params);
    if (!parsed) {
      state.SkipWithError("sample params were rejected");
      return;
    }
    benchmark::DoNotOptimize(parsed);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseGenerateParams);

void BM_MakeResult_Generate(benchmark::State& state) {
  const proto::json id = 1042;
  const proto::json result = generate_result();
  std::size_t reply_bytes = 0;
  for (auto _ : state) {
    std::string reply = proto::make_result(id, result);
    reply_bytes = reply.size();
    benchmark::DoNotOptimize(reply.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(reply_bytes));
  state.SetLabel(std::to_string(reply_bytes) + " B/reply");
}
BENCHMARK(BM_MakeResult_Generate);

}  // namespace
}  // namespace drover::bench
