// SLO policies end to end (shared/DESIGN.md section 7b, docs/OPERATIONS.md "SLO policies"): a
// real droverd with a sim worker, the fault_injection stage delaying every request past the
// latency objective, and the shed_low_priority policy refusing the low priority lane while
// high and normal requests are served; a reload that removes the delay ends the breach and the
// shedding. A 10 s window judged every 100 ms (long enough that the checks after a breach run
// while its samples are still in the window, even on a loaded machine); every wait is a
// condition with a deadline, and no assertion is about speed: the delay only has to exceed the
// objective.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "harness.hpp"

namespace drover::test {
namespace {

constexpr const char* kShedYaml = R"(
fault_injection: {enabled: true, delay_ms: 300, delay_percent: 100}
slo:
  latency_p95_ms: 100
  window_s: 10
  eval_interval_ms: 100
  min_requests: 20
  policies:
    - {action: shed_low_priority, slo: latency_p95, retry_after_ms: 1500, cooldown_s: 0}
)";

json slo_status(DroverProcess& d) { return d.admin().call("slo.status")["result"]; }

json shed_policy(DroverProcess& d) { return slo_status(d)["policies"]["shed_low_priority"]; }

// Replies to one round sent at once on one connection: `normal` normal-priority tokenize
// requests, then one low and one high. Keyed by priority ("normal" holds the last normal one).
struct Round {
  std::vector<json> normal;
  json low, high;
};

Round send_round(DroverProcess& d, int normal, std::int64_t& next_id) {
  auto c = d.client();
  std::map<json, std::string> sent;
  auto send = [&](const std::string& priority) {
    const json id = next_id++;
    c.send(request(id, "tokenize", {{"text", "slo"}, {"priority", priority}}));
    sent[id] = priority;
  };
  for (int i = 0; i < normal; ++i) send("normal");
  send("low");
  send("high");
  Round r;
  for (std::size_t got = 0; got < sent.size(); ++got) {
    const json msg = read_one(c);
    const std::string& priority = sent.at(msg.value("id", json()));
    if (priority == "low") {
      r.low = msg;
    } else if (priority == "high") {
      r.high = msg;
    } else {
      r.normal.push_back(msg);
    }
  }
  return r;
}

// Rewrites droverd's config file with `from` replaced by `to`, and reloads it.
void reload_with(DroverProcess& d, const std::string& from, const std::string& to) {
  std::string text = read_file(d.config_path());
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, from.size(), to);
  std::ofstream(d.config_path()) << text;
  const json reply = d.admin().call("config.reload");
  ASSERT_TRUE(is_result(reply)) << reply.dump();
}

