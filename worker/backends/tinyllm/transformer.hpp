// Transformer: the Llama 2 forward pass of llama2.c's run.c over a mapped Checkpoint —
// RMSNorm, rotary position embeddings (RoPE), grouped-query attention with a KV cache,
// SwiGLU feed-forward, and the classifier. forward(token, pos) returns the logits for the
// token after `token`.
//
// The math is run.c's, operation for operation, in float32; only the order of additions inside
// each dot product differs (8-wide vector lanes, then a fixed reduction), which moves results
// by a few ulps. tests/reference/ compares the logits with an independent Python
// implementation.
//
// Threads: the Transformer (weights and a ParallelFor) is shared by all sequences; a Sequence
// (activations and KV cache) belongs to one generation. forward() must be called by one thread
// at a time (it drives the ParallelFor); the backend calls it from its compute thread only.
// The Checkpoint must outlive the Transformer.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "worker/backends/tinyllm/checkpoint.hpp"
#include "worker/backends/tinyllm/parallel_for.hpp"

namespace drover::worker::tinyllm {

class Transformer {
 public:
  // Per-sequence state: activations and the KV cache (n_layers x seq_len x kv_dim, keys and
  // values). The cache is allocated but not touched until positions are written, so a short
  // generation on a long-context model faults in only the pages it uses.
  class Sequence {
   public:
    explicit Sequence(const ModelConfig& c);
    // Positions 0..next_pos()-1 are in the cache.
    int next_pos() const { return next_pos_; }

   private:
    friend class Transformer;
    std::vector<float> x_, xb_, hb_, q_, att_, logits_;
    std::unique_ptr<float[]> key_cache_, value_cache_;
    int next_pos_ = 0;
  };

  Transformer(const Checkpoint& checkpoint, int threads);

  const ModelConfig& config() const { return config_; }
  int threads() const { return pool_.threads(); }
  Sequence new_sequence() const { return Sequence(config_); }

  // Runs `token` at position `pos` and returns the logits (vocab_size values, valid until the
  // next call on `seq`). With want_logits false (prompt tokens before the last) the classifier
  // is skipped and the span is empty.
  // REQUIRES: 0 <= token < vocab_size; pos == seq.next_pos() < seq_len.
  std::span<float> forward(Sequence& seq, int token, int pos, bool want_logits = true);

 private:
  ModelConfig config_;
  Weights w_;
  ParallelFor pool_;
  std::vector<float> rope_cos_, rope_sin_;  // [seq_len][head_size / 2]
};

}  // namespace drover::worker::tinyllm
