// droverd with Python workers: the SDK (worker/python/drover_worker.py) and its example engine
// (worker/python/example_worker.py) end to end — handshake and readiness, unary and streamed
// generate, tokenize round trips, cancel, kill -9 mid-request, injected faults and a clean
// shutdown. Each test starts its own droverd whose workers.command is
// ["python3", "<source dir>/worker/python/example_worker.py", ...]; the harness teardown checks
// that droverd exits 0 and every worker pid it saw is gone.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "harness.hpp"

namespace drover::test {
namespace {

const std::string kScript = std::string(DROVER_SOURCE_DIR) + "/worker/python/example_worker.py";
const std::string kBatchScript =
    std::string(DROVER_SOURCE_DIR) + "/worker/python/example_batch_worker.py";
const std::string kSdkTests =
    std::string(DROVER_SOURCE_DIR) + "/worker/python/test_drover_worker.py";
// The model id the example worker is told to serve, so the tests see it came from the worker.
const std::string kModel = "py-markov";
// A string whose example-worker tokens are its UTF-8 bytes (two- and three-byte sequences).
const std::string kUtf8Text = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x9C\x93";

json gen(const std::string& prompt, std::uint64_t seed, int max_tokens, bool stream = false) {
  // cache bypass: every call reaches a worker, so equal texts come from the engine, not a cache.
  return {{"prompt", prompt},         {"seed", seed},     {"temperature", 0.8},
          {"max_tokens", max_tokens}, {"stream", stream}, {"cache", "bypass"}};
}

bool is_chunk_of(const json& msg, const json& id) {
  return msg.is_object() && msg.value("method", "") == "generate.chunk" && !msg.contains("id") &&
         msg.contains("params") && msg["params"].value("id", json()) == id;
}

json read_chunk(RpcClient& c, const json& id) {
  const auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    auto msg = c.read(std::max(left, Millis(0)));
    if (!msg) throw client::ClientError("no chunk for " + id.dump());
    if (is_chunk_of(*msg, id)) return *msg;
  }
}

// Checks chunks are numbered 0, 1, 2, ... and returns their concatenated text.
std::string joined_text(const std::vector<json>& chunks) {
  std::string joined;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i]["params"].value("index", -1), static_cast<int>(i)) << chunks[i].dump();
    joined += chunks[i]["params"].value("text", "");
  }
  return joined;
}

json busy_worker(DroverProcess& d) {
  for (const auto& w : d.workers()) {
    if (w.value("inflight", 0) > 0) return w;
  }
  return nullptr;
}

bool all_idle(DroverProcess& d) {
  for (const auto& w : d.workers()) {
    if (w.value("inflight", 0) != 0) return false;
  }
  return true;
}

// n workers, all ready, none of them running a pid in `gone`.
bool pool_ready_without(DroverProcess& d, int n, const std::set<int>& gone) {
  const json ws = d.workers();
  if (static_cast<int>(ws.size()) != n) return false;
  for (const auto& w : ws) {
    if (w.value("state", "") != "ready" || gone.contains(w.value("pid", 0))) return false;
  }
  return d.health().value("workers_ready", -1) == n;
}

std::string cmdline_of(int pid) {
  std::string s = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  for (char& ch : s) {
    if (ch == '\0') ch = ' ';
  }
  return s;
}

class PythonWorkerTest : public DroverTest {
 protected:
  void SetUp() override {
    if (!have_python()) GTEST_SKIP() << "python3 >= 3.11 is not on PATH";
  }

  static bool have_python() {
    // Asked once per test binary: the answer cannot change while the tests run.
    static const bool ok = std::system(
                               "python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' "
                               ">/dev/null 2>&1") == 0;
    return ok;
  }

  // Starts droverd with `workers` Python example workers given `args`. The harness writes a
  // drover-worker command; it is replaced here before droverd starts.
  bool start_python(int workers, std::vector<std::string> args = {},
                    std::vector<std::string> workers_yaml = {}, std::string extra_yaml = {},
                    const std::string& script = kScript) {
    std::vector<std::string> argv = {"python3", script, "--model", kModel};
    for (auto& a : args) argv.push_back(std::move(a));
    drover_ = std::make_unique<DroverProcess>(DroverOptions{.workers = workers,
                                                            .command = std::move(argv),
                                                            .workers_yaml = std::move(workers_yaml),
                                                            .extra_yaml = std::move(extra_yaml)});
    return d().start();
  }
};

