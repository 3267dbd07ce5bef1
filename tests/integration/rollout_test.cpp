// Canary rollouts end to end (shared/DESIGN.md section 7b, docs/OPERATIONS.md "Canary
// rollouts"): a real droverd with sim workers, the fault_injection stage failing or delaying
// the requests of its canary cohort, and the controller rolling it back; a clean ramp to 100 %;
// the rollouts.* methods and `droverctl rollout`. Short steps (step_interval_s: 1); every wait
// is a condition with a deadline.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/rollout.hpp"
#include "harness.hpp"

namespace drover::test {
namespace {

json rollout(DroverProcess& d, const std::string& stage) {
  const json r = d.admin().call("rollouts.status");
  return r["result"]["stages"].value(stage, json());
}

// The replies to `ids`, in that order, however they arrive.
std::vector<json> read_all(RpcClient& c, const std::vector<json>& ids) {
  // Aborted requests are answered at once, before earlier ones a worker runs: collect by id.
  std::map<json, json> by_id;
  while (by_id.size() < ids.size()) {
    const json msg = read_one(c);
    by_id[msg.value("id", json())] = msg;
  }
  std::vector<json> replies;
  for (const auto& id : ids) replies.push_back(by_id[id]);
  return replies;
}

// `n` tokenize requests sent at once on one connection (ids from `next_id` on), then every
// reply; returns the replies. Tokenize goes through the whole pipeline (fault injection
// included) and is cheap on the sim worker.
std::vector<json> burst(DroverProcess& d, int n, std::int64_t& next_id) {
  auto c = d.client();
  std::vector<json> ids;
  for (int i = 0; i < n; ++i) {
    ids.emplace_back(next_id++);
    c.send(request(ids.back(), "tokenize", {{"text", "canary"}}));
  }
  return read_all(c, ids);
}

bool injected(const json& reply) {
  return reply.contains("error") && reply["error"].contains("data") &&
         reply["error"]["data"].is_object() && reply["error"]["data"].contains("fault_injection");
}

constexpr const char* kAbortYaml = R"(
fault_injection: {enabled: true, abort_percent: 100, abort_code: -32002}
rollouts:
  fault_injection:
    steps: [20, 50, 100]
    step_interval_s: 1
    min_requests: 10
)";

TEST_F(DroverTest, FaultInjectionAbortsOnlyRequestsInItsRollout) {
  ASSERT_TRUE(start({.workers = 1,
                     .extra_yaml = "fault_injection: {enabled: true, abort_percent: 100, abort_code: -32002}\n"
                                   "feature_flags: {fault_injection: 30}\n"}));
  std::int64_t next = 1;
  const auto replies = burst(d(), 60, next);
  int aborted = 0;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    const std::string id_text = std::to_string(i + 1);
    const bool in = in_rollout("fault_injection", id_text, 30);
    EXPECT_EQ(injected(replies[i]), in) << replies[i].dump();
    if (in) {
      EXPECT_EQ(error_code(replies[i]), -32002);
      ++aborted;
    } else {
      EXPECT_TRUE(is_result(replies[i])) << replies[i].dump();
    }
  }
  EXPECT_GT(aborted, 0);
  const json fi = d().client().call("telemetry.metrics")["result"]["pipeline"]["fault_injection"];
  EXPECT_EQ(fi["aborted_total"], aborted);
  const json cohorts = d().client().call("telemetry.metrics")["result"]["pipeline"]["cohorts"];
  EXPECT_EQ(cohorts["fault_injection"]["canary"]["errors_by_code"]["-32002"], aborted);
  EXPECT_EQ(cohorts["fault_injection"]["baseline"]["errors_total"], 0);
}

TEST_F(DroverTest, AFaultyCanaryIsRolledBackWithinItsFirstStepAndThenNobodyGetsTheFault) {
  ASSERT_TRUE(start({.workers = 1, .extra_yaml = kAbortYaml}));
  const json first = rollout(d(), "fault_injection");
  ASSERT_EQ(first["percent"], 20) << first.dump();
  ASSERT_EQ(first["state"], "ramping");
  std::int64_t next = 1;
  ASSERT_TRUE(wait_until([&] {
    burst(d(), 20, next);
    return rollout(d(), "fault_injection")["state"] == "rolled_back";
  })) << rollout(d(), "fault_injection").dump();
  const json r = rollout(d(), "fault_injection");
  EXPECT_EQ(r["percent"], 0);
  EXPECT_EQ(r["advances_total"], 0) << "rolled back before leaving its first step";
  EXPECT_EQ(r["rollbacks_total"], 1);
  EXPECT_EQ(r["last_decision"]["action"], "roll_back");
  EXPECT_EQ(r["last_decision"]["figures"]["trigger"], "error_ratio_x");
  EXPECT_EQ(r["last_decision"]["figures"]["from_percent"], 20);
  RecordProperty("rollback_window_s", r["last_decision"]["figures"]["window"]["seconds"].dump());
  EXPECT_NE(d().log().find("rolled back from 20% to 0%"), std::string::npos);
  for (const auto& reply : burst(d(), 100, next)) {
    EXPECT_TRUE(is_result(reply)) << reply.dump();
  }
  // Paused until an operator acts: still 0 % after more traffic and time.
  burst(d(), 20, next);
  EXPECT_EQ(rollout(d(), "fault_injection")["state"], "rolled_back");
}

