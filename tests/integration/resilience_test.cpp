// Resilience features end to end (docs/RESILIENCE.md): heartbeat and stall detection, warm
// spares, crash-loop parking, poison requests, circuit breakers, recycling, graceful restart,
// scaling and stream failover. Each test starts its own droverd with real sim workers.
#include <gtest/gtest.h>
#include <signal.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "harness.hpp"
#include "worker/backends/sim_backend.hpp"

namespace drover::test {
namespace {

json gen(const std::string& prompt, std::uint64_t seed, int max_tokens, bool stream = false) {
  return {{"prompt", prompt}, {"seed", seed}, {"temperature", 0.9}, {"max_tokens", max_tokens},
          {"stream", stream}};
}

std::string sim_text(const std::string& prompt, std::uint64_t seed, int max_tokens) {
  std::string s;
  for (const auto& t : worker::sim_tokens(prompt, seed, 0.9, max_tokens)) s += t;
  return s;
}

json worker_with_id(DroverProcess& d, int id) {
  for (const auto& w : d.workers()) {
    if (w.value("id", -1) == id) return w;
  }
  return nullptr;
}

json first_busy(DroverProcess& d) {
  for (const auto& w : d.workers()) {
    if (w.value("inflight", 0) > 0 && w.value("state", std::string()) == "ready") return w;
  }
  return nullptr;
}

std::vector<json> messages_until_reply(RpcClient& c, const json& id, json& reply) {
  std::vector<json> others;
  reply = read_reply(c, id, kReplyTimeout, &others);
  return others;
}

TEST_F(DroverTest, StoppedWorkerIsDetectedByMissingHeartbeatsAndReplaced) {
  ASSERT_TRUE(start({.workers = 2,
                     .workers_yaml = {"heartbeat_interval_ms: 50", "heartbeat_timeout_ms: 400"}}));
  const json w0 = worker_with_id(d(), 0);
  const int pid = w0["pid"].get<int>();
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  EXPECT_TRUE(wait_until([&] {
    const json w = worker_with_id(d(), 0);
    return !w.is_null() && w.value("pid", 0) != pid && w.value("state", std::string()) == "ready";
  })) << d().workers().dump();
  EXPECT_NE(d().log().find("no heartbeat for"), std::string::npos);
  EXPECT_TRUE(is_result(d().client().call("generate", gen("after stop", 1, 3))));
}

TEST_F(DroverTest, StalledWorkerWithLiveHeartbeatsIsReplacedAndItsRequestRetried) {
  ASSERT_TRUE(start({.workers = 2,
                     .worker_args = {"--tokens-per-s", "50"},
                     .workers_yaml = {"heartbeat_interval_ms: 50", "heartbeat_timeout_ms: 400",
                                      "stall_timeout_ms: 600"}}));
  auto admin = d().admin();
  ASSERT_TRUE(is_result(admin.call("workers.inject", {{"id", 0}, {"fault", "stall"}})));
  ASSERT_TRUE(is_result(admin.call("workers.inject", {{"id", 1}, {"fault", "stall"}})));
  // Both workers are wedged; the request stalls on one, is retried on the other, which is also
  // replaced, and finally runs on a fresh worker.
  const json r = d().client().call("generate", gen("wedged", 2, 5), 60s);
  ASSERT_TRUE(is_result(r)) << r.dump();
  EXPECT_EQ(r["result"]["text"], sim_text("wedged", 2, 5));
  EXPECT_NE(d().log().find("no progress for"), std::string::npos);
}

TEST_F(DroverTest, WarmSpareIsPromotedWhenAWorkerDies) {
  ASSERT_TRUE(start({.workers = 2, .workers_yaml = {"warm_spares: 1"}}));
  json spare;
  ASSERT_TRUE(wait_until([&] {
    for (const auto& w : d().workers()) {
      if (w.value("state", std::string()) == "spare") spare = w;
    }
    return !spare.is_null();
  }));
  EXPECT_EQ(d().health().value("spares_ready", 0), 1);
  const int victim = worker_with_id(d(), 1)["pid"].get<int>();
  ASSERT_TRUE(is_result(d().admin().call("workers.kill", {{"id", 1}})));
  EXPECT_TRUE(wait_until([&] { return worker_with_id(d(), 1).value("pid", 0) == spare["pid"].get<int>(); }))
      << "slot 1 should be served by the former spare: " << d().workers().dump();
  EXPECT_NE(victim, spare["pid"].get<int>());
  // A new spare is started behind it.
  EXPECT_TRUE(wait_until([&] { return d().health().value("spares_ready", 0) == 1; }));
}

// The log lines of droverd's log that contain `needle`.
std::vector<std::string> lines_with(const std::string& log, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

// The row of `droverctl workers` whose ID column is `id`, split into columns ({} if none).
std::vector<std::string> ctl_row(DroverProcess& d, int id) {
  const RunResult r = run_program({droverctl_bin(), "--admin-socket", d.admin_path(), "workers"},
                                  d.dir(), 30s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream cols(line);
    std::vector<std::string> row;
    for (std::string c; cols >> c;) row.push_back(c);
    if (!row.empty() && row[0] == std::to_string(id)) return row;
  }
  return {};
}

// docs/OPERATIONS.md, "Worker ids": a warm spare is known by one id (1000 and up) in
// workers.list, droverctl and every log line until it is promoted; the promotion line names
// both ids; from then on everything (workers.list, droverctl, results, droverd's lines and the
// worker's own forwarded lines) calls it by its slot. Issue 21 item 16: the spare used to be
// logged as worker_id=-1, and a promoted spare kept calling itself "worker 1000" from slot 1.
TEST_F(DroverTest, AWarmSpareIsKnownByOneIdBeforeAndAfterPromotion) {
  ASSERT_TRUE(start({.workers = 2, .workers_yaml = {"warm_spares: 1"}}));
  json spare;
  ASSERT_TRUE(wait_until([&] {
    for (const auto& w : d().workers()) {
      if (w.value("state", std::string()) == "spare") spare = w;
    }
    return !spare.is_null();
  }));
  const int sid = spare["id"].get<int>();
  const int pid = spare["pid"].get<int>();
  const std::string S = std::to_string(sid), P = std::to_string(pid);
  EXPECT_GE(sid, 1000);
  const auto before = ctl_row(d(), sid);
  ASSERT_GE(before.size(), 3u) << "droverctl workers has no row for spare " << S;
  EXPECT_EQ(before[1], P);
  EXPECT_EQ(before[2], "spare");
  ASSERT_TRUE(wait_until([&] {
    return d().log().find("worker_id=" + S + " pid=" + P + " warm spare ready") != std::string::npos;
  })) << d().log();
  EXPECT_NE(d().log().find("worker_id=" + S + " generation="), std::string::npos) << d().log();
  EXPECT_NE(d().log().find("pid=" + P + " spawned as a warm spare"), std::string::npos) << d().log();

  ASSERT_TRUE(is_result(d().admin().call("workers.kill", {{"id", 1}})));
  ASSERT_TRUE(wait_until([&] { return worker_with_id(d(), 1).value("pid", 0) == pid; }))
      << "slot 1 should be served by the former spare: " << d().workers().dump();
  const std::string promoted = "worker_id=1 pid=" + P + " promoted warm spare worker_id=" + S;
  ASSERT_TRUE(wait_until([&] { return d().log().find(promoted) != std::string::npos; })) << d().log();
  const auto after = ctl_row(d(), 1);
  ASSERT_GE(after.size(), 3u);
  EXPECT_EQ(after[1], P) << "droverctl shows the promoted spare as worker 1";
  for (const auto& w : d().workers()) EXPECT_NE(w.value("id", -1), sid) << "the old spare id is still listed";

  // Results name the slot.
  std::set<int> answered_by;
  for (int i = 0; i < 6; ++i) {
    const json r = d().client().call("generate", gen("who", static_cast<std::uint64_t>(i), 2));
    ASSERT_TRUE(is_result(r)) << r.dump();
    answered_by.insert(r["result"]["worker"].get<int>());
  }
  EXPECT_EQ(answered_by, (std::set<int>{0, 1}));

  // The worker's own words, forwarded after the promotion, carry the slot and no other id.
  ASSERT_TRUE(is_result(d().admin().call("workers.inject", {{"id", 1}, {"fault", "slow"}})));
  ASSERT_TRUE(wait_until([&] {
    return !lines_with(d().log(), "injected slow").empty();
  })) << d().log();
  for (const auto& line : lines_with(d().log(), "injected slow")) {
    EXPECT_NE(line.find("worker_id=1 pid=" + P + " |"), std::string::npos) << line;
    EXPECT_EQ(line.find("worker " + S), std::string::npos) << line;
  }
  // Every line about this process after the promotion calls it worker_id=1; none ever -1.
  const std::string log = d().log();
  for (const auto& line : lines_with(log.substr(log.find(promoted)), "pid=" + P + " ")) {
    EXPECT_NE(line.find("worker_id=1 "), std::string::npos) << line;
  }
  EXPECT_EQ(log.find("worker_id=-1"), std::string::npos) << log;
}

TEST_F(DroverTest, CrashLoopingSlotIsParkedAndUnparkedByRestart) {
  DroverOptions o{.workers = 1,
                  .workers_yaml = {"restart_backoff_base_ms: 10", "restart_backoff_max_ms: 20",
                                   "max_restarts: 2", "restart_window_s: 60"}};
  DroverProcess p(o);
  // Replace the worker command by one that exits at once, so the slot crash-loops.
  {
    std::string cfg = read_file(p.config_path());
    const auto at = cfg.find("command:");
    const auto eol = cfg.find('\n', at);
    cfg.replace(at, eol - at, "command: [/bin/false]");
    std::ofstream(p.config_path()) << cfg;
  }
  Child child({droverd_bin(), "--config", p.config_path()}, p.dir() + "/out.log", p.log_path());
  ASSERT_TRUE(wait_until([&] {
    try {
      RpcClient a(p.admin_path());
      const json ws = a.call("workers.list", nullptr, 5s)["result"]["workers"];
      return ws.size() == 1 && ws[0].value("state", std::string()) == "parked";
    } catch (const client::ClientError&) {
      return false;
    }
  })) << read_file(p.log_path());
  RpcClient c(p.socket_path());
  const json h = c.call("health")["result"];
  EXPECT_EQ(h.value("workers_parked", 0), 1);
  EXPECT_NE(h.value("status", std::string()), "ok");
  const json r = c.call("generate", gen("nobody home", 1, 3));
  EXPECT_EQ(error_code(r), -32002) << r.dump();
  EXPECT_NE(read_file(p.log_path()).find("PARKED"), std::string::npos);
  RpcClient a(p.admin_path());
  EXPECT_TRUE(is_result(a.call("workers.restart", {{"id", 0}})));
  child.signal(SIGTERM);
  EXPECT_TRUE(child.wait_exit(30s).has_value());
}

TEST_F(DroverTest, PoisonRequestIsStoppedAndFailsFastWhenResubmitted) {
  ASSERT_TRUE(start({.workers = 2,
                     .worker_args = {"--crash-after", "0"},
                     .extra_yaml = "retry:\n  max_attempts: 5\n  poison_threshold: 2\n"}));
  auto c = d().client();
  const json r = c.call("generate", gen("deadly", 1, 3));
  ASSERT_EQ(error_code(r), -32003) << r.dump();
  EXPECT_EQ(r["error"]["data"].value("poison", false), true);
  EXPECT_EQ(r["error"]["data"].value("attempts", 0), 2);
  // Resubmitted (even with another seed): refused before reaching a worker.
  const json again = c.call("generate", gen("deadly", 2, 3));
  ASSERT_EQ(error_code(again), -32003) << again.dump();
  EXPECT_EQ(again["error"]["data"].value("poison", false), true);
  EXPECT_EQ(again["error"]["data"].value("attempts", -1), 0);
  EXPECT_TRUE(d().wait_ready(2));
}

// Each timeout counts against the breaker once: the worker's prompt answer to the cancel that
// follows (sim ends its wait at the cancel) must not count as a success that resets it.
TEST_F(DroverTest, BreakerOpensOnTimeoutsAndAllOpenGivesMinus32002) {
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--ttft-ms", "2000"},
                     .extra_yaml = "circuit_breaker:\n  consecutive_failures: 2\n  open_ms: 60000\n"}));
  auto c = d().client();
  for (int i = 0; i < 2; ++i) {
    json p = gen("slow", static_cast<std::uint64_t>(i), 2);
    p["timeout_ms"] = 50;
    EXPECT_EQ(error_code(c.call("generate", p)), -32004);
  }
  EXPECT_TRUE(wait_until([&] { return worker_with_id(d(), 0).value("breaker", std::string()) == "open"; }));
  const json r = c.call("generate", gen("refused", 3, 2));
  ASSERT_EQ(error_code(r), -32002) << r.dump();
  EXPECT_GT(r["error"]["data"].value("retry_after_ms", 0), 0);
  EXPECT_EQ(d().health().value("status", std::string()), "degraded");
}

