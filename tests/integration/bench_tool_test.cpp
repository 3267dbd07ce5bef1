// drover-bench's scenarios against a real droverd: what the chaos, stress and regression modes
// report, and their exit codes, which scripts and CI rely on. Short runs; only outcomes are
// asserted, never speed.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/integration/harness.hpp"

namespace drover::test {
namespace {

const char* bench_bin() { return DROVER_BENCH_BIN; }

json parse_out(const RunResult& r) {
  EXPECT_FALSE(r.timed_out) << r.err;
  try {
    return json::parse(r.out);
  } catch (const json::exception& e) {
    ADD_FAILURE() << "drover-bench printed no JSON: " << e.what() << "\nstdout: " << r.out
                  << "\nstderr: " << r.err;
    return json::object();
  }
}

TEST_F(DroverTest, BenchChaosModeKillsWorkersAndEveryRequestIsAnsweredOnce) {
  DroverOptions o;
  o.workers = 3;
  o.workers_yaml = {"warm_spares: 1"};
  ASSERT_TRUE(start(o));
  const auto r = run_program({bench_bin(), "chaos", "--socket", d().socket_path(), "--admin-socket",
                              d().admin_path(), "-c", "4", "-p", "4", "--duration-s", "2",
                              "--warmup-s", "0", "--steady-s", "0.5", "--interval-ms", "300",
                              "--json"},
                             d().dir(), 120s);
  const json out = parse_out(r);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_GE(out.value("kills", 0), 1);
  EXPECT_EQ(out.value("lost_or_duplicated", -1), 0);
  EXPECT_EQ(out.value("workers_before", 0), 3);
  EXPECT_EQ(out.value("workers_after", 0), 3);
  EXPECT_GT(out["chaos"].value("requests_ok", 0), 0);
  // Only documented errors: a request orphaned beyond the retry budget gets -32003.
  for (const auto& [code, _] : out["chaos"]["error_codes"].items()) {
    EXPECT_TRUE(code == "-32003" || code == "-32002") << code;
  }
}

TEST_F(DroverTest, BenchStressModeRampsConnectionsAndReportsEveryStep) {
  ASSERT_TRUE(start());
  const auto r = run_program({bench_bin(), "stress", "--socket", d().socket_path(), "-p", "2",
                              "--max-connections", "4", "--step-s", "0.3", "--step-warmup-s", "0.1",
                              "--p99-bound-ms", "600000", "--json"},
                             d().dir(), 120s);
  const json out = parse_out(r);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(out.contains("steps"));
  std::vector<int> connections;
  for (const auto& s : out["steps"]) {
    connections.push_back(s["options"].value("connections", 0));
    EXPECT_EQ(s.value("verdict", ""), "held");
    EXPECT_GT(s.value("requests_ok", 0), 0);
  }
  EXPECT_EQ(connections, (std::vector<int>{1, 2, 4}));
  EXPECT_TRUE(out["breaking_point"].is_null());  // a bound of 10 minutes cannot break
}

TEST_F(DroverTest, BenchRegressionModeFlagsAWorseRunAndRefusesADifferentShape) {
  ASSERT_TRUE(start());
  const auto run = run_program({bench_bin(), "throughput", "--socket", d().socket_path(), "-c", "2",
                                "-p", "2", "--requests", "200", "--warmup-s", "0", "--json"},
                               d().dir(), 120s);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  json measured = parse_out(run);
  const std::string current = d().dir() + "/current.json";
  std::ofstream(current) << measured.dump();

  // Against itself: no regression.
  auto same = run_program({bench_bin(), "regression", "--baseline", current, "--current", current},
                          d().dir());
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;

  // A baseline twice as fast as this run: the run regressed.
  json better = measured;
  better["requests_per_s"] = measured["requests_per_s"].get<double>() * 2;
  const std::string better_path = d().dir() + "/better.json";
  std::ofstream(better_path) << better.dump();
  auto worse = run_program({bench_bin(), "regression", "--baseline", better_path, "--current", current,
                            "--json"},
                           d().dir());
  EXPECT_EQ(worse.exit_code, 1) << worse.out << worse.err;
  EXPECT_TRUE(parse_out(worse).value("regressed", false));

  // A baseline of another shape (more connections) is not comparable.
  json other = measured;
  other["options"]["connections"] = 64;
  const std::string other_path = d().dir() + "/other.json";
  std::ofstream(other_path) << other.dump();
  auto shape = run_program({bench_bin(), "regression", "--baseline", other_path, "--current", current},
                           d().dir());
  EXPECT_EQ(shape.exit_code, 2) << shape.out << shape.err;
}

// rollout-drill against a canary that fails every request of its cohort: the timeline starts
// ramping at the first step, the summary reports the rollback by error_ratio_x, and nobody got
// the injected fault after it. Run twice (the second time --restart resumes the stage, as JSON),
// and refused with a hint when the stage is already rolled back.
TEST_F(DroverTest, BenchRolloutDrillPrintsTheTimelineAndTheRollback) {
  ASSERT_TRUE(start({.workers = 1, .extra_yaml = R"(
fault_injection: {enabled: true, abort_percent: 100, abort_code: -32002}
rollouts:
  fault_injection: {steps: [20, 50, 100], step_interval_s: 1, min_requests: 10}
)"}));
  const std::vector<std::string> drill = {bench_bin(), "rollout-drill", "--socket", d().socket_path(),
                                          "--admin-socket", d().admin_path(), "--stage", "fault_injection",
                                          "-c", "2", "-p", "4", "--method", "tokenize", "--timeout-s", "60",
                                          "--after-s", "0.5"};
  const auto text = run_program(drill, d().dir(), 120s);
  EXPECT_EQ(text.exit_code, 0) << text.out << text.err;
  EXPECT_NE(text.out.find("rollout drill: stage fault_injection"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("ramping"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("roll_back (error_ratio_x)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("summary: rolled back after"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("from 20% by error_ratio_x"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(" 0 injected after the rollback"), std::string::npos) << text.out;

  auto refused = run_program(drill, d().dir(), 120s);
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("--restart"), std::string::npos) << refused.err;

  auto json_drill = drill;
  json_drill.insert(json_drill.end(), {"--restart", "--json"});
  const auto again = run_program(json_drill, d().dir(), 120s);
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  const json out = parse_out(again);
  EXPECT_EQ(out.value("outcome", ""), "rolled_back");
  EXPECT_EQ(out.value("trigger", ""), "error_ratio_x");
  EXPECT_EQ(out.value("from_percent", 0), 20);
  EXPECT_GT(out.value("injected", 0), 0);
  EXPECT_EQ(out.value("injected_after_rollback", -1), 0);
  ASSERT_FALSE(out["timeline"].empty());
  EXPECT_EQ(out["timeline"].front().value("percent", 0), 20);
  EXPECT_EQ(out["timeline"].front().value("state", ""), "ramping");
  EXPECT_EQ(out["timeline"].back().value("state", ""), "rolled_back");
}

}  // namespace
}  // namespace drover::test
