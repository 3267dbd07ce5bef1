#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "worker/backends/tinyllm/sampler.hpp"

namespace drover::worker::tinyllm {
namespace {

TEST(TinyllmSampler, RngIsLlama2cXorshift) {
  // random_u32 from llama2.c's run.c with rng_state = 42 (values computed independently).
  XorShiftRng rng(42);
  for (const std::uint32_t expected :
       {1456360119u, 3359763283u, 3393612768u, 4054632243u, 3283045847u}) {
    EXPECT_EQ(rng.next_u32(), expected);
  }
  XorShiftRng zero(0);
  EXPECT_NE(zero.next_u32(), 0u) << "seed 0 must not be xorshift's fixed point";
}

TEST(TinyllmSampler, TemperatureZeroIsArgmaxWhateverTheSeed) {
  for (std::uint64_t seed : {1u, 2u, 99u}) {
    Sampler s(5, 0.0f, 0.9f, seed);
    std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.9f, 0.0f};
    EXPECT_EQ(s.sample(logits), 1);
  }
}

std::vector<int> draw(std::uint64_t seed, float temperature, float top_p, int n) {
  Sampler s(6, temperature, top_p, seed);
  std::vector<int> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> logits = {1.0f, 0.5f, 0.2f, 0.0f, -0.3f, 0.8f};
    out.push_back(s.sample(logits));
  }
  return out;
}

TEST(TinyllmSampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  EXPECT_EQ(draw(7, 1.0f, 0.9f, 64), draw(7, 1.0f, 0.9f, 64));
  EXPECT_NE(draw(7, 1.0f, 0.9f, 64), draw(8, 1.0f, 0.9f, 64));
  EXPECT_EQ(draw(7, 1.0f, 1.0f, 64), draw(7, 1.0f, 1.0f, 64));
  EXPECT_NE(draw(7, 1.0f, 1.0f, 64), draw(8, 1.0f, 1.0f, 64));
}

TEST(TinyllmSampler, TopPKeepsOnlyTheNucleus) {
  // Probabilities 0.5, 0.3, 0.2: with top_p 0.7 the nucleus is {0, 1} (0.5 + 0.3 > 0.7).
  std::set<int> seen;
  Sampler s(3, 1.0f, 0.7f, 3);
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    seen.insert(s.sample(logits));
  }
  EXPECT_EQ(seen, (std::set<int>{0, 1}));
}

TEST(TinyllmSampler, FullDistributionReachesEveryToken) {
  std::set<int> seen;
  Sampler s(3, 1.0f, 1.0f, 3);
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    seen.insert(s.sample(logits));
  }
  EXPECT_EQ(seen, (std::set<int>{0, 1, 2}));
}

TEST(TinyllmSampler, TinyTopPOnAFlatDistributionPicksTheLikeliestToken) {
  // Every probability is below the cutoff (1 - top_p) / (n - 1); llama2.c would index an empty
  // candidate list here.
  Sampler s(4, 1.0f, 1e-6f, 5);
  std::vector<float> logits = {0.0f, 0.0f, 1e-7f, 0.0f};
  EXPECT_EQ(s.sample(logits), 2);
}

TEST(TinyllmSampler, SoftmaxAndArgmax) {
  std::vector<float> x = {1.0f, 2.0f, 3.0f};
  EXPECT_EQ(argmax(x), 2);
  softmax(x);
  EXPECT_NEAR(x[0] + x[1] + x[2], 1.0f, 1e-6f);
  EXPECT_NEAR(x[2] / x[1], std::exp(1.0f), 1e-5f);
}

// The sampler as it was before issue 17 made it cheaper (the textbook order: divide, softmax,
// coin, cdf walk or sorted nucleus), kept as the reference the fast path must match token for
// token.
class ReferenceSampler {
 public:
  ReferenceSampler(float temperature, float top_p, std::uint64_t seed)
      : temperature_(temperature), top_p_(top_p), rng_(seed) {}