TEST_F(DroverTest, WorkerIsRecycledAfterMaxRequestsWithoutFailingAnyRequest) {
  ASSERT_TRUE(start({.workers = 1, .workers_yaml = {"max_requests: 3"}}));
  const int first = worker_with_id(d(), 0)["pid"].get<int>();
  auto c = d().client();
  for (int i = 0; i < 10; ++i) {
    const json r = c.call("generate", gen("recycle", static_cast<std::uint64_t>(i), 3));
    ASSERT_TRUE(is_result(r)) << r.dump();
  }
  EXPECT_TRUE(wait_until([&] { return worker_with_id(d(), 0).value("pid", first) != first; }));
  EXPECT_NE(d().log().find("recycled: served"), std::string::npos);
}

TEST_F(DroverTest, GracefulRestartLetsTheRunningStreamFinishOnTheOldWorker) {
  ASSERT_TRUE(start({.workers = 1, .worker_args = {"--tokens-per-s", "40"}}));
  auto c = d().client();
  c.send(request(1, "generate", gen("long goodbye", 5, 20, true)));
  json busy;
  ASSERT_TRUE(wait_until([&] { return !(busy = first_busy(d())).is_null(); }));
  ASSERT_TRUE(is_result(d().admin().call("workers.restart", {{"id", 0}})));
  json reply;
  const auto chunks = messages_until_reply(c, 1, reply);
  ASSERT_TRUE(is_result(reply)) << reply.dump();
  EXPECT_EQ(reply["result"]["text"], sim_text("long goodbye", 5, 20));
  EXPECT_EQ(reply["result"]["worker"], 0);
  std::string joined;
  for (const auto& m : chunks) joined += m["params"].value("text", std::string());
  EXPECT_EQ(joined, reply["result"]["text"].get<std::string>());
  EXPECT_TRUE(wait_until([&] {
    const json w = worker_with_id(d(), 0);
    return w.value("pid", 0) != busy["pid"].get<int>() && w.value("state", std::string()) == "ready";
  }));
}

