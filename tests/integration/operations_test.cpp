// Operating droverd: live reload (SIGHUP and config.reload), config.get, telemetry, and a
// SIGTERM under load. Each test starts its own droverd with real sim workers.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <set>

#include "harness.hpp"

namespace drover::test {
namespace {

void append_to_config(const DroverProcess& d, const std::string& yaml) {
  std::ofstream(d.config_path(), std::ios::app) << yaml;
}

void replace_in_config(const DroverProcess& d, const std::string& from, const std::string& to) {
  std::string cfg = read_file(d.config_path());
  const auto at = cfg.find(from);
  ASSERT_NE(at, std::string::npos) << from << " not in " << cfg;
  cfg.replace(at, from.size(), to);
  std::ofstream(d.config_path(), std::ios::trunc) << cfg;
}

TEST_F(DroverTest, ReloadAppliesLiveSettingsAndReportsTheRest) {
  ASSERT_TRUE(start({.workers = 2}));
  auto a = d().admin();
  EXPECT_EQ(a.call("config.get")["result"]["routing"]["strategy"], "round_robin");
  append_to_config(d(), "routing:\n  strategy: least_busy\n");
  replace_in_config(d(), "count: 2", "count: 3");
  const json r = a.call("config.reload");
  ASSERT_TRUE(is_result(r)) << r.dump();
  const auto applied = r["result"]["applied"].get<std::set<std::string>>();
  EXPECT_TRUE(applied.contains("routing.strategy"));
  EXPECT_TRUE(applied.contains("workers.count"));
  EXPECT_TRUE(r["result"]["restart_required"].empty());
  EXPECT_EQ(a.call("config.get")["result"]["routing"]["strategy"], "least_busy");
  EXPECT_TRUE(d().wait_ready(3));
}

TEST_F(DroverTest, ReloadWithABadFileKeepsServingOnTheOldConfig) {
  ASSERT_TRUE(start({.workers = 2}));
  auto a = d().admin();
  const json before = a.call("config.get")["result"];
  replace_in_config(d(), "count: 2", "count: 0");
  const json r = a.call("config.reload");
  ASSERT_EQ(error_code(r), -32602) << r.dump();
  EXPECT_NE(r["error"]["data"].value("detail", std::string()).find("workers.count"), std::string::npos)
      << "the error must name the key: " << r.dump();
  EXPECT_EQ(a.call("config.get")["result"], before);
  EXPECT_TRUE(is_result(d().client().call("generate", {{"prompt", "still here"}, {"max_tokens", 3}})));
  // SIGHUP with the same bad file: logged, nothing changes, droverd keeps running.
  ASSERT_EQ(::kill(d().pid(), SIGHUP), 0);
  EXPECT_TRUE(wait_until([&] { return d().log().find("SIGHUP: reload rejected") != std::string::npos; }));
  EXPECT_TRUE(d().running());
  EXPECT_EQ(d().health().value("workers_ready", 0), 2);
}

TEST_F(DroverTest, SighupReloadsAndSocketChangesNeedARestart) {
  ASSERT_TRUE(start({.workers = 1}));
  replace_in_config(d(), "count: 1", "count: 2");
  append_to_config(d(), "retry:\n  max_attempts: 5\n");
  ASSERT_EQ(::kill(d().pid(), SIGHUP), 0);
  EXPECT_TRUE(wait_until([&] { return d().admin().call("config.get")["result"]["retry"]["max_attempts"] == 5; }));
  EXPECT_TRUE(d().wait_ready(2));
  // A socket path cannot move under running clients: reported, not applied.
  const std::string old_socket = d().socket_path();
  replace_in_config(d(), old_socket, old_socket + "2");
  const json r = d().admin().call("config.reload");
  ASSERT_TRUE(is_result(r)) << r.dump();
  EXPECT_EQ(r["result"]["restart_required"], json::array({"server.socket"}));
  EXPECT_EQ(d().admin().call("config.get")["result"]["server"]["socket"], old_socket);
  replace_in_config(d(), old_socket + "2", old_socket);  // so teardown finds what it expects
}

TEST_F(DroverTest, PreloadWarmsModelsBeforeReadyAndReportsFailures) {
  ASSERT_TRUE(start({.workers = 1,
                     .extra_yaml = "model_preload:\n  models:\n"
                                   "    - {model_id: sim, warmup_requests: 3, max_tokens: 4}\n"
                                   "    - {model_id: missing}\n"}));
  const std::string log = d().log();
  EXPECT_NE(log.find("preload: model sim loaded in"), std::string::npos) << log;
  EXPECT_NE(log.find("(3 requests)"), std::string::npos) << log;
  EXPECT_NE(log.find("preload: model missing FAILED"), std::string::npos) << log;
}

TEST_F(DroverTest, PreloadFailFastKeepsABrokenWorkerOutOfService) {
  DroverProcess p({.workers = 1,
                   .workers_yaml = {"restart_backoff_base_ms: 10", "max_restarts: 1"},
                   .extra_yaml = "model_preload:\n  fail_fast: true\n  models:\n    - {model_id: missing}\n"});
  Child child({droverd_bin(), "--config", p.config_path()}, p.dir() + "/out.log", p.log_path());
  // The worker never becomes ready: its init fails, it crash-loops and the slot is parked.
  ASSERT_TRUE(wait_until([&] { return read_file(p.log_path()).find("PARKED") != std::string::npos; }))
      << read_file(p.log_path());
  EXPECT_NE(read_file(p.log_path()).find("init failed: preload failed"), std::string::npos);
  child.signal(SIGTERM);
  EXPECT_TRUE(child.wait_exit(30s).has_value());
}

TEST_F(DroverTest, TelemetryReportsPoolCounters) {
  ASSERT_TRUE(start({.workers = 2}));
  ASSERT_TRUE(is_result(d().admin().call("workers.kill", {{"id", 0}})));
  EXPECT_TRUE(wait_until([&] {
    const json m = d().client().call("telemetry.metrics")["result"];
    return m["pool"].value("restarts_total", 0) >= 1 && m["workers"].value("ready", 0) == 2;
  }));
  const json ws = d().client().call("telemetry.workerStatus")["result"]["workers"];
  EXPECT_EQ(ws.size(), 2u);
}

// OPERATIONS.md: restarts count replacements after a failure (a kill here); a drain or an
// operator's restart replaces the process too but is planned, and moves neither the slot's
// RESTARTS nor the pool's restarts_total.
TEST_F(DroverTest, DrainAndRestartAreNotCountedAsRestarts) {
  ASSERT_TRUE(start({.workers = 2}));
  auto a = d().admin();
  auto pid_of = [this](int id) {
    for (const auto& w : d().workers()) {
      if (w.value("id", -1) == id && w.value("state", "") == "ready") return w.value("pid", 0);
    }
    return 0;
  };
  auto restarts_of = [this](int id) {
    for (const auto& w : d().workers()) {
      if (w.value("id", -1) == id) return w.value("restarts", -1);
    }
    return -1;
  };
  auto pool_restarts = [this] {
    return d().client().call("telemetry.metrics")["result"]["pool"].value("restarts_total", -1);
  };
  for (const char* method : {"workers.drain", "workers.restart"}) {
    const int before = pid_of(0);
    ASSERT_NE(before, 0);
    ASSERT_TRUE(is_result(a.call(method, {{"id", 0}}))) << method;
    ASSERT_TRUE(wait_until([&] { const int p = pid_of(0); return p != 0 && p != before; })) << method;
    EXPECT_EQ(restarts_of(0), 0) << method;
    EXPECT_EQ(pool_restarts(), 0) << method;
  }
  ASSERT_TRUE(is_result(a.call("workers.kill", {{"id", 0}})));
  EXPECT_TRUE(wait_until([&] { return restarts_of(0) == 1 && pool_restarts() == 1; }));
}

TEST_F(DroverTest, SigtermUnderLoadAnswersEverythingInFlightAndExitsZero) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "300", "--tokens-per-s", "200"}}));
  constexpr int kConnections = 8, kPerConnection = 8;
  std::vector<RpcClient> clients;
  for (int c = 0; c < kConnections; ++c) {
    clients.push_back(d().client());
    for (int i = 0; i < kPerConnection; ++i) {
      clients.back().send(request(i, "generate",
                                  {{"prompt", "drain"}, {"max_tokens", 8}, {"seed", c * 100 + i},
                                   {"stream", i % 2 == 0}}));
    }
  }
  // Every request is admitted and held by a worker before the signal.
  ASSERT_TRUE(wait_until([&] {
    int held = 0;
    for (const auto& w : d().workers()) held += w.value("inflight", 0);
    return held == kConnections * kPerConnection;
  })) << d().workers().dump();
  d().terminate();
  for (auto& c : clients) {
    std::map<int, json> replies;
    while (replies.size() < kPerConnection) {
      const json m = read_one(c);
      if (m.contains("method")) continue;  // stream chunks
      ASSERT_TRUE(m["id"].is_number_integer()) << m.dump();
      ASSERT_TRUE(replies.emplace(m["id"].get<int>(), m).second) << "second reply: " << m.dump();
    }
    for (const auto& [id, reply] : replies) {
      ASSERT_TRUE(is_result(reply)) << "in-flight request lost to the drain: " << reply.dump();
      EXPECT_EQ(reply["result"]["usage"].value("completion_tokens", 0), 8);
    }
  }
  const auto status = d().wait_exit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

}  // namespace
}  // namespace drover::test