TEST_F(DroverTest, ADelayedCanaryIsRolledBackByTheP95Trigger) {
  ASSERT_TRUE(start({.workers = 1, .extra_yaml = R"(
fault_injection: {enabled: true, delay_ms: 400, delay_percent: 100}
rollouts:
  fault_injection:
    steps: [50, 100]
    step_interval_s: 1
    min_requests: 10
    triggers: {p95_x: 1.5}
)"}));
  std::int64_t next = 1;
  ASSERT_TRUE(wait_until([&] {
    burst(d(), 30, next);
    return rollout(d(), "fault_injection")["state"] == "rolled_back";
  })) << rollout(d(), "fault_injection").dump();
  const json r = rollout(d(), "fault_injection");
  EXPECT_EQ(r["advances_total"], 0);
  EXPECT_EQ(r["last_decision"]["figures"]["trigger"], "p95_x");
  RecordProperty("rollback_window_s", r["last_decision"]["figures"]["window"]["seconds"].dump());
  EXPECT_GE(r["last_decision"]["figures"]["canary_p95_lower_bound_s"].get<double>(), 0.35);
}

TEST_F(DroverTest, AHealthyCanaryRampsFromOneToOneHundredPercent) {
  // prompt_cache at 1 %: the test sends ids it knows hash into the canary cohort alongside
  // the others, so each step gets its samples without thousands of requests.
  ASSERT_TRUE(start({.workers = 1, .extra_yaml = R"(
rollouts:
  prompt_cache:
    steps: [1, 10, 50, 100]
    step_interval_s: 1
    min_requests: 10
)"}));
  ASSERT_EQ(rollout(d(), "prompt_cache")["percent"], 1);
  std::int64_t next = 1;
  ASSERT_TRUE(wait_until([&] {
    const int pct = rollout(d(), "prompt_cache")["percent"].get<int>();
    if (pct <= 0 || pct >= 100) return rollout(d(), "prompt_cache")["state"] == "complete";
    // Ids of the canary at this step first, then as many of the baseline.
    auto c = d().client();
    std::vector<json> ids;
    int canary = 0, baseline = 0;
    while (canary < 12 || baseline < 12) {
      const std::int64_t id = next++;
      const bool in = in_rollout("prompt_cache", std::to_string(id), pct);
      if (in ? canary >= 12 : baseline >= 12) continue;
      ++(in ? canary : baseline);
      ids.emplace_back(id);
      c.send(request(id, "tokenize", {{"text", "ramp"}}));
    }
    for (const auto& reply : read_all(c, ids)) EXPECT_TRUE(is_result(reply)) << reply.dump();
    return rollout(d(), "prompt_cache")["state"] == "complete";
  }, 60s)) << rollout(d(), "prompt_cache").dump();
  const json r = rollout(d(), "prompt_cache");
  EXPECT_EQ(r["percent"], 100);
  EXPECT_EQ(r["advances_total"], 3);
  EXPECT_EQ(r["rollbacks_total"], 0);
  // config.get shows the controlled percentage and the controller's state.
  const json config = d().admin().call("config.get")["result"];
  EXPECT_EQ(config["feature_flags"]["prompt_cache"], 100);
  EXPECT_EQ(config["rollout_state"]["prompt_cache"]["state"], "complete");
}

TEST_F(DroverTest, RolloutMethodsAndDroverctlRolloutCommands) {
  ASSERT_TRUE(start({.workers = 1, .extra_yaml = R"(
rollouts:
  prompt_cache: {steps: [5, 100], step_interval_s: 3600, min_requests: 10}
)"}));
  const std::string ctl = droverctl_bin();
  auto run = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {ctl, "--admin-socket", d().admin_path(), "rollout"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv, d().dir());
  };
  {
    const RunResult r = run({"status"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("prompt_cache"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("ramping"), std::string::npos) << r.out;
  }
  EXPECT_EQ(run({"pause", "prompt_cache"}).exit_code, 0);
  EXPECT_EQ(rollout(d(), "prompt_cache")["state"], "paused");
  EXPECT_EQ(run({"set", "prompt_cache", "40"}).exit_code, 0);
  EXPECT_EQ(rollout(d(), "prompt_cache")["percent"], 40);
  EXPECT_EQ(d().admin().call("config.get")["result"]["feature_flags"]["prompt_cache"], 40);
  EXPECT_EQ(run({"resume", "prompt_cache"}).exit_code, 0);
  EXPECT_EQ(rollout(d(), "prompt_cache")["state"], "ramping");
  // A reload keeps the controller's state (the file still says steps [5, 100]).
  const json reload = d().admin().call("config.reload");
  ASSERT_TRUE(is_result(reload)) << reload.dump();
  EXPECT_EQ(rollout(d(), "prompt_cache")["percent"], 40);
  EXPECT_EQ(rollout(d(), "prompt_cache")["state"], "ramping");
  EXPECT_EQ(run({"rollback", "prompt_cache"}).exit_code, 0);
  EXPECT_EQ(rollout(d(), "prompt_cache")["state"], "rolled_back");
  EXPECT_EQ(rollout(d(), "prompt_cache")["percent"], 0);
  {
    const RunResult r = run({"--json", "status"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["stages"]["prompt_cache"]["rollbacks_total"], 1);
  }
  {
    const RunResult r = run({"pause", "batch_queue"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("no rollout"), std::string::npos) << r.err;
  }
  EXPECT_EQ(run({"set", "prompt_cache", "101"}).exit_code, 1);
  // Admin only.
  EXPECT_EQ(error_code(d().client().call("rollouts.status")), -32008);
  EXPECT_EQ(error_code(d().admin().call("rollouts.set", {{"stage", "prompt_cache"}})), -32602);
}

}  // namespace
}  // namespace drover::test
