#include "worker/backends/tinyllm/sampler.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

namespace drover::worker::tinyllm {

int argmax(std::span<const float> x) {
  if (x.empty()) return 0;
  // The best value is kept in a register rather than reloaded through its index: the same
  // comparisons (so the first maximum wins, NaNs never do), without a load in the loop's
  // dependency chain (3-4x faster over a 32000-token vocabulary).
  std::size_t best = 0;
  float best_value = x[0];
  for (std::size_t i = 1; i < x.size(); ++i) {
    if (x[i] > best_value) {
      best_value = x[i];
      best = i;
    }
  }
  return static_cast<int>(best);
}

void softmax(std::span<float> x) {
  if (x.empty()) return;
  float max_val = x[0];
  for (const float v : x) max_val = std::max(max_val, v);
  float sum = 0.0f;
  for (float& v : x) {
    v = std::exp(v - max_val);
    sum += v;
  }
  for (float& v : x) v /= sum;
}

Sampler::Sampler(int vocab_size, float temperature, float top_p, std::uint64_t seed)
    : temperature_(temperature), top_p_(top_p), rng_(seed) {
  scratch_.reserve(static_cast<std::size_t>(vocab_size));
}

// The float operations are those of the straightforward version (logits / temperature, then
// softmax, then the cdf walk or the nucleus), in the same order, so every probability, sum and
// cdf is the same float and so is the token; what changed is which of them are computed:
//  - the maximum is taken over the raw logits and divided once: correctly rounded division by
//    a positive number is monotone, so max(l / t) == max(l) / t exactly;
//  - scaling, exp and the sum share one pass, and a probability (exp / sum) is computed only
//    where it is read: up to the sampled token in the cdf walk, in the cutoff filter for top-p.
int Sampler::sample(std::span<float> logits) {
  if (temperature_ == 0.0f) return argmax(logits);
  if (logits.empty()) return 0;
  float max_logit = logits[0];
  for (const float v : logits) max_logit = std::max(max_logit, v);
  const float max_val = max_logit / temperature_;
  float sum = 0.0f;
  for (float& v : logits) {
    v = std::exp(v / temperature_ - max_val);
    sum += v;
  }
  const float coin = rng_.next_f32();
  if (top_p_ <= 0.0f || top_p_ >= 1.0f) {
    float cdf = 0.0f;
    for (std::size_t i = 0; i < logits.size(); ++i) {
      cdf += logits[i] / sum;
      if (coin < cdf) return static_cast<int>(i);
    }
    return static_cast<int>(logits.size()) - 1;  // rounding: the sum fell short of the coin
  }
  return sample_top_p(logits, sum, coin);
}

int Sampler::sample_top_p(std::span<float> exps, float sum, float coin) {
  const int n = static_cast<int>(exps.size());
  const float cutoff = n > 1 ? (1.0f - top_p_) / static_cast<float>(n - 1) : 0.0f;
  scratch_.clear();
  for (int i = 0; i < n; ++i) {
    const float prob = exps[static_cast<std::size_t>(i)] / sum;
    if (prob >= cutoff) scratch_.push_back(ProbIndex{prob, i});
  }
  // Empty only when top_p is so small that even the likeliest token is under the cutoff (a
  // near-uniform distribution): the nucleus is then the likeliest token (by probability: two
  // exps may round to one probability, and the first of them is the answer).
  if (scratch_.empty()) {
    for (float& v : exps) v /= sum;
    return argmax(exps);
  }
  // The likeliest token's exp is exp(0) = 1, so its probability is 1 / sum.
  const std::size_t last = order_nucleus(1.0f / sum);
  float cumulative = 0.0f;
  for (std::size_t i = 0; i <= last; ++i) cumulative += scratch_[i].prob;
  const float r = coin * cumulative;
  float cdf = 0.0f;
  for (std::size_t i = 0; i <= last; ++i) {
    cdf += scratch_[i].prob;
    if (r < cdf) return scratch_[i].index;
  }
  return scratch_[last].index;
}

// Descending probability, ties by token order: a strict total order, so the sorted sequence is
// unique and any way of reaching it gives the same nucleus and the same sums.
static bool before(const Sampler::ProbIndex& a, const Sampler::ProbIndex& b) {
  return a.prob != b.prob ? a.prob > b.prob : a.index < b.index;
}

std::size_t Sampler::order_nucleus(float max_prob) {
  const std::size_t n = scratch_.size();
  // A trained model's nucleus is a handful of tokens among thousands over the cutoff: select
  // the likeliest kFirstBlock (linear), sort only those, and stop if they pass top_p. Skipped
  // when they cannot: kFirstBlock tokens of at most max_prob each (1% for the float sum's
  // rounding) do not reach top_p.
  if (n > kFirstBlock && max_prob * static_cast<float>(kFirstBlock) * 1.01f > top_p_) {
    std::nth_element(scratch_.begin(), scratch_.begin() + kFirstBlock, scratch_.end(), before);
    std::sort(scratch_.begin(), scratch_.begin() + kFirstBlock, before);
    float cumulative = 0.0f;
    for (std::size_t i = 0; i < kFirstBlock; ++i) {
      cumulative += scratch_[i].prob;
      if (cumulative > top_p_) return i;
    }
    // A flat distribution (random weights, a high temperature): the nucleus is most of the
    // candidates, so order them all. The rest are all after the first block already.
    radix_sort(kFirstBlock, /*in_token_order=*/false);
  } else if (n > kFirstBlock) {
    radix_sort(0, /*in_token_order=*/true);
  } else {
    std::sort(scratch_.begin(), scratch_.end(), before);
  }
  float cumulative = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    cumulative += scratch_[i].prob;
    if (cumulative > top_p_) return i;
  }
  return n - 1;  // rounding: keep everything if top_p is never passed
}

// Orders scratch_[from, n) by `before` with an LSD radix sort on the key (inverted probability
// bits << 32 | token): probabilities here are positive floats, whose bit patterns order as
// their values, so ascending keys are descending probabilities with ties by token. Linear in n,
// 8 bits per pass, and a pass whose byte is the same in every key (the token's high bytes, the
// exponent's top) is skipped; std::sort needs n log n comparisons.
void Sampler::radix_sort(std::size_t from, bool in_token_order) {
  const std::size_t n = scratch_.size() - from;
  keys_.resize(n);
  keys_tmp_.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const ProbIndex& p = scratch_[from + i];
    keys_[i] = (static_cast<std::uint64_t>(~std::bit_cast<std::uint32_t>(p.prob)) << 32) |
               static_cast<std::uint32_t>(p.index);
  }
  // The sort is stable: a range already in token order needs only the probability's passes.
  for (int shift = in_token_order ? 32 : 0; shift < 64; shift += 8) {
    std::array<std::size_t, 257> count{};
    for (const std::uint64_t k : keys_) ++count[((k >> shift) & 0xFF) + 1];
    if (count[1 + ((keys_[0] >> shift) & 0xFF)] == n) continue;  // one value: already ordered
    for (std::size_t b = 0; b < 256; ++b) count[b + 1] += count[b];
    for (const std::uint64_t k : keys_) keys_tmp_[count[(k >> shift) & 0xFF]++] = k;
    keys_.swap(keys_tmp_);
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t k = keys_[i];
    scratch_[from + i] = ProbIndex{std::bit_cast<float>(~static_cast<std::uint32_t>(k >> 32)),
                                   static_cast<int>(static_cast<std::uint32_t>(k))};
  }
}

}  // namespace drover::worker::tinyllm