TEST_F(PythonWorkerTest, WorkersListShowsReadyPythonWorkersWithTheirModels) {
  ASSERT_TRUE(start_python(2));
  const json ws = d().workers();
  ASSERT_EQ(ws.size(), 2u) << ws.dump();
  for (const auto& w : ws) {
    SCOPED_TRACE(w.dump());
    EXPECT_EQ(w.value("state", ""), "ready");
    EXPECT_EQ(w.value("models", json()), json::array({kModel}));
    const int pid = w.value("pid", 0);
    ASSERT_GT(pid, 0);
    EXPECT_NE(cmdline_of(pid).find("example_worker.py"), std::string::npos)
        << "pid " << pid << " is not the Python worker: " << cmdline_of(pid);
  }
  // Heartbeats carry the models too: models.list names both workers.
  auto c = d().client();
  const json models = c.call("models.list");
  ASSERT_TRUE(is_result(models)) << models.dump();
  ASSERT_EQ(models["result"]["models"].size(), 1u) << models.dump();
  EXPECT_EQ(models["result"]["models"][0].value("id", ""), kModel);
  EXPECT_EQ(models["result"]["models"][0].value("workers", json()).size(), 2u) << models.dump();
}

TEST_F(PythonWorkerTest, UnaryGenerateIsDeterministicPerSeed) {
  ASSERT_TRUE(start_python(2));
  auto c = d().client();
  // Four calls alternate between the two workers (round robin): equal texts for equal seeds
  // hold across processes, not only within one.
  std::map<std::uint64_t, std::set<std::string>> texts;
  for (std::uint64_t seed : {7u, 7u, 8u, 8u}) {
    const json r = c.call("generate", gen("the drover walked", seed, 24));
    ASSERT_TRUE(is_result(r)) << r.dump();
    const json& res = r["result"];
    EXPECT_EQ(res.value("finish_reason", ""), "length");
    EXPECT_EQ(res["usage"].value("completion_tokens", -1), 24);
    EXPECT_EQ(res["usage"].value("prompt_tokens", -1), 17) << "prompt tokens are its bytes";
    EXPECT_FALSE(res.value("text", "").empty());
    texts[seed].insert(res.value("text", ""));
  }
  ASSERT_EQ(texts[7].size(), 1u) << "same seed, different texts";
  ASSERT_EQ(texts[8].size(), 1u) << "same seed, different texts";
  EXPECT_NE(*texts[7].begin(), *texts[8].begin()) << "different seeds, same text";

  // Temperature 0 is greedy: the seed does not matter.
  json greedy = gen("the drover walked", 1, 12);
  greedy["temperature"] = 0.0;
  const json g1 = c.call("generate", greedy);
  greedy["seed"] = 2;
  const json g2 = c.call("generate", greedy);
  ASSERT_TRUE(is_result(g1) && is_result(g2)) << g1.dump() << g2.dump();
  EXPECT_EQ(g1["result"]["text"], g2["result"]["text"]);

  // A stop string ends the text before it (the engine knows nothing of stop strings).
  const std::string full = *texts[7].begin();
  const auto space = full.find(' ', 1);
  ASSERT_NE(space, std::string::npos) << full;
  const std::string second_word = full.substr(space, full.find(' ', space + 1) - space);
  json stopped = gen("the drover walked", 7, 24);
  stopped["stop"] = json::array({second_word});
  const json s = c.call("generate", stopped);
  ASSERT_TRUE(is_result(s)) << s.dump();
  EXPECT_EQ(s["result"].value("finish_reason", ""), "stop");
  EXPECT_EQ(s["result"].value("text", ""), full.substr(0, space))
      << "stop at '" << second_word << "'";

  // A model this worker does not serve.
  json other = gen("x", 1, 3);
  other["model"] = "no-such-model";
  const json u = c.call("generate", other);
  EXPECT_EQ(error_code(u), -32006) << u.dump();
}

