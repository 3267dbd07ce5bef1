// SimBackend: synthetic generation for benchmarks and chaos tests (shared/DESIGN.md section 6).
// Text is a sequence of words drawn by a PRNG seeded from (seed, prompt) — or from the prompt
// alone at temperature 0, like greedy decoding — so it is deterministic per seed and differs
// between seeds. Timing is configurable (load, time to first token, tokens per second), and so
// are faults: crash, hang or garbage output after N requests. Tokens are the prompt's UTF-8
// bytes, so tokenize/detokenize round-trip. Runtime thread only.
#pragma once

#include "worker/backends/backend.hpp"

#include <boost/asio/any_io_executor.hpp>

namespace drover::worker {

struct SimOptions {
  std::string model = "sim";
  int load_ms = 0;
  int ttft_ms = 0;
  double tokens_per_s = 0;  // 0: as fast as possible
  // Fault injection: after serving this many requests, the next one triggers the fault
  // (-1: never). Requests are generate, batch_tokenize and detokenize.
  int crash_after = -1;
  int hang_after = -1;
  int garbage_after = -1;
};

class SimBackend final : public Backend {
 public:
  SimBackend(boost::asio::any_io_executor executor, SimOptions options);

  std::vector<std::string> models() const override { return {opt_.model}; }
  boost::asio::awaitable<BackendResult<json>> load() override;
  boost::asio::awaitable<BackendResult<GenerateOutcome>> generate(
      const GenerateRequest& request, ChunkSink on_chunk, std::shared_ptr<CancelFlag> cancel) override;
  BackendResult<std::vector<std::vector<std::int64_t>>> batch_tokenize(
      const std::string& model, const std::vector<std::string>& texts) override;
  BackendResult<std::string> detokenize(const std::string& model,
                                        const std::vector<std::int64_t>& tokens) override;
  Fault next_fault() override;
  bool inject(Fault fault) override;
  bool can_inject(Fault fault) const override { return fault == Fault::stall || fault == Fault::slow; }

 private:
  std::optional<BackendError> check_model(const std::string& model) const;

  boost::asio::any_io_executor executor_;
  SimOptions opt_;
  int served_ = 0;
  bool stalled_ = false;
};

// The sim's text for a request, without timing: what generate() streams. Exposed for tests.
std::vector<std::string> sim_tokens(const std::string& prompt, std::uint64_t seed,
                                    double temperature, int max_tokens);

}  // namespace drover::worker
