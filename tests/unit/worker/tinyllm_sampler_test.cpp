#include <gtest/gtest.h>

#include <cmath>
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

}  // namespace
}  // namespace drover::worker::tinyllm