TEST_F(PythonWorkerTest, StreamSendsContiguousChunksThatConcatenateToTheText) {
  ASSERT_TRUE(start_python(2));
  auto c = d().client();
  c.send(request("s", "generate", gen("over the hills", 3, 32, true)));
  std::vector<json> chunks;
  const json reply = read_reply(c, "s", kReplyTimeout, &chunks);
  ASSERT_TRUE(is_result(reply)) << reply.dump();
  for (const auto& m : chunks) ASSERT_TRUE(is_chunk_of(m, "s")) << m.dump();
  ASSERT_EQ(chunks.size(), 32u) << "one chunk per word";
  const json& r = reply["result"];
  EXPECT_EQ(joined_text(chunks), r.value("text", ""));
  EXPECT_EQ(r.value("finish_reason", ""), "length");
  EXPECT_EQ(r["usage"].value("completion_tokens", -1), 32);

  // The same request unstreamed (on whichever worker) produces the same text.
  const json unary = c.call("generate", gen("over the hills", 3, 32, false));
  ASSERT_TRUE(is_result(unary)) << unary.dump();
  EXPECT_EQ(unary["result"]["text"], r["text"]);
}

TEST_F(PythonWorkerTest, TokenizeAndDetokenizeRoundTrip) {
  ASSERT_TRUE(start_python(2));
  auto c = d().client();
  const json t = c.call("tokenize", {{"text", kUtf8Text}});
  ASSERT_TRUE(is_result(t)) << t.dump();
  json bytes = json::array();
  for (unsigned char ch : kUtf8Text) bytes.push_back(static_cast<int>(ch));
  EXPECT_EQ(t["result"]["tokens"], bytes);
  const json back = c.call("detokenize", {{"tokens", t["result"]["tokens"]}});
  ASSERT_TRUE(is_result(back)) << back.dump();
  EXPECT_EQ(back["result"].value("text", ""), kUtf8Text);
  // The engine's own validation error reaches the client as it is.
  const json bad = c.call("detokenize", {{"tokens", {104, 1000}}});
  EXPECT_EQ(error_code(bad), -32602) << bad.dump();
  const json unknown = c.call("tokenize", {{"text", "x"}, {"model", "no-such-model"}});
  EXPECT_EQ(error_code(unknown), -32006) << unknown.dump();
}

TEST_F(PythonWorkerTest, CancelEndsARunningStream) {
  // 2000 words at 20/s: a stream that would run for 100 s if cancel did not reach the engine.
  ASSERT_TRUE(start_python(2, {"--tokens-per-s", "20"}));
  auto c = d().client();
  c.send(request("long", "generate", gen("a long story", 5, 2000, true)));
  std::vector<json> chunks{read_chunk(c, "long")};
  c.send(request("cx", "cancel", {{"id", "long"}}));
  std::vector<json> others;
  const json reply = read_reply(c, "long", kReplyTimeout, &others);
  json cancel_reply;
  for (auto& m : others) {
    if (is_chunk_of(m, "long")) {
      chunks.push_back(std::move(m));
    } else if (m.value("id", json()) == "cx") {
      cancel_reply = std::move(m);
    }
  }
  if (cancel_reply.is_null()) cancel_reply = read_reply(c, "cx");
  EXPECT_EQ(cancel_reply.value("result", json()), json({{"cancelled", true}}))
      << cancel_reply.dump();
  ASSERT_TRUE(is_result(reply)) << reply.dump();
  const json& r = reply["result"];
  EXPECT_EQ(r.value("finish_reason", ""), "cancelled");
  EXPECT_LT(r["usage"].value("completion_tokens", 2000), 2000);
  EXPECT_EQ(r.value("text", ""), joined_text(chunks));
  // The worker answered: droverd lowers a worker's inflight only on its reply.
  EXPECT_TRUE(wait_until([&] { return all_idle(d()); })) << d().workers().dump();
}

TEST_F(PythonWorkerTest, KilledPythonWorkerMidRequestIsRetriedAndThePoolRecovers) {
  // The first word comes after 4 s: the request is surely held when the worker is killed.
  ASSERT_TRUE(start_python(2, {"--ttft-ms", "4000"}));
  auto c = d().client();
  const json params = gen("survive a crash", 11, 6);
  c.send(request(1, "generate", params));
  json victim;
  ASSERT_TRUE(wait_until([&] { return !(victim = busy_worker(d())).is_null(); }))
      << d().workers().dump();
  const int victim_pid = victim["pid"].get<int>();
  ASSERT_EQ(::kill(victim_pid, SIGKILL), 0);

  const json reply = read_reply(c, 1);
  ASSERT_TRUE(is_result(reply)) << "the request must survive its worker: " << reply.dump();
  EXPECT_EQ(reply["result"].value("finish_reason", ""), "length");
  EXPECT_EQ(reply["result"]["usage"].value("completion_tokens", -1), 6);
  EXPECT_TRUE(wait_until([&] { return pool_ready_without(d(), 2, {victim_pid}); }))
      << d().workers().dump();
  // The retry ran the same request (same seed) on another process: a fresh run agrees.
  const json again = c.call("generate", params);
  ASSERT_TRUE(is_result(again)) << again.dump();
  EXPECT_EQ(again["result"]["text"], reply["result"]["text"]);
}

