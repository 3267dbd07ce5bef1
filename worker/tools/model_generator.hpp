// Model generator: writes a small llama2.c checkpoint and tokenizer.bin deterministically, so
// drover serves a real transformer with no download (docs/MODELS.md). The same seed and spec
// give the same bytes on every machine: weights come from splitmix64, not from <random>
// distributions (whose output the standard leaves to the library).
//
// Tokenizer: the Llama 2 layout — <unk>, BOS, EOS, the 256 byte tokens <0x00>..<0xFF>, the 95
// printable ASCII characters, then BPE merges learnt from a built-in English text (most
// frequent adjacent pair first, ties broken by the merged string), scored -rank so that
// llama2.c's encode() applies them in the order learnt. Any text encodes: characters outside
// the vocabulary fall back to byte tokens.
//
// Weights: uniform random with the scale of a freshly initialised network (1/sqrt(fan_in)),
// RMSNorm gains near 1, and the RoPE tables llama2.c's legacy export writes (unused by
// run.c and tinyllm, but part of the format). The model is untrained: it exists to exercise
// and measure the real inference path. The shipped preset adds a bigram model of the text
// (ModelSpec::bigram) so that its output at least reads like the text's words.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "worker/backends/tinyllm/checkpoint.hpp"
#include "worker/backends/tinyllm/tokenizer.hpp"

namespace drover::worker::tinyllm {

struct ModelSpec {
  ModelConfig config;
  std::uint64_t seed = 1;
  // Store a bigram model of the built-in text in the embedding and a separate classifier, with
  // the layers' residual branches scaled down so they barely perturb it: generated text is then
  // word salad from the text's vocabulary instead of random bytes. The forward pass does exactly
  // the same work; only the numbers differ. Requires an unshared classifier.
  bool bigram = false;
};

// Named specs: "shipped" (what scripts/run serves), "tiny" and "tiny-unshared" (the reference
// tests: small enough for a pure-Python forward pass, with grouped-query attention).
// Returns false for an unknown name.
bool preset_spec(std::string_view name, ModelSpec& out);

// The deterministic BPE vocabulary of `vocab_size` tokens (at least 354: specials, bytes and
// printable ASCII).
boost::system::result<Tokenizer, std::string> build_tokenizer(int vocab_size);

// Writes the checkpoint and the tokenizer. Returns an error message, or empty on success.
std::string write_model(const ModelSpec& spec, const std::string& model_path,
                        const std::string& tokenizer_path);

}  // namespace drover::worker::tinyllm