TEST_F(DroverTest, ScaleUpAndDown) {
  ASSERT_TRUE(start({.workers = 1}));
  ASSERT_TRUE(is_result(d().admin().call("workers.scale", {{"count", 3}})));
  EXPECT_TRUE(wait_until([&] { return d().health().value("workers_ready", 0) == 3; }));
  ASSERT_TRUE(is_result(d().admin().call("workers.scale", {{"count", 1}})));
  EXPECT_TRUE(wait_until([&] {
    const json h = d().health();
    return h.value("workers_total", 0) == 1 && h.value("workers_ready", 0) == 1 && d().workers().size() == 1;
  })) << d().workers().dump();
  EXPECT_EQ(error_code(d().admin().call("workers.scale", {{"count", 0}})), -32602);
}

TEST_F(DroverTest, KilledStreamFailsOverByteForByte) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--tokens-per-s", "40"}}));
  auto c = d().client();
  c.send(request("s", "generate", gen("failover", 77, 30, true)));
  std::vector<json> before;
  // Let a few chunks reach the client, then kill the worker streaming them.
  while (before.size() < 5) before.push_back(read_one(c));
  const json victim = first_busy(d());
  ASSERT_FALSE(victim.is_null());
  ASSERT_EQ(::kill(victim["pid"].get<int>(), SIGKILL), 0);
  json reply;
  auto after = messages_until_reply(c, "s", reply);
  ASSERT_TRUE(is_result(reply)) << reply.dump();
  before.insert(before.end(), after.begin(), after.end());
  std::string joined;
  for (std::size_t i = 0; i < before.size(); ++i) {
    ASSERT_EQ(before[i]["params"].value("index", -1), static_cast<int>(i));
    joined += before[i]["params"].value("text", std::string());
  }
  const std::string clean = sim_text("failover", 77, 30);
  EXPECT_EQ(joined, clean);
  EXPECT_EQ(reply["result"]["text"], clean);
  EXPECT_NE(reply["result"]["worker"], victim["id"]);
}

