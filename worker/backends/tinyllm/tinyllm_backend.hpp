// TinyLlmBackend: the real inference backend (shared/DESIGN.md section 6). Serves one
// llama2.c checkpoint (checkpoint.hpp) with its tokenizer (tokenizer.hpp): generate with
// temperature / top-p sampling from a seeded RNG (sampler.hpp), stop strings, max_tokens,
// streaming and cancel; batch_tokenize and detokenize with the real tokenizer.
//
// Threads: the runtime calls every method on its io_context thread. Forward passes never run
// there: they run on one compute thread owned by this object (plus the --threads - 1 matmul
// helpers of the Transformer), one step at a time, and the io_context resumes after each step.
// So heartbeats and cancels are handled while tokens are produced, and cancel is checked
// between steps. The destructor waits for the step in flight, if any.
//
// Continuous batching: concurrent generates share each step. A step is one forward pass over
// every running generation — the next chunk of its prompt (batched prefill) or its next token
// — so the weights are read once per step, not once per generation. Generations join and leave
// between steps (iteration-level scheduling), up to max_batch at once (the rest wait, in
// order); each keeps its own KV cache, sampler and seed, stop strings, stream and cancel. A
// generation's tokens are the same whatever else runs beside it (transformer.hpp: each output
// element is computed alone, in a fixed order).
//
// Generation follows llama2.c's run.c: the prompt is encoded with BOS and the dummy prefix,
// prompt positions are forced, then tokens are sampled until max_tokens, the end of the
// context (seq_len positions), or an end-of-sequence token (BOS, which run.c stops on, or EOS).
// Token pieces are decoded with run.c's rules and assembled into UTF-8 text (completion.hpp).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/thread_pool.hpp>
#include <deque>
#include <memory>
#include <utility>
#include <vector>
#include <string>

#include "worker/backends/backend.hpp"
#include "worker/backends/tinyllm/checkpoint.hpp"
#include "worker/backends/tinyllm/tokenizer.hpp"
#include "worker/backends/tinyllm/transformer.hpp"

namespace drover::worker {

struct TinyLlmOptions {
  std::string model_name;      // the id requests use; empty: the checkpoint file's stem
  std::string model_path;      // llama2.c checkpoint (.bin)
  std::string tokenizer_path;  // empty: tokenizer.bin in the checkpoint's directory
  int threads = 1;             // threads per forward pass (matmul rows, attention heads)
  int max_batch = kDefaultMaxBatch;  // generations per step (the worker's capability)
  static constexpr int kDefaultMaxBatch = 32;
};

class TinyLlmBackend final : public Backend {
 public:
  TinyLlmBackend(boost::asio::any_io_executor executor, TinyLlmOptions options);
  ~TinyLlmBackend() override;

  std::vector<std::string> models() const override { return {name_}; }
  // Maps the checkpoint, reads the tokenizer, builds the transformer and runs one forward pass
  // to fault the weights in. Result: {models, load_ms, warmup_ms, max_batch, model: {config,
  // parameters, file_bytes, threads}}; errors name the file and the problem.
  boost::asio::awaitable<BackendResult<json>> load() override;
  boost::asio::awaitable<BackendResult<GenerateOutcome>> generate(
      const GenerateRequest& request, ChunkSink on_chunk,
      std::shared_ptr<CancelFlag> cancel) override;
  // Tokens as generate feeds them to the model: BOS, the dummy prefix, BPE merges.
  BackendResult<std::vector<std::vector<std::int64_t>>> batch_tokenize(
      const std::string& model, const std::vector<std::string>& texts) override;
  // Inverse of batch_tokenize (BOS/EOS produce no text); invalid UTF-8 becomes U+FFFD.
  BackendResult<std::string> detokenize(const std::string& model,
                                        const std::vector<std::int64_t>& tokens) override;

  // The loaded model (nullptr before load()); for tests and tools.
  const tinyllm::Tokenizer* tokenizer() const { return model_ ? &model_->tokenizer : nullptr; }
  const tinyllm::ModelConfig* config() const {
    return model_ ? &model_->checkpoint.config() : nullptr;
  }
  // Forward passes run for generations so far (each serves every generation then running).
  std::uint64_t steps() const { return steps_; }
  // Steps since the previous call and their wall time (compute thread hand-off included).
  StepStats take_step_stats() override { return std::exchange(step_stats_, {}); }

 private:
  struct Model {
    tinyllm::Checkpoint checkpoint;
    tinyllm::Tokenizer tokenizer;
    std::unique_ptr<tinyllm::Transformer> transformer;
  };
  struct Job;
  std::optional<BackendError> check_model(const std::string& model) const;
  // The step loop: runs while generations run or wait; started by the first generate.
  boost::asio::awaitable<void> run_steps();
  // Turns a step's sampled token into text on the io thread; true when the job ended.
  bool after_step(Job& job, const tinyllm::Tokenizer& tok);
  template <typename F>
  boost::asio::awaitable<void> on_compute(F&& fn);

  boost::asio::any_io_executor executor_;
  TinyLlmOptions opt_;
  std::string name_;
  std::unique_ptr<Model> model_;  // set once by load(), then immutable
  int max_batch_;
  std::deque<std::shared_ptr<Job>> waiting_;  // io thread
  std::vector<std::shared_ptr<Job>> running_;  // io thread, and the compute thread in a step
  bool stepping_ = false;                      // run_steps() is running
  std::uint64_t steps_ = 0;
  StepStats step_stats_;  // io thread
  boost::asio::thread_pool compute_{1};
};

}  // namespace drover::worker
