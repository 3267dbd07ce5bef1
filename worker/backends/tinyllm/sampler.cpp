#include "worker/backends/tinyllm/sampler.hpp"

#include <algorithm>
#include <cmath>

namespace drover::worker::tinyllm {

int argmax(std::span<const float> x) {
  int best = 0;
  for (std::size_t i = 1; i < x.size(); ++i) {
    if (x[i] > x[static_cast<std::size_t>(best)]) best = static_cast<int>(i);
  }
  return best;
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

int Sampler::sample(std::span<float> logits) {
  if (temperature_ == 0.0f) return argmax(logits);
  for (float& v : logits) v /= temperature_;
  softmax(logits);
  const float coin = rng_.next_f32();
  if (top_p_ <= 0.0f || top_p_ >= 1.0f) {
    float cdf = 0.0f;
    for (std::size_t i = 0; i < logits.size(); ++i) {
      cdf += logits[i];
      if (coin < cdf) return static_cast<int>(i);
    }
    return static_cast<int>(logits.size()) - 1;  // rounding: the sum fell short of the coin
  }
  return sample_top_p(logits, coin);
}

int Sampler::sample_top_p(std::span<const float> probs, float coin) {
  const int n = static_cast<int>(probs.size());
  const float cutoff = n > 1 ? (1.0f - top_p_) / static_cast<float>(n - 1) : 0.0f;
  scratch_.clear();
  for (int i = 0; i < n; ++i) {
    if (probs[static_cast<std::size_t>(i)] >= cutoff) {
      scratch_.push_back(ProbIndex{probs[static_cast<std::size_t>(i)], i});
    }
  }
  // Empty only when top_p is so small that even the likeliest token is under the cutoff (a
  // near-uniform distribution): the nucleus is then the likeliest token.
  if (scratch_.empty()) return argmax(probs);
  std::sort(scratch_.begin(), scratch_.end(), [](const ProbIndex& a, const ProbIndex& b) {
    return a.prob != b.prob ? a.prob > b.prob : a.index < b.index;
  });
  float cumulative = 0.0f;
  std::size_t last = scratch_.size() - 1;  // rounding: keep everything if top_p is never passed
  for (std::size_t i = 0; i < scratch_.size(); ++i) {
    cumulative += scratch_[i].prob;
    if (cumulative > top_p_) {
      last = i;
      break;
    }
  }
  const float r = coin * cumulative;
  float cdf = 0.0f;
  for (std::size_t i = 0; i <= last; ++i) {
    cdf += scratch_[i].prob;
    if (r < cdf) return scratch_[i].index;
  }
  return scratch_[last].index;
}

}  // namespace drover::worker::tinyllm