// Issue 15 item 14. The budget (here: none at all) limits retries, not failover: the work a
// worker held when its process died is re-dispatched whatever the budget says.
TEST_F(DroverTest, AKilledWorkersWorkFailsOverOutsideTheRetryBudget) {
  ASSERT_TRUE(start({.workers = 2,
                     .worker_args = {"--ttft-ms", "2000"},
                     .extra_yaml = "retry:\n  budget_percent: 0\n  min_retry_concurrency: 0\n"}));
  auto c = d().client();
  c.send(request("k", "generate", gen("held by the victim", 5, 3)));
  json victim;
  ASSERT_TRUE(wait_until([&] { return !(victim = first_busy(d())).is_null(); }));
  ASSERT_EQ(::kill(victim["pid"].get<int>(), SIGKILL), 0);
  const json reply = read_reply(c, "k");
  ASSERT_TRUE(is_result(reply)) << "the killed worker's request was not failed over: " << reply.dump();
  EXPECT_EQ(reply["result"]["text"], sim_text("held by the victim", 5, 3));
  EXPECT_NE(reply["result"]["worker"], victim["id"]);
}

// ...while a worker that stops answering (a hang: no heartbeat) has its work retried under the
// budget, which here refuses it.
TEST_F(DroverTest, TheRetryBudgetStillLimitsRetriesOfAHungWorkersWork) {
  ASSERT_TRUE(start({.workers = 2,
                     .worker_args = {"--ttft-ms", "2000"},
                     .workers_yaml = {"heartbeat_interval_ms: 50", "heartbeat_timeout_ms: 400"},
                     .extra_yaml = "retry:\n  budget_percent: 0\n  min_retry_concurrency: 0\n"}));
  auto c = d().client();
  c.send(request("h", "generate", gen("held by a hung worker", 6, 3)));
  json victim;
  ASSERT_TRUE(wait_until([&] { return !(victim = first_busy(d())).is_null(); }));
  ASSERT_EQ(::kill(victim["pid"].get<int>(), SIGSTOP), 0);
  const json reply = read_reply(c, "h");
  ASSERT_EQ(error_code(reply), -32003) << reply.dump();
  EXPECT_EQ(reply["error"]["data"].value("reason", std::string()), "retry budget exhausted");
  EXPECT_NE(d().log().find("no heartbeat for"), std::string::npos);
}

