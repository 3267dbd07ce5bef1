// The fault_injection, rollouts and slo blocks (shared/DESIGN.md section 7b): defaults, parsing,
// and errors that name the key.
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

// The slo block (common/slo_config.hpp): off when absent, parsing, errors naming the key.
TEST(SloConfig, OffWhenAbsent) {
  const Config c = parse("");
  EXPECT_FALSE(c.slo.enabled());
  EXPECT_TRUE(c.slo.policies.empty());
  EXPECT_EQ(c.slo.window.count(), 60);
  EXPECT_EQ(c.slo.recover_ratio, 0.8);
  // Objectives without policies judge nothing.
  EXPECT_FALSE(parse("slo: {latency_p95_ms: 100}").slo.enabled());
}

TEST(SloConfig, ParsesObjectivesAndEveryAction) {
  const Config c = parse(R"(
slo:
  latency_p95_ms: 250
  ttft_p95_ms: 80
  error_ratio: 0.02
  window_s: 30
  eval_interval_ms: 500
  min_requests: 40
  recover_ratio: 0.7
  policies:
    - {action: shed_low_priority, slo: latency_p95, retry_after_ms: 2000, cooldown_s: 10, dry_run: true}
    - {action: tighten_admission, factor: 0.25}
    - {action: lower_batch_target, slo: ttft_p95, factor: 0.5}
    - {action: add_warm_spare, slo: error_ratio, max_extra_spares: 3}
    - {action: recycle_rss_growth, max_rss_growth_mb_per_min: 20}
)");
  const SloConfig& s = c.slo;
  EXPECT_TRUE(s.enabled());
  EXPECT_DOUBLE_EQ(s.target(SloTarget::latency_p95), 0.25);
  EXPECT_DOUBLE_EQ(s.target(SloTarget::ttft_p95), 0.08);
  EXPECT_DOUBLE_EQ(s.target(SloTarget::error_ratio), 0.02);
  EXPECT_EQ(s.window.count(), 30);
  EXPECT_EQ(s.eval_interval.count(), 500);
  EXPECT_EQ(s.min_requests, 40);
  EXPECT_EQ(s.recover_ratio, 0.7);
  ASSERT_EQ(s.policies.size(), 5u);
  EXPECT_EQ(s.policies[0].action, SloAction::shed_low_priority);
  EXPECT_TRUE(s.policies[0].watch == SloTarget::latency_p95);
  EXPECT_EQ(s.policies[0].retry_after_ms, 2000);
  EXPECT_EQ(s.policies[0].cooldown.count(), 10);
  EXPECT_TRUE(s.policies[0].dry_run);
  EXPECT_FALSE(s.policies[1].watch.has_value());  // any
  EXPECT_EQ(s.policies[1].factor, 0.25);
  EXPECT_EQ(s.policies[1].cooldown.count(), 30);
  EXPECT_TRUE(s.policies[2].watch == SloTarget::ttft_p95);
  EXPECT_EQ(s.policies[3].max_extra_spares, 3);
  EXPECT_EQ(s.policies[4].max_rss_growth_mb_per_min, 20.0);
  // config.get shows the block as it was read.
  const auto j = to_json(c)["slo"];
  EXPECT_EQ(j["policies"][0]["slo"], "latency_p95");
  EXPECT_EQ(j["policies"][1]["slo"], "any");
  EXPECT_FALSE(j["policies"][4].contains("slo"));
}

TEST(SloConfig, ErrorsNameTheKeyAndWhatIsAllowed) {
  EXPECT_NE(error_of("slo: {latency_p95_ms: 100, policies: [{action: panic}]}")
                .find("key 'slo.policies[0].action' must be one of shed_low_priority, tighten_admission, "
                      "lower_batch_target, add_warm_spare, recycle_rss_growth, got 'panic'"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {latency_p95_ms: 100, policies: [{action: shed_low_priority}, "
                     "{action: shed_low_priority}]}")
                .find("'slo.policies[1].action': 'shed_low_priority' is named by two policies"),
            std::string::npos);
  // A key of another action is unknown to this one.
  EXPECT_NE(error_of("slo: {latency_p95_ms: 100, policies: [{action: shed_low_priority, factor: 0.5}]}")
                .find("unknown key 'slo.policies[0].factor' (allowed keys: action, cooldown_s, dry_run, "
                      "retry_after_ms, slo)"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {latency_p95_ms: 100, policies: [{action: tighten_admission, factor: 1.5}]}")
                .find("key 'slo.policies[0].factor' must be a number in 0.01..0.99, got '1.5'"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {latency_p95_ms: 100, policies: [{action: shed_low_priority, slo: ttft_p95}]}")
                .find("key 'slo.policies[0].slo' names 'ttft_p95', but slo.ttft_p95_ms is not set"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {latency_p95_ms: 100, policies: [{action: shed_low_priority, slo: p99}]}")
                .find("key 'slo.policies[0].slo' must be any, latency_p95, ttft_p95, error_ratio, got 'p99'"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {policies: [{action: tighten_admission}]}").find("needs an objective"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {policies: [{action: recycle_rss_growth}]}")
                .find("key 'slo.policies[0].max_rss_growth_mb_per_min' is required"),
            std::string::npos);
  // recycle_rss_growth needs no objective.
  EXPECT_EQ(error_of("slo: {policies: [{action: recycle_rss_growth, max_rss_growth_mb_per_min: 5}]}"), "");
  EXPECT_NE(error_of("slo: {recover_ratio: 1.2}").find("key 'slo.recover_ratio' must be a number in 0.01..0.99"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {window_s: 0}").find("key 'slo.window_s' must be an integer in 1..86400"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {policies: {action: shed_low_priority}}").find("key 'slo.policies' must be a list"),
            std::string::npos);
  EXPECT_NE(error_of("slo: {latency: 5}").find("unknown key 'slo.latency'"), std::string::npos);
}

}  // namespace
}  // namespace drover