  int sample(std::span<float> logits) {
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
      return static_cast<int>(logits.size()) - 1;
    }
    const int n = static_cast<int>(logits.size());
    const float cutoff = n > 1 ? (1.0f - top_p_) / static_cast<float>(n - 1) : 0.0f;
    std::vector<std::pair<float, int>> c;
    for (int i = 0; i < n; ++i) {
      if (logits[static_cast<std::size_t>(i)] >= cutoff) c.emplace_back(logits[i], i);
    }
    if (c.empty()) return argmax(logits);
    std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    float cumulative = 0.0f;
    std::size_t last = c.size() - 1;
    for (std::size_t i = 0; i < c.size(); ++i) {
      cumulative += c[i].first;
      if (cumulative > top_p_) {
        last = i;
        break;
      }
    }
    const float r = coin * cumulative;
    float cdf = 0.0f;
    for (std::size_t i = 0; i <= last; ++i) {
      cdf += c[i].first;
      if (r < cdf) return c[i].second;
    }
    return c[last].second;
  }

 private:
  float temperature_;
  float top_p_;
  XorShiftRng rng_;
};

// Issue 17: the cheaper sampler (max before scaling, fused exp and sum, probabilities only where
// read, nucleus by selection then radix sort) returns the reference's token on every draw:
// flat logits (random weights: nearly all 32000 tokens over the cutoff, the radix path), peaked
// ones (a trained model: the nucleus inside the first 64), ties (quantised logits), several
// temperatures and top_p values, a sequence of draws per seed (the RNG stays in step).
TEST(TinyllmSampler, CheapPathReturnsTheReferenceTokenForEverySeedAndDistribution) {
  constexpr int kVocab = 32000;
  std::mt19937 gen(1234);
  struct Shape {
    float scale;     // logit spread: small is flat, large is peaked
    bool quantised;  // logits rounded to a coarse grid: many exact ties
  };
  const Shape shapes[] = {{0.05f, false}, {1.0f, false}, {4.0f, false}, {12.0f, false},
                          {2.0f, true}};
  const float temperatures[] = {0.0f, 0.3f, 0.8f, 1.0f, 1.7f};
  const float top_ps[] = {0.0f, 0.5f, 0.9f, 0.95f, 0.999f, 1.0f};
  int draws = 0;
  for (const Shape& shape : shapes) {
    // One pool of logits per shape; each draw reads a window of it at a random offset.
    std::normal_distribution<float> normal(0.0f, shape.scale);
    std::vector<float> pool(2 * kVocab);
    for (float& v : pool) {
      v = normal(gen);
      if (shape.quantised) v = std::round(v * 4.0f) / 4.0f;
    }
    for (const float t : temperatures) {
      for (const float p : top_ps) {
        const std::uint64_t seed = gen();
        Sampler fast(kVocab, t, p, seed);
        ReferenceSampler ref(t, p, seed);
        for (int step = 0; step < 3; ++step) {
          const auto from = pool.begin() + static_cast<std::ptrdiff_t>(gen() % kVocab);
          std::vector<float> a(from, from + kVocab);
          std::vector<float> b = a;
          ASSERT_EQ(fast.sample(a), ref.sample(b))
              << "scale " << shape.scale << " quantised " << shape.quantised << " temperature "
              << t << " top_p " << p << " seed " << seed << " step " << step;
          ++draws;
        }
      }
    }
  }
  EXPECT_EQ(draws, 5 * 5 * 6 * 3);
}

// Many short draws on small vocabularies (every path, including the tiny-top_p fallback).
TEST(TinyllmSampler, CheapPathMatchesTheReferenceOnSmallVocabularies) {
  std::mt19937 gen(99);
  std::uniform_real_distribution<float> spread(0.01f, 8.0f);
  std::uniform_real_distribution<float> top_p(0.0f, 1.0f);
  for (int trial = 0; trial < 3000; ++trial) {
    const int vocab = 1 + static_cast<int>(gen() % 300);
    const float t = (trial % 7 == 0) ? 0.0f : spread(gen) / 4.0f;
    const float p = (trial % 5 == 0) ? 1e-6f : top_p(gen);
    const std::uint64_t seed = gen();
    std::normal_distribution<float> normal(0.0f, spread(gen));
    std::vector<float> logits(static_cast<std::size_t>(vocab));
    for (float& v : logits) v = normal(gen);
    std::vector<float> a = logits;
    std::vector<float> b = logits;
    Sampler fast(vocab, t, p, seed);
    ReferenceSampler ref(t, p, seed);
    ASSERT_EQ(fast.sample(a), ref.sample(b))
        << "trial " << trial << " vocab " << vocab << " temperature " << t << " top_p " << p;
  }
}

}  // namespace
}  // namespace drover::worker::tinyllm