// Issue 15 item 7: a cancel the worker never got to act on is not forgotten when it dies. The
// worker is stopped (so it cannot answer the cancel), the cancel is acknowledged, then the
// worker is killed: the call ends as cancelled rather than re-running in full elsewhere.
TEST_F(DroverTest, ACallCancelledBeforeItsWorkerDiedEndsCancelledAndIsNotRetried) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "2000"}}));
  auto c = d().client();
  c.send(request("g", "generate", gen("cancelled then orphaned", 7, 3)));
  json victim;
  ASSERT_TRUE(wait_until([&] { return !(victim = first_busy(d())).is_null(); }));
  const int pid = victim["pid"].get<int>();
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  c.send(request("c", "cancel", {{"id", "g"}}));
  std::vector<json> others;
  const json ack = read_reply(c, "c", kReplyTimeout, &others);
  ASSERT_EQ(ack["result"]["cancelled"], true) << ack.dump();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  const json reply = read_reply(c, "g");
  ASSERT_TRUE(is_result(reply)) << reply.dump();
  EXPECT_EQ(reply["result"]["finish_reason"], "cancelled") << reply.dump();
  EXPECT_EQ(d().client().call("telemetry.metrics")["result"]["pool"]["retries_total"], 0);
}

// ...and the work of a client that disconnected is not re-run for nobody.
TEST_F(DroverTest, ADisconnectedClientsWorkIsNotRetriedWhenItsWorkerDies) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "2000"}}));
  json victim;
  {
    auto c = d().client();
    c.send(request("g", "generate", gen("orphaned by its client", 8, 3)));
    ASSERT_TRUE(wait_until([&] { return !(victim = first_busy(d())).is_null(); }));
    ASSERT_EQ(::kill(victim["pid"].get<int>(), SIGSTOP), 0);
  }
  ASSERT_TRUE(wait_until([&] {
    return d().log().find("closed with 1 requests in flight; cancelling them") != std::string::npos;
  }));
  ASSERT_EQ(::kill(victim["pid"].get<int>(), SIGKILL), 0);
  const int id = victim["id"].get<int>();
  ASSERT_TRUE(wait_until([&] {
    const json w = worker_with_id(d(), id);
    return !w.is_null() && w.value("pid", 0) != victim["pid"].get<int>();
  }));
  const json t = d().client().call("telemetry.metrics")["result"]["pool"];
  EXPECT_EQ(t["retries_total"], 0) << t.dump();
  for (const auto& w : d().workers()) EXPECT_EQ(w.value("inflight", -1), 0) << w.dump();
}

