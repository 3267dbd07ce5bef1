// Sampler: picks the next token from a step's logits, as llama2.c's sample() does.
//  - temperature 0: argmax (greedy; the seed is irrelevant);
//  - otherwise logits / temperature, softmax, one coin from the RNG, then either the whole
//    distribution (top_p <= 0 or >= 1) or top-p nucleus sampling: the most likely tokens
//    whose cumulative probability first exceeds top_p, sampled with the coin scaled to their
//    mass. Candidates below (1 - top_p) / (n - 1) are dropped before sorting (they can never
//    be in the nucleus); ties in probability keep token order, so results do not depend on
//    the sort implementation (llama2.c's qsort leaves that order unspecified).
// Cost (issue 17): greedy is one argmax pass, no softmax. Sampling computes exactly the floats
// the textbook version does, but only those it reads (sampler.cpp), and orders the nucleus by
// selecting the likeliest 64 first (a trained model's nucleus is usually inside them) and
// radix-sorting only when it is not (a flat distribution): the same token for the same seed.
// The RNG is llama2.c's xorshift64* random_u32 with the request's seed as its state, so the
// same seed gives the same tokens for a given model and prompt. Seed 0 is xorshift's fixed
// point (it would return 0 forever); it is replaced by a fixed non-zero constant.
// One Sampler per sequence; not thread-safe; it owns scratch space of vocab_size entries.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace drover::worker::tinyllm {

inline constexpr std::uint64_t kZeroSeedState = 0x9E3779B97F4A7C15ULL;

// llama2.c's RNG, exposed for tests.
class XorShiftRng {
 public:
  explicit XorShiftRng(std::uint64_t seed) : state_(seed == 0 ? kZeroSeedState : seed) {}
  std::uint32_t next_u32() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return static_cast<std::uint32_t>((state_ * 0x2545F4914F6CDD1DULL) >> 32);
  }
  // Uniform in [0, 1), 24 bits.
  float next_f32() { return static_cast<float>(next_u32() >> 8) / 16777216.0f; }

 private:
  std::uint64_t state_;
};

class Sampler {
 public:
  Sampler(int vocab_size, float temperature, float top_p, std::uint64_t seed);

  // REQUIRES: logits.size() == vocab_size. Overwrites logits (scratch).
  int sample(std::span<float> logits);

  struct ProbIndex {
    float prob;
    int index;
  };

 private:
  // Top-p: candidates whose probability selection checks first before ordering them all.
  static constexpr std::size_t kFirstBlock = 64;

  int sample_top_p(std::span<float> exps, float sum, float coin);
  // Orders scratch_ (descending probability, ties by token) as far as the nucleus needs it;
  // returns the index of the nucleus' last entry.
  std::size_t order_nucleus(float max_prob);
  // Orders scratch_[from, end) completely.
  void radix_sort(std::size_t from, bool in_token_order);

  float temperature_;
  float top_p_;
  XorShiftRng rng_;
  std::vector<ProbIndex> scratch_;
  std::vector<std::uint64_t> keys_;
  std::vector<std::uint64_t> keys_tmp_;
};

// Helpers shared with the transformer and the tests.
int argmax(std::span<const float> x);
void softmax(std::span<float> x);

}  // namespace drover::worker::tinyllm
