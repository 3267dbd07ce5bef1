// Transformer: the Llama 2 forward pass of llama2.c's run.c over a mapped Checkpoint —
// RMSNorm, rotary position embeddings (RoPE), grouped-query attention with a KV cache,
// SwiGLU feed-forward, and the classifier — for a batch of rows at once. A row is one token of
// one sequence at one position; forward() returns the logits for the token after it.
//
// Batching: every row of a pass goes through each weight matrix together: a weight row is
// loaded once and multiplied with every row's activations while it is in the L1 cache, so a
// pass over B rows reads the weights once instead of B times (the model is memory-bound: the
// shipped model's 13 MB and stories15M's 60 MB do not fit in cache). Rows may belong to
// different sequences (continuous batching: one decode step for every running generation) or
// be consecutive positions of one sequence (batched prefill: a prompt chunk in one
// matrix-matrix pass), or both.
//
// Exactness: each output element is computed by the same code in the same order whatever the
// batch, the other rows and the thread count, so a row's logits are bit-identical to the same
// sequence run alone, one token at a time (tested at batch sizes 1..32).
//
// The math is run.c's, operation for operation, in float32; only the order of additions inside
// each dot product differs (8-wide vector lanes, then a fixed reduction), which moves results
// by a few ulps. tests/reference/ compares the logits with an independent Python
// implementation.
//
// Q8_0 checkpoints (llama2.c's version-2 export) run runq.c's forward pass: the same, except
// that every matmul quantizes its input rows to int8 per group first and multiplies int8 by
// int8 (q8.hpp), and that the token embedding is dequantized row by row from the file (runq.c
// dequantizes the whole table at load; this keeps it shared in the page cache). RMSNorm,
// RoPE, attention and the KV cache stay float32, as in runq.c. The exactness above holds for
// Q8_0 too.
//
// Threads: the Transformer (weights, a ParallelFor and the activations of the rows of one pass)
// is shared by all sequences; a Sequence (its KV cache) belongs to one generation. forward()
// must be called by one thread at a time (it drives the ParallelFor and owns the activations);
// the backend calls it from its compute thread only. The Checkpoint must outlive the
// Transformer.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "worker/backends/tinyllm/checkpoint.hpp"
#include "worker/backends/tinyllm/parallel_for.hpp"

namespace drover::worker::tinyllm {

class Transformer {
 public:
  // Per-sequence state: the KV cache (n_layers x seq_len x kv_dim, keys and values). The cache
  // is allocated but not touched until positions are written, so a short generation on a
  // long-context model faults in only the pages it uses.
  class Sequence {
   public:
    explicit Sequence(const ModelConfig& c);
    // Positions 0..next_pos()-1 are in the cache.
    int next_pos() const { return next_pos_; }

   private:
    friend class Transformer;
    std::unique_ptr<float[]> key_cache_, value_cache_;
    int next_pos_ = 0;
  };

  // One token of one sequence at one position. With want_logits false (prompt tokens before
  // the last) the classifier is skipped for this row.
  struct Row {
    Sequence* seq = nullptr;
    int token = 0;
    int pos = 0;
    bool want_logits = true;
  };

  Transformer(const Checkpoint& checkpoint, int threads);

  const ModelConfig& config() const { return config_; }
  int threads() const { return pool_.threads(); }
  Sequence new_sequence() const { return Sequence(config_); }

  // Runs every row in one pass. Afterwards logits(i) holds row i's logits (vocab_size values,
  // empty when the row did not want them), valid until the next forward().
  // REQUIRES: 0 <= token < vocab_size; the rows of one sequence are consecutive positions in
  // order, the first at seq->next_pos(), all < seq_len.
  void forward(std::span<const Row> rows);
  std::span<float> logits(std::size_t row);

  // One row: forward({{&seq, token, pos, want_logits}}) and its logits.
  std::span<float> forward(Sequence& seq, int token, int pos, bool want_logits = true);

 private:
  // Grows the activations to hold `rows` rows.
  void reserve(std::size_t rows);

  ModelConfig config_;
  Weights w_;
  ParallelFor pool_;
  std::vector<float> rope_cos_, rope_sin_;  // [seq_len][head_size / 2]
  // Activations of the rows of one pass, row-major: x, xb, q [rows][dim], hb [rows][hidden],
  // att [rows][n_heads][seq_len]; logits [rows wanting them][vocab].
  std::size_t capacity_ = 0;
  std::vector<float> x_, xb_, q_, hb_, att_, logits_;
  std::vector<std::ptrdiff_t> logits_row_;  // row -> index in logits_, or -1
  // Q8_0: the quantized input rows of the current matmul, [rows][max(dim, hidden)] values and
  // their scales, and pointers to each row's.
  std::vector<std::int8_t> xq_;
  std::vector<float> xs_;
  std::vector<const std::int8_t*> xq_row_;
  std::vector<const float*> xs_row_;
};

}  // namespace drover::worker::tinyllm