// Issue 15 item 11: a reply the worker published in the ring just before it died is delivered,
// even when droverd learns of the exit first (here: no doorbell, and the control socket stays
// open, held by a helper of the worker, as a worker's subprocesses would). One attempt only, so
// a lost reply would show as -32003 rather than as a retry.
TEST_F(DroverTest, AReplyPublishedJustBeforeTheWorkerDiesIsDelivered) {
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--ttft-ms", "2000"},
                     .extra_yaml = "retry:\n  max_attempts: 1\n"}));
  ASSERT_EQ(worker_with_id(d(), 0).value("transport", std::string()), "shm");
  auto c = d().client();
  c.send(request("last", "generate", gen("last words", 9, 4)));
  ASSERT_TRUE(wait_until([&] { return !first_busy(d()).is_null(); }));
  const int pid = worker_with_id(d(), 0)["pid"].get<int>();
  const json armed = d().admin().call("workers.inject", {{"id", 0}, {"fault", "exit_after_reply"}});
  ASSERT_TRUE(is_result(armed)) << armed.dump();
  const json reply = read_reply(c, "last");
  ASSERT_TRUE(is_result(reply)) << "the reply published before the exit was lost: " << reply.dump();
  EXPECT_EQ(reply["result"]["text"], sim_text("last words", 9, 4));
  // The worker did die after it (and was replaced).
  EXPECT_TRUE(wait_until([&] {
    const json w = worker_with_id(d(), 0);
    return !w.is_null() && w.value("pid", pid) != pid && w.value("state", std::string()) == "ready";
  }));
}

