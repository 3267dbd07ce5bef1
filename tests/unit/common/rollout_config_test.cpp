// The fault_injection and rollouts blocks: defaults, parsing, and errors that name the key.
#include <gtest/gtest.h>

#include "common/config.hpp"

namespace drover {
namespace {

Config parse(const std::string& yaml, const Environment& env = {}) {
  return parse_config(yaml, env, {});
}

// The ConfigError's message for `yaml`, or "" when it parses.
std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(RolloutConfig, DefaultsAreOffAndEmpty) {
  const Config c = parse("");
  EXPECT_FALSE(c.fault_injection.enabled);
  EXPECT_EQ(c.fault_injection.abort_percent, 0.0);
  EXPECT_EQ(c.feature_flags.fault_injection, 100);
  EXPECT_TRUE(c.rollouts.empty());
}

TEST(RolloutConfig, ParsesBothBlocks) {
  const Config c = parse(R"(
fault_injection: {enabled: true, abort_percent: 50, abort_code: -32002, delay_ms: 200, delay_percent: 25}
feature_flags: {fault_injection: 10}
rollouts:
  prompt_cache:
    steps: [5, 20, 100]
    step_interval_s: 30
    min_requests: 200
    dry_run: true
    triggers: {error_ratio_x: 3, p95_x: 2, ttft_p95_x: 1.8, rss_growth_pct_per_h: 25, crash_ratio: 0.01}
  fault_injection: {}
)");
  EXPECT_TRUE(c.fault_injection.enabled);
  EXPECT_EQ(c.fault_injection.abort_percent, 50.0);
  EXPECT_EQ(c.fault_injection.abort_code, -32002);
  EXPECT_EQ(c.fault_injection.delay.count(), 200);
  EXPECT_EQ(c.fault_injection.delay_percent, 25.0);
  EXPECT_EQ(c.feature_flags.fault_injection, 10);
  const auto& r = c.rollouts.at("prompt_cache");
  EXPECT_EQ(r.steps, (std::vector<int>{5, 20, 100}));
  EXPECT_EQ(r.step_interval.count(), 30);
  EXPECT_EQ(r.min_requests, 200);
  EXPECT_TRUE(r.dry_run);
  EXPECT_EQ(r.triggers.error_ratio_x, 3.0);
  EXPECT_EQ(r.triggers.p95_x, 2.0);
  EXPECT_EQ(r.triggers.ttft_p95_x, 1.8);
  EXPECT_EQ(r.triggers.rss_growth_pct_per_h, 25.0);
  EXPECT_EQ(r.triggers.crash_ratio, 0.01);
  const auto& d = c.rollouts.at("fault_injection");  // all defaults
  EXPECT_EQ(d.steps, (std::vector<int>{1, 10, 50, 100}));
  EXPECT_EQ(d.triggers.error_ratio_x, 2.0);
  EXPECT_EQ(d.triggers.p95_x, 1.5);
  const auto j = to_json(c);
  EXPECT_EQ(j["rollouts"]["prompt_cache"]["steps"], nlohmann::json({5, 20, 100}));
  EXPECT_EQ(j["fault_injection"]["delay_ms"], 200);
}

TEST(RolloutConfig, BadValuesNameTheKey) {
  EXPECT_NE(error_of("fault_injection: {abort_percent: 101}").find("'fault_injection.abort_percent'"),
            std::string::npos);
  EXPECT_NE(error_of("fault_injection: {abort_code: -32050}").find("'fault_injection.abort_code'"),
            std::string::npos);
  EXPECT_NE(error_of("fault_injection: {delay: 5}").find("'fault_injection.delay'"), std::string::npos);
  EXPECT_NE(error_of("rollouts: {prompt_cache: {steps: [10, 5]}}").find("'rollouts.prompt_cache.steps'"),
            std::string::npos);
  EXPECT_NE(error_of("rollouts: {prompt_cache: {steps: []}}").find("'rollouts.prompt_cache.steps'"),
            std::string::npos);
  EXPECT_NE(error_of("rollouts: {prompt_cache: {steps: [0, 100]}}").find("'rollouts.prompt_cache.steps'"),
            std::string::npos);
  EXPECT_NE(error_of("rollouts: {prompt_cache: {step_interval_s: 0}}")
                .find("'rollouts.prompt_cache.step_interval_s'"),
            std::string::npos);
  EXPECT_NE(error_of("rollouts: {prompt_cache: {triggers: {p95: 2}}}")
                .find("'rollouts.prompt_cache.triggers.p95'"),
            std::string::npos);
  EXPECT_NE(error_of("rollouts: {prompt_cache: {triggers: {crash_ratio: 2}}}")
                .find("'rollouts.prompt_cache.triggers.crash_ratio'"),
            std::string::npos);
  EXPECT_NE(error_of("rollouts: {cache: {}}").find("'rollouts.cache'"), std::string::npos);
  EXPECT_NE(error_of("rollouts: {stream_coalescing: {}}").find("'rollouts.stream_coalescing'"),
            std::string::npos);
  EXPECT_NE(error_of("rollouts: [prompt_cache]").find("'rollouts'"), std::string::npos);
}

TEST(RolloutConfig, TheEnvironmentSetsFaultInjection) {
  const Config c = parse("", {{"DROVER_FAULT_INJECTION_ENABLED", "true"},
                              {"DROVER_FAULT_INJECTION_ABORT_PERCENT", "5"}});
  EXPECT_TRUE(c.fault_injection.enabled);
  EXPECT_EQ(c.fault_injection.abort_percent, 5.0);
}

}  // namespace
}  // namespace drover