TEST_F(DroverTest, ALatencyBreachShedsLowPriorityWhileOthersAreServedUntilRecovery) {
  ASSERT_TRUE(start({.workers = 1, .extra_yaml = kShedYaml}));
  std::int64_t next = 1;
  Round shed;
  // Every request is delayed 300 ms: once the window holds min_requests of them, the latency
  // objective is breached and a low request is refused.
  ASSERT_TRUE(wait_until([&] {
    shed = send_round(d(), 20, next);
    return error_code(shed.low) == -32001;
  }, 60s)) << slo_status(d()).dump();
  EXPECT_EQ(shed.low["error"]["data"]["retry_after_ms"], 1500) << shed.low.dump();
  EXPECT_EQ(shed.low["error"]["data"]["reason"], "slo_shed_low_priority");
  EXPECT_TRUE(is_result(shed.high)) << shed.high.dump();
  for (const auto& reply : shed.normal) EXPECT_TRUE(is_result(reply)) << reply.dump();
  {
    const json s = slo_status(d());
    EXPECT_TRUE(s["objectives"]["latency_p95"]["breached"].get<bool>()) << s.dump();
    EXPECT_GE(s["objectives"]["latency_p95"]["lower_bound"].get<double>(), 0.1);
    const json p = s["policies"]["shed_low_priority"];
    EXPECT_TRUE(p["active"].get<bool>());
    EXPECT_EQ(p["last_decision"]["action"], "apply");
    EXPECT_EQ(p["last_decision"]["mode"], "applied");
    EXPECT_EQ(p["counts"]["apply_applied"], 1);
  }
  EXPECT_NE(d().log().find("SLO latency_p95 breached"), std::string::npos);
  EXPECT_NE(d().log().find("SLO policy shed_low_priority shed low-priority requests"), std::string::npos);

  // droverctl slo status shows the breach and the policy.
  const RunResult ctl = run_program({droverctl_bin(), "--admin-socket", d().admin_path(), "slo", "status"}, d().dir());
  ASSERT_EQ(ctl.exit_code, 0) << ctl.err;
  EXPECT_NE(ctl.out.find("latency_p95"), std::string::npos) << ctl.out;
  EXPECT_NE(ctl.out.find("breached"), std::string::npos) << ctl.out;
  EXPECT_NE(ctl.out.find("shed_low_priority"), std::string::npos) << ctl.out;

  // The delay goes (the SLO block is unchanged, so the policy keeps its state): once the slow
  // requests are fewer than 5 % of the window (its p95 is fast again, below 0.8 x the
  // objective), the objective recovers and low requests are served again.
  reload_with(d(), "enabled: true, delay_ms: 300", "enabled: false, delay_ms: 300");
  EXPECT_TRUE(shed_policy(d())["active"].get<bool>()) << "a reload of another block keeps the policy's state";
  Round served;
  ASSERT_TRUE(wait_until([&] {
    served = send_round(d(), 20, next);
    return is_result(served.low);
  }, 60s)) << slo_status(d()).dump();
  EXPECT_TRUE(is_result(served.high));
  for (const auto& reply : served.normal) EXPECT_TRUE(is_result(reply)) << reply.dump();
  const json p = shed_policy(d());
  EXPECT_FALSE(p["active"].get<bool>()) << p.dump();
  EXPECT_EQ(p["last_decision"]["action"], "revert");
  EXPECT_EQ(p["counts"]["revert_applied"], 1);
  EXPECT_FALSE(slo_status(d())["objectives"]["latency_p95"]["breached"].get<bool>());
  EXPECT_NE(d().log().find("SLO policy shed_low_priority stop shedding low-priority requests"), std::string::npos);
}

TEST_F(DroverTest, ASloDryRunOnlyLogsAndCounts) {
  std::string yaml = kShedYaml;
  yaml.replace(yaml.find("cooldown_s: 0}"), 14, "cooldown_s: 0, dry_run: true}");
  ASSERT_TRUE(start({.workers = 1, .extra_yaml = yaml}));
  std::int64_t next = 1;
  ASSERT_TRUE(wait_until([&] {
    const Round r = send_round(d(), 20, next);
    EXPECT_TRUE(is_result(r.low)) << "a dry run sheds nothing: " << r.low.dump();
    return shed_policy(d())["counts"].value("apply_dry_run", 0) >= 1;
  }, 60s)) << slo_status(d()).dump();
  const json p = shed_policy(d());
  EXPECT_TRUE(p["dry_run"].get<bool>());
  EXPECT_TRUE(p["active"].get<bool>()) << "would be in force";
  EXPECT_EQ(p["last_decision"]["mode"], "dry_run");
  EXPECT_FALSE(p["counts"].contains("apply_applied"));
  // Still breached, still nothing shed.
  const Round r = send_round(d(), 20, next);
  EXPECT_TRUE(is_result(r.low)) << r.low.dump();
  EXPECT_NE(d().log().find("SLO policy shed_low_priority would shed low-priority requests"), std::string::npos);
}

TEST_F(DroverTest, SloStatusWithoutPoliciesSaysOffAndItIsAnAdminMethod) {
  ASSERT_TRUE(start({.workers = 1}));
  const json s = slo_status(d());
  EXPECT_FALSE(s["enabled"].get<bool>());
  EXPECT_TRUE(s["policies"].empty());
  EXPECT_EQ(error_code(d().client().call("slo.status")), -32008);
  const RunResult ctl = run_program({droverctl_bin(), "--admin-socket", d().admin_path(), "slo", "status"}, d().dir());
  EXPECT_EQ(ctl.exit_code, 0) << ctl.err;
  EXPECT_NE(ctl.out.find("SLO policies are off"), std::string::npos) << ctl.out;
}

}  // namespace
}  // namespace drover::test