// Issue 15 item 10: each worker leads its own process group, and what it started goes with it.
// The worker command is a shell wrapper that starts a helper (sleep) and then execs
// drover-worker, as wrapper scripts do; the helper is the worker's child, in its group.
TEST_F(DroverTest, AWorkersChildrenDieWithTheWorkerAndWithDroverd) {
  std::string dir = "/tmp/drover-pg-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string script = dir + "/wrapper.sh";
  {
    std::ofstream out(script);
    out << "sleep 600 &\n"
        << "echo $! > \"$0.child.$$.tmp\" && mv \"$0.child.$$.tmp\" \"$0.child.$$\"\n"
        << "exec \"$@\"\n";
  }
  std::set<pid_t> helpers;
  struct Cleanup {
    std::string dir;
    std::set<pid_t>* helpers;
    ~Cleanup() {
      for (const pid_t p : *helpers) ::kill(p, SIGKILL);  // whatever a failed test left
      DroverProcess::wait_pids_gone(*helpers, 10s);
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir, &helpers};
  // The helper of the worker with this pid (its wrapper wrote it before exec).
  auto helper_of = [&](int worker_pid) {
    pid_t helper = 0;
    EXPECT_TRUE(wait_until([&] {
      helper = std::atoi(read_file(script + ".child." + std::to_string(worker_pid)).c_str());
      return helper > 0;
    }));
    if (helper > 0) helpers.insert(helper);
    return helper;
  };
  ASSERT_TRUE(start({.workers = 2, .command = {"/bin/sh", script, worker_bin()}}));
  const int victim = worker_with_id(d(), 0)["pid"].get<int>();
  const pid_t victim_helper = helper_of(victim);
  ASSERT_GT(victim_helper, 0);
  ASSERT_EQ(::kill(victim_helper, 0), 0) << "the helper should be running";

  // The worker dies (killed from outside, so droverd did not signal it): its helper follows.
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  EXPECT_TRUE(DroverProcess::wait_pids_gone({victim_helper}, 10s))
      << "helper " << victim_helper << " outlived its worker " << victim;
  ASSERT_TRUE(wait_until([&] {
    const json w = worker_with_id(d(), 0);
    return !w.is_null() && w.value("pid", victim) != victim && w.value("state", std::string()) == "ready";
  }));

  // droverd stops: every worker's helper is gone too.
  std::set<pid_t> live;
  for (const auto& w : d().workers()) live.insert(helper_of(w["pid"].get<int>()));
  EXPECT_EQ(d().stop(), 0);
  EXPECT_TRUE(DroverProcess::wait_pids_gone(live, 10s))
      << "helpers outlived droverd: " << testing::PrintToString(live);
}

// The admin socket is mode 0600; SO_PEERCRED is the second check, for peers that can reach the
// file anyway. Opening the file up lets an unprivileged uid connect, and it must be refused.
TEST_F(DroverTest, AdminSocketRefusesPeersOutsideTheUidAllowList) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  ASSERT_TRUE(start({.workers = 1}));
  ASSERT_EQ(::chmod(d().dir().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(d().admin_path().c_str(), 0666), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // 65534 is "nobody". Exit 0: connected, then closed without a reply; 1: answered;
    // 2: no reply and no close; 4: could not even connect (the test set-up is wrong).
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    std::optional<RpcClient> c;
    try {
      c.emplace(d().admin_path());
    } catch (const client::ClientError&) {
      ::_exit(4);
    }
    try {
      c->send(request(1, "workers.list"));
      const auto reply = c->read(10s);
      ::_exit(reply ? 1 : 2);
    } catch (const client::ClientError&) {
      ::_exit(0);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a uid outside the allow-list got an answer on the admin socket";
  EXPECT_NE(d().log().find("admin connection refused: peer uid 65534"), std::string::npos);
  EXPECT_TRUE(is_result(d().admin().call("workers.list")));
}

// OPERATIONS.md, "Chaos drills": a fault the worker's backend cannot enact is refused with
// -32602 naming what it supports, instead of {"injected"} and a warning in the worker's log
// that the operator never sees. tinyllm cannot stall or slow down; sim can.
TEST_F(DroverTest, InjectRefusesFaultsTheBackendCannotEnact) {
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--model-path", DROVER_MODEL_PATH, "--threads", "1"},
                     .workers_yaml = {"backend: tinyllm"}}));
  auto a = d().admin();
  for (const char* fault : {"stall", "slow"}) {
    const json r = a.call("workers.inject", {{"id", 0}, {"fault", fault}});
    ASSERT_EQ(error_code(r), -32602) << r.dump();
    const std::string detail = r["error"].dump();
    EXPECT_NE(detail.find(std::string("cannot enact fault '") + fault + "'"), std::string::npos) << detail;
    EXPECT_NE(detail.find("crash, hang, garbage"), std::string::npos) << "names what it supports: " << detail;
  }
  // The worker was not touched, and droverctl reports the refusal as a failure.
  const RunResult ctl = run_program({droverctl_bin(), "--admin-socket", d().admin_path(), "inject", "0", "stall"},
                                    d().dir());
  EXPECT_EQ(ctl.exit_code, 1) << ctl.out << ctl.err;
  EXPECT_NE(ctl.err.find("cannot enact fault 'stall'"), std::string::npos) << ctl.err;
  EXPECT_EQ(d().log().find("backend cannot enact"), std::string::npos);
  EXPECT_EQ(d().workers()[0].value("restarts", -1), 0);
  // What tinyllm supports is still taken.
  EXPECT_TRUE(is_result(a.call("workers.inject", {{"id", 0}, {"fault", "crash"}})));
}

TEST_F(DroverTest, InjectAcceptsTheFaultsASimWorkerCanEnact) {
  ASSERT_TRUE(start({.workers = 1}));
  auto a = d().admin();
  // slow and stall are enacted by the sim backend: accepted, and the worker says so.
  EXPECT_TRUE(is_result(a.call("workers.inject", {{"id", 0}, {"fault", "slow"}})));
  EXPECT_TRUE(wait_until([&] { return d().log().find("injected slow") != std::string::npos; }));
}

TEST_F(DroverTest, InjectRejectsUnknownFaultsAndWorkers) {
  ASSERT_TRUE(start({.workers = 1}));
  auto a = d().admin();
  EXPECT_EQ(error_code(a.call("workers.inject", {{"id", 0}, {"fault", "explode"}})), -32602);
  EXPECT_EQ(error_code(a.call("workers.inject", {{"id", 9}, {"fault", "crash"}})), -32602);
  EXPECT_EQ(error_code(a.call("workers.kill", {{"id", 9}})), -32602);
}

}  // namespace
}  // namespace drover::test
