#include "supervisor/pipeline/request_key.hpp"

#include <gtest/gtest.h>

#include <set>

#include "supervisor/pipeline/feature_flags.hpp"

namespace drover::supervisor {
namespace {

proto::GenerateParams params(double temperature, std::optional<std::uint64_t> seed) {
  proto::GenerateParams p;
  p.prompt = "hello";
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

TEST(RequestKey, OnlyTemperatureZeroOrAClientSeedIsDeterministic) {
  EXPECT_TRUE(deterministic_key(params(0.0, std::nullopt)));
  EXPECT_TRUE(deterministic_key(params(0.8, 7)));
  EXPECT_FALSE(deterministic_key(params(0.8, std::nullopt)));
}

TEST(RequestKey, IsTheSha256OfWhatDeterminesTheOutput) {
  const auto base = deterministic_key(params(0.8, 7));
  ASSERT_TRUE(base);
  EXPECT_EQ(base->size(), 64u);
  EXPECT_EQ(base, deterministic_key(params(0.8, 7))) << "stable";
  std::set<std::string> keys = {*base};
  auto differs = [&keys](proto::GenerateParams p) {
    const auto k = deterministic_key(p);
    ASSERT_TRUE(k);
    EXPECT_TRUE(keys.insert(*k).second) << "same key for a different request";
  };
  differs(params(0.8, 8));
  differs(params(0.9, 7));
  auto p = params(0.8, 7);
  p.prompt = "hello!";
  differs(p);
  p = params(0.8, 7);
  p.model = "other";
  differs(p);
  p = params(0.8, 7);
  p.max_tokens = 65;
  differs(p);
  p = params(0.8, 7);
  p.top_p = 0.5;
  differs(p);
  p = params(0.8, 7);
  p.stop = {"."};
  differs(p);
  // What does not change the output does not change the key.
  p = params(0.8, 7);
  p.stream = true;
  p.priority = proto::Priority::high;
  p.timeout_ms = 5;
  EXPECT_EQ(deterministic_key(p), base);
}

TEST(FeatureFlags, RolloutIsStableAndProportional) {
  FeatureFlagsConfig cfg;
  cfg.prompt_cache = 25;
  FeatureFlags flags;
  int in = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = std::to_string(i);
    const bool first = flags.admits(Stage::prompt_cache, true, cfg, id);
    // The same id is in or out every time.
    EXPECT_EQ(flags.admits(Stage::prompt_cache, true, cfg, id), first);
    in += first ? 1 : 0;
  }
  // FNV-1a buckets of "0".."999": about a quarter (the exact count is fixed by the hash).
  EXPECT_GT(in, 200);
  EXPECT_LT(in, 300);
  EXPECT_EQ(flags.counts(Stage::prompt_cache).in, static_cast<std::uint64_t>(2 * in));
  EXPECT_EQ(flags.counts(Stage::prompt_cache).out, static_cast<std::uint64_t>(2 * (1000 - in)));
}

TEST(FeatureFlags, ZeroHundredAndDisabled) {
  FeatureFlagsConfig cfg;
  cfg.request_deduplication = 0;
  cfg.request_coalescing = 100;
  FeatureFlags flags;
  for (int i = 0; i < 100; ++i) {
    const std::string id = "\"req-" + std::to_string(i) + "\"";
    EXPECT_FALSE(flags.admits(Stage::request_deduplication, true, cfg, id));
    EXPECT_TRUE(flags.admits(Stage::request_coalescing, true, cfg, id));
    EXPECT_FALSE(flags.admits(Stage::request_coalescing, false, cfg, id)) << "enabled: false wins";
  }
  EXPECT_EQ(flags.counts(Stage::request_coalescing).in, 100u);
  EXPECT_EQ(flags.counts(Stage::request_coalescing).out, 100u);
}

TEST(FeatureFlags, StagesHashIndependently) {
  // With 50 % each, a request out of one stage is not always out of the other.
  int differ = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string id = std::to_string(i);
    differ += (FeatureFlags::bucket(Stage::prompt_cache, id) < 50) !=
              (FeatureFlags::bucket(Stage::request_deduplication, id) < 50);
  }
  EXPECT_GT(differ, 0);
}

}  // namespace
}  // namespace drover::supervisor