TEST_F(PythonWorkerTest, InjectedCrashAndGarbageReplaceTheWorker) {
  ASSERT_TRUE(start_python(2));
  std::set<int> old_pids;
  for (const auto& w : d().workers()) old_pids.insert(w.value("pid", 0));
  auto admin = d().admin();
  // The SDK lists the faults it enacts in its init reply: slow and the shm ring faults are
  // refused up front (OPERATIONS.md's table), not ignored by the worker after {"injected"}.
  for (const char* fault : {"slow", "ring_garbage"}) {
    EXPECT_EQ(error_code(admin.call("workers.inject", {{"id", 0}, {"fault", fault}})), -32602) << fault;
  }
  ASSERT_TRUE(is_result(admin.call("workers.inject", {{"id", 0}, {"fault", "crash"}})));
  ASSERT_TRUE(is_result(admin.call("workers.inject", {{"id", 1}, {"fault", "garbage"}})));
  EXPECT_TRUE(wait_until([&] { return pool_ready_without(d(), 2, old_pids); }))
      << d().workers().dump();
  EXPECT_NE(d().log().find("injected crash"), std::string::npos);
  EXPECT_NE(d().log().find("injected garbage"), std::string::npos);
  const json r = d().client().call("generate", gen("after the faults", 2, 4));
  EXPECT_TRUE(is_result(r)) << r.dump();
}

TEST_F(PythonWorkerTest, ShutdownLetsHeldRequestsFinishAndWorkersExitZero) {
  // 30 words at 30/s: about a second of work held when droverd is told to stop.
  ASSERT_TRUE(start_python(2, {"--tokens-per-s", "30"}));
  auto c = d().client();
  c.send(request("held", "generate", gen("finish me", 9, 30, true)));
  read_chunk(c, "held");
  const json ws = d().workers();  // remembers the pids for the teardown check
  ASSERT_EQ(ws.size(), 2u);
  d().terminate();
  const json reply = read_reply(c, "held");
  ASSERT_TRUE(is_result(reply)) << reply.dump();
  EXPECT_EQ(reply["result"].value("finish_reason", ""), "length");
  EXPECT_EQ(reply["result"]["usage"].value("completion_tokens", -1), 30);
  const auto status = d().wait_exit();
  ASSERT_TRUE(status.has_value()) << "droverd did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  // Each Python worker finished what it held, closed its socket and exited 0 by itself.
  const std::string log = d().log();
  for (const auto& w : ws) {
    const std::string line = "worker_id=" + std::to_string(w.value("id", -1)) +
                             " pid=" + std::to_string(w.value("pid", 0)) +
                             " stopped (process exited with code 0)";
    EXPECT_NE(log.find(line), std::string::npos) << "missing '" << line << "'";
  }
  EXPECT_TRUE(DroverProcess::wait_pids_gone(d().seen_worker_pids()));
}

// Batch queue on, no fast path, size 8: a client batch of 9 generates reaches the worker's link
// in one turn and leaves in worker-side batches (of at most the worker's max_batch).
constexpr const char* kFixedBatches =
    "batch_queue:\n  enabled: true\n  max_batch_size: 8\n  adaptive_sizing: false\n"
    "  fast_path: false\n";

json client_batch_of_generates(int n, int max_tokens, int blank_member = -1) {
  json batch = json::array();
  for (int i = 0; i < n; ++i) {
    batch.push_back(request("g" + std::to_string(i), "generate",
                            gen(i == blank_member ? "   " : "the drover", static_cast<std::uint64_t>(i),
                                max_tokens)));
  }
  return batch;
}

// Every member of a client batch reply, by id; fails the test on a duplicate id.
std::map<std::string, json> replies_by_id(const json& replies) {
  std::map<std::string, json> out;
  for (const auto& r : replies) {
    const std::string id = r.value("id", std::string());
    EXPECT_FALSE(out.contains(id)) << "answered twice: " << id;
    out[id] = r;
  }
  return out;
}

// The sizes the example batch worker logged (--log-batches), in order.
std::vector<int> logged_batch_sizes(const std::string& log) {
  std::vector<int> sizes;
  const std::string mark = "generate_batch: ";
  for (auto at = log.find(mark); at != std::string::npos; at = log.find(mark, at + 1)) {
    sizes.push_back(std::atoi(log.c_str() + at + mark.size()));
  }
  return sizes;
}

// Issue 17: a worker with generate_batch (worker/python/example_batch_worker.py) receives
// droverd's batches whole — more than one request per call, never more than its max_batch — and
// every member is answered once; one member's error leaves the others alone.
TEST_F(PythonWorkerTest, ABatchingEngineGetsDroversBatchesWholeAndAnswersEachMemberOnce) {
  ASSERT_TRUE(start_python(1, {"--max-batch", "4", "--log-batches"}, {}, kFixedBatches,
                           kBatchScript));
  auto c = d().client();
  c.send(client_batch_of_generates(9, 6, /*blank_member=*/4));
  const auto replies = c.read(kReplyTimeout);
  ASSERT_TRUE(replies.has_value() && replies->is_array()) << (replies ? replies->dump() : "");
  auto got = replies_by_id(*replies);
  ASSERT_EQ(got.size(), 9u) << replies->dump();
  for (int i = 0; i < 9; ++i) {
    const json& r = got["g" + std::to_string(i)];
    SCOPED_TRACE(r.dump());
    if (i == 4) {
      EXPECT_EQ(error_code(r), -32602) << "a blank prompt is that member's error";
      continue;
    }
    ASSERT_TRUE(is_result(r));
    EXPECT_EQ(r["result"].value("finish_reason", ""), "length");
    EXPECT_EQ(r["result"]["usage"].value("completion_tokens", -1), 6);
  }
  // The worker's log lines are read by droverd asynchronously: wait for all nine requests.
  std::vector<int> sizes;
  EXPECT_TRUE(wait_until([&] {
    sizes = logged_batch_sizes(d().log());
    int total = 0;
    for (int s : sizes) total += s;
    return total == 9;
  })) << d().log();
  ASSERT_FALSE(sizes.empty());
  EXPECT_GT(*std::max_element(sizes.begin(), sizes.end()), 1) << "no batch of more than one";
  EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()), 4) << "a batch over max_batch";
  // The per-request path (a stream goes to generate) produces the same text for the same seed.
  const json streamed = c.call("generate", gen("the drover", 2, 6, true));
  ASSERT_TRUE(is_result(streamed)) << streamed.dump();
  EXPECT_EQ(streamed["result"]["text"], got["g2"]["result"]["text"]);
}

// A worker without generate_batch (the plain example) gets the same batches as JSON-RPC arrays
// and answers each member on its own.
TEST_F(PythonWorkerTest, APerRequestWorkerServesEveryMemberOfABatch) {
  ASSERT_TRUE(start_python(1, {}, {}, kFixedBatches));
  auto c = d().client();
  c.send(client_batch_of_generates(9, 5));
  const auto replies = c.read(kReplyTimeout);
  ASSERT_TRUE(replies.has_value() && replies->is_array()) << (replies ? replies->dump() : "");
  auto got = replies_by_id(*replies);
  ASSERT_EQ(got.size(), 9u) << replies->dump();
  for (const auto& [id, r] : got) {
    ASSERT_TRUE(is_result(r)) << r.dump();
    EXPECT_EQ(r["result"]["usage"].value("completion_tokens", -1), 5);
  }
  const json stats = c.call("telemetry.batchStats");
  EXPECT_GE(stats["result"].value("mean_batch_size", 0.0), 2.0) << stats.dump();
}

// The SDK's own tests (worker/python/test_drover_worker.py, stdlib unittest): protocol edge
// cases droverd never produces — malformed input (exit 1), end of file (exit 0), errors,
// stop strings split across pieces, queueing under max_concurrency.
TEST_F(PythonWorkerTest, SdkSelfTestsPass) {
  std::string dir = "/tmp/drover-sdk-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr) << std::strerror(errno);
  const RunResult r = run_program({"/usr/bin/env", "python3", kSdkTests}, dir, 120s);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

}  // namespace
}  // namespace drover::test
