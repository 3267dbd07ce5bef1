// The batch queue end to end (docs/PIPELINE.md "Batch queue"): requests sent to a worker as
// JSON-RPC batches each get their own answer, merged tokenize requests are split back per
// text, a worker killed with a batch in flight loses nothing (the pool retries the orphans),
// priorities order the pool queue, and the admin and telemetry methods. Real droverd, real
// sim workers.
#include <gtest/gtest.h>

#include <map>

#include "harness.hpp"
#include "worker/backends/sim_backend.hpp"

namespace drover::test {
namespace {

std::string sim_text(const std::string& prompt, std::uint64_t seed, int max_tokens) {
  std::string s;
  for (const auto& t : worker::sim_tokens(prompt, seed, 0.9, max_tokens)) s += t;
  return s;
}

json gen(const std::string& prompt, std::uint64_t seed, int max_tokens) {
  return {{"prompt", prompt}, {"seed", seed}, {"temperature", 0.9}, {"max_tokens", max_tokens}};
}

// The sim tokenizer: a text's UTF-8 bytes.
json bytes_of(const std::string& text) {
  json tokens = json::array();
  for (const unsigned char ch : text) tokens.push_back(static_cast<int>(ch));
  return tokens;
}

json batch_stats(DroverProcess& d) {
  const json r = d.client().call("telemetry.batchStats");
  EXPECT_TRUE(is_result(r)) << r.dump();
  return r.value("result", json::object());
}

json worker_with_id(DroverProcess& d, int id) {
  for (const auto& w : d.workers()) {
    if (w.value("id", -1) == id) return w;
  }
  return nullptr;
}

// Every member of a client batch reply, by id.
std::map<std::string, json> by_id(const json& replies) {
  std::map<std::string, json> out;
  for (const auto& r : replies) out[r.value("id", std::string())] = r;
  return out;
}

// No fast path and a fixed size of 8: a client batch of 17 requests reaches the worker's link
// in one turn, so it leaves in worker-side batches of 8, 8 and 1 whatever the machine's speed.
constexpr const char* kFixedBatches =
    "batch_queue:\n  enabled: true\n  max_batch_size: 8\n  adaptive_sizing: false\n  fast_path: false\n";

// Issue 15 item 5. workers.max_message_bytes 64 KiB (the worker's limit too): eight generates
// with 12 KiB prompts would make one ~100 KiB batch. Flushes are bounded in bytes (a quarter
// of the limit), so they leave in several messages and the worker is never sent one it must
// refuse; nothing is retried, nobody is replaced.
TEST_F(DroverTest, AFlushIsBoundedInBytesWellUnderTheWorkersMessageLimit) {
  // On the socket transport, where the worker's own limit applies to every line.
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--max-message-bytes", "65536"},
                     .workers_yaml = {"max_message_bytes: 65536"},
                     .extra_yaml = std::string(kFixedBatches) + "transport: {shm: false}\n"}));
  const int pid = worker_with_id(d(), 0)["pid"].get<int>();
  json batch = json::array();
  for (int i = 0; i < 8; ++i) {
    batch.push_back(request("g" + std::to_string(i), "generate",
                            gen(std::string(12 * 1024, static_cast<char>('a' + i)), i, 3)));
  }
  auto c = d().client();
  c.send(batch);
  const auto replies = c.read(kReplyTimeout);
  ASSERT_TRUE(replies.has_value());
  ASSERT_TRUE(replies->is_array()) << replies->dump();
  ASSERT_EQ(replies->size(), 8u);
  for (const auto& r : *replies) EXPECT_TRUE(is_result(r)) << r.dump().substr(0, 300);
  const json w = worker_with_id(d(), 0);
  EXPECT_EQ(w["pid"], pid) << "the worker was replaced";
  EXPECT_EQ(d().client().call("telemetry.metrics")["result"]["pool"]["retries_total"], 0);
}

// ...and merged tokenize requests stop merging before their reply (a token list of up to one
// token per byte) could pass droverd's own limit on what a worker sends: 8 x 4 KiB texts
// would merge into one ~130 KiB reply.
TEST_F(DroverTest, MergedTokenizeRepliesStayUnderDroverdsLimit) {
  ASSERT_TRUE(start({.workers = 1, .workers_yaml = {"max_message_bytes: 65536"},
                     .extra_yaml = kFixedBatches}));
  const int pid = worker_with_id(d(), 0)["pid"].get<int>();
  json batch = json::array();
  std::vector<std::string> texts;
  for (int i = 0; i < 8; ++i) {
    texts.push_back(std::string(4 * 1024, static_cast<char>('k' + i)));
    batch.push_back(request("t" + std::to_string(i), "tokenize", {{"text", texts.back()}}));
  }
  auto c = d().client();
  c.send(batch);
  const auto replies = c.read(kReplyTimeout);
  ASSERT_TRUE(replies.has_value());
  ASSERT_TRUE(replies->is_array()) << replies->dump().substr(0, 300);
  auto got = by_id(*replies);
  ASSERT_EQ(got.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    const json& r = got["t" + std::to_string(i)];
    ASSERT_TRUE(is_result(r)) << r.dump().substr(0, 300);
    EXPECT_EQ(r["result"]["tokens"], bytes_of(texts[static_cast<std::size_t>(i)]));
  }
  EXPECT_EQ(worker_with_id(d(), 0)["pid"], pid) << "the worker was replaced";
  EXPECT_EQ(d().log().find("garbage from worker"), std::string::npos);
}

// A request over the worker's own limit (here: smaller than droverd's) is answered -32007 by
// the worker, which keeps serving, instead of ending it and being blamed for the request.
TEST_F(DroverTest, AWorkerAnswersAnOversizeRequestWithAnErrorAndKeepsServing) {
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--max-message-bytes", "16384"},
                     .extra_yaml = "transport: {shm: false}\n"}));
  const int pid = worker_with_id(d(), 0)["pid"].get<int>();
  auto c = d().client();
  const json big = c.call("generate", gen(std::string(32 * 1024, 'z'), 1, 3));
  EXPECT_EQ(error_code(big), -32007) << big.dump().substr(0, 300);
  EXPECT_EQ(big["error"]["data"]["limit_bytes"], 16384);
  EXPECT_TRUE(is_result(c.call("generate", gen("small", 2, 3))));
  EXPECT_EQ(worker_with_id(d(), 0)["pid"], pid) << "the worker was replaced";
}

// Over shm a request too large for the ring travels as a deferred socket line behind a ring
// marker; one over the worker's limit is answered -32007 in the marker's place, and the ring
// goes on (before, the worker exited: the ring would have waited for the dropped line).
TEST_F(DroverTest, AnOversizeRequestOverShmIsAnsweredInItsPlaceAndTheRingGoesOn) {
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--max-message-bytes", "16384"},
                     .extra_yaml = "transport: {shm: true, ring_bytes: 4096}\n"}));
  const json w = worker_with_id(d(), 0);
  ASSERT_EQ(w["transport"], "shm") << w.dump();
  const int pid = w["pid"].get<int>();
  auto c = d().client();
  // Pipelined: a small request, the oversize one, another small one, in this order.
  c.send(request("a", "generate", gen("before", 1, 3)));
  c.send(request("big", "generate", gen(std::string(32 * 1024, 'z'), 1, 3)));
  c.send(request("b", "generate", gen("after", 2, 3)));
  std::map<std::string, json> replies;
  for (int i = 0; i < 3; ++i) {
    const json r = read_one(c);
    replies[r["id"].get<std::string>()] = r;
  }
  EXPECT_EQ(error_code(replies["big"]), -32007) << replies["big"].dump().substr(0, 300);
  EXPECT_EQ(replies["big"]["error"]["data"]["limit_bytes"], 16384);
  EXPECT_EQ(replies["a"]["result"]["text"], sim_text("before", 1, 3)) << replies["a"].dump();
  EXPECT_EQ(replies["b"]["result"]["text"], sim_text("after", 2, 3)) << replies["b"].dump();
  EXPECT_TRUE(is_result(c.call("generate", gen("small", 2, 3))));
  EXPECT_EQ(worker_with_id(d(), 0)["pid"], pid) << "the worker was replaced";
}

TEST_F(DroverTest, BatchedRequestsEachGetTheirOwnAnswer) {
  ASSERT_TRUE(start({.workers = 1, .extra_yaml = kFixedBatches}));
  auto c = d().client();
  json batch = json::array();
  std::map<std::string, json> expected;
  for (int i = 0; i < 17; ++i) {
    const std::string n = std::to_string(i);
    if (i % 4 == 3) {
      batch.push_back(request("g" + n, "generate", gen("prompt " + n, i, 4)));
      expected["g" + n] = sim_text("prompt " + n, i, 4);
    } else if (i % 8 == 5) {
      batch.push_back(request("d" + n, "detokenize", {{"tokens", bytes_of("back " + n)}}));
      expected["d" + n] = "back " + n;
    } else {
      // Texts of different lengths, so a split that mixed them up would show.
      const std::string text = std::string(static_cast<std::size_t>(i), 'x') + "text " + n;
      batch.push_back(request("t" + n, "tokenize", {{"text", text}}));
      expected["t" + n] = bytes_of(text);
    }
  }
  c.send(batch);
  const json reply = read_one(c);
  ASSERT_TRUE(reply.is_array()) << reply.dump();
  ASSERT_EQ(reply.size(), 17u);
  const auto replies = by_id(reply);
  for (const auto& [id, want] : expected) {
    ASSERT_TRUE(replies.contains(id)) << id;
    const json& r = replies.at(id);
    ASSERT_TRUE(is_result(r)) << r.dump();
    // generate and detokenize answer text, tokenize the token list.
    EXPECT_EQ(r["result"][id[0] == 't' ? "tokens" : "text"], want) << id;
  }
  const json s = batch_stats(d());
  EXPECT_EQ(s["requests"], 17) << s.dump();
  EXPECT_EQ(s["flushes"], 3) << s.dump();
  EXPECT_EQ(s["flush_causes"]["full"], 2) << s.dump();
  // Each batch of 8 holds 5 tokenize requests, merged into one batch_tokenize; the 11th
  // tokenize left alone in the last flush.
  EXPECT_EQ(s["tokenize_texts_merged"], 10) << s.dump();
  EXPECT_EQ(s["batch_time"]["count"], 3) << s.dump();
}

// A worker that computes generations together states its max_batch in the init reply
// (tinyllm --max-batch 3): the batch queue never sends it more calls at once, so each batch it
// sends starts together, in one step. A client batch of 7 generates leaves in worker batches
// of 3, 3 and 1, and each answer equals the same request sent alone.
TEST_F(DroverTest, BatchesNeverExceedTheWorkersMaxBatch) {
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--model-path", DROVER_MODEL_PATH, "--threads", "1",
                                     "--max-batch", "3"},
                     .workers_yaml = {"backend: tinyllm"},
                     .extra_yaml = kFixedBatches}));
  auto params = [](int i) {
    return json{{"prompt", "Once upon a time " + std::to_string(i)}, {"seed", i},
                {"temperature", 0.8}, {"max_tokens", 6 + i}, {"cache", "bypass"}};
  };
  json batch = json::array();
  for (int i = 0; i < 7; ++i) batch.push_back(request("g" + std::to_string(i), "generate", params(i)));
  auto c = d().client();
  c.send(batch);
  const json reply = read_one(c);
  ASSERT_TRUE(reply.is_array()) << reply.dump();
  ASSERT_EQ(reply.size(), 7u);
  const auto replies = by_id(reply);
  const json s = batch_stats(d());
  EXPECT_EQ(s["requests"], 7) << s.dump();
  EXPECT_EQ(s["flushes"], 3) << s.dump();
  EXPECT_EQ(s["flush_causes"]["full"], 2) << s.dump();
  for (int i = 0; i < 7; ++i) {
    const std::string id = "g" + std::to_string(i);
    ASSERT_TRUE(replies.contains(id)) << id;
    ASSERT_TRUE(is_result(replies.at(id))) << replies.at(id).dump();
    const json alone = d().client().call("generate", params(i));
    ASSERT_TRUE(is_result(alone)) << alone.dump();
    EXPECT_EQ(replies.at(id)["result"]["text"], alone["result"]["text"]) << id;
    EXPECT_EQ(replies.at(id)["result"]["finish_reason"], alone["result"]["finish_reason"]) << id;
  }
}

// Issue 17: a tinyllm worker reports its steps in heartbeats (steps, step_us), and the batch
// queue's controller then sizes by them (size_source "worker_steps") instead of by batch times.
TEST_F(DroverTest, ATinyllmWorkersStepTimesDriveTheBatchController) {
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--model-path", DROVER_MODEL_PATH, "--threads", "1"},
                     .workers_yaml = {"backend: tinyllm", "heartbeat_interval_ms: 100"},
                     .extra_yaml = "batch_queue: {enabled: true}\n"}));
  auto c = d().client();
  const json before = batch_stats(d());
  EXPECT_EQ(before["size_source"], "batch_time") << before.dump();
  EXPECT_EQ(before["worker_step_reports"], 0) << before.dump();
  json s;
  // Generations keep the worker stepping until a heartbeat has reported steps.
  EXPECT_TRUE(wait_until([&] {
    const json r = c.call("generate", {{"prompt", "Once upon a time"}, {"max_tokens", 48},
                                       {"cache", "bypass"}});
    EXPECT_TRUE(is_result(r)) << r.dump();
    s = batch_stats(d());
    return s.value("worker_step_reports", 0) > 0;
  })) << s.dump();
  EXPECT_EQ(s["size_source"], "worker_steps") << s.dump();
  EXPECT_GT(s["worker_step_ms"].get<double>(), 0.0) << s.dump();
}

// feature_flags.batch_queue rolls batching out by the client's id: at 0 % every request is
// sent on its own (the batch queue sees no flush), and telemetry counts them out.
TEST_F(DroverTest, BatchQueueRolloutZeroSendsEveryRequestAlone) {
  ASSERT_TRUE(start({.workers = 1,
                     .extra_yaml = std::string(kFixedBatches) + "feature_flags:\n  batch_queue: 0\n"}));
  auto c = d().client();
  json batch = json::array();
  for (int i = 0; i < 9; ++i) batch.push_back(request("t" + std::to_string(i), "tokenize", {{"text", "x"}}));
  c.send(batch);
  const json reply = read_one(c);
  ASSERT_TRUE(reply.is_array()) << reply.dump();
  for (const auto& r : reply) EXPECT_TRUE(is_result(r)) << r.dump();
  EXPECT_EQ(batch_stats(d())["flushes"], 0);
  const json t = d().client().call("telemetry.metrics")["result"]["pipeline"]["batch_queue"];
  EXPECT_EQ(t["rollout_percent"], 0) << t.dump();
  EXPECT_EQ(t["requests_out"], 9) << t.dump();
  EXPECT_EQ(t["requests_in"], 0) << t.dump();
}

TEST_F(DroverTest, WorkerKilledWithABatchInFlightLosesNothing) {
  // 20 tokens/s: each generate holds its worker for about half a second.
  ASSERT_TRUE(start({.workers = 2,
                     .worker_args = {"--tokens-per-s", "20"},
                     .extra_yaml = "batch_queue:\n  enabled: true\n  max_batch_size: 4\n  adaptive_sizing: false\n"
                                   "  fast_path: false\n"}));
  auto c = d().client();
  json batch = json::array();
  for (int i = 0; i < 8; ++i) {
    batch.push_back(
        request("g" + std::to_string(i), "generate", gen("kill " + std::to_string(i), i, 10)));
  }
  c.send(batch);
  // Round robin: each worker holds one batch of 4.
  ASSERT_TRUE(wait_until([&] {
    const json w = worker_with_id(d(), 0);
    return !w.is_null() && w.value("inflight", 0) == 4;
  })) << d().workers().dump();
  auto admin = d().admin();
  ASSERT_TRUE(is_result(admin.call("workers.kill", {{"id", 0}, {"signal", "KILL"}})));
  const json reply = read_one(c);
  ASSERT_TRUE(reply.is_array()) << reply.dump();
  ASSERT_EQ(reply.size(), 8u);
  const auto replies = by_id(reply);
  for (int i = 0; i < 8; ++i) {
    const std::string id = "g" + std::to_string(i);
    ASSERT_TRUE(replies.contains(id)) << id;
    ASSERT_TRUE(is_result(replies.at(id))) << replies.at(id).dump();
    EXPECT_EQ(replies.at(id)["result"]["text"], sim_text("kill " + std::to_string(i), i, 10)) << id;
  }
  const json t = d().client().call("telemetry.metrics");
  EXPECT_GE(t["result"]["pool"]["retries_total"].get<int>(), 4) << t.dump();
}

TEST_F(DroverTest, PrioritiesOrderTheQueue) {
  // One worker taking one request at a time: everything else waits in the pool queue. Aging
  // is pushed out of reach so the order depends on the priorities alone.
  ASSERT_TRUE(start({.workers = 1,
                     .worker_args = {"--tokens-per-s", "20"},
                     .workers_yaml = {"max_inflight: 1"},
                     .extra_yaml = "batch_queue:\n  priority_aging_ms: 3600000\n"}));
  auto c = d().client();
  c.send(request("blocker", "generate", {{"prompt", "block"}, {"max_tokens", 1000}}));
  ASSERT_TRUE(wait_until([&] {
    const json w = worker_with_id(d(), 0);
    return !w.is_null() && w.value("inflight", 0) == 1;
  }));
  const std::vector<std::pair<std::string, std::string>> sent = {{"l1", "low"},    {"n1", "normal"},
                                                                 {"h1", "high"},   {"l2", "low"},
                                                                 {"n2", "normal"}, {"h2", "high"}};
  for (const auto& [id, priority] : sent) {
    c.send(request(id, "tokenize", {{"text", id}, {"priority", priority}}));
  }
  ASSERT_TRUE(wait_until([&] {
    const json q = batch_stats(d())["queue_depth"];
    return q == json{{"high", 2}, {"normal", 2}, {"low", 2}};
  })) << batch_stats(d()).dump();
  c.send(request("unblock", "cancel", {{"id", "blocker"}}));
  std::vector<std::string> order;
  while (order.size() < sent.size()) {
    const json m = read_one(c);
    const std::string id = m.value("id", std::string());
    if (id.size() == 2) {
      ASSERT_TRUE(is_result(m)) << m.dump();
      EXPECT_EQ(m["result"]["tokens"], bytes_of(id));
      order.push_back(id);
    }
  }
  EXPECT_EQ(order, (std::vector<std::string>{"h1", "h2", "n1", "n2", "l1", "l2"}));
}

TEST_F(DroverTest, AdaptiveTargetsAreAdminOnlyAndValidated) {
  ASSERT_TRUE(start({.workers = 1}));
  const json refused = d().client().call("config.updateAdaptiveTargets", {{"max_batch_size", 5}});
  EXPECT_EQ(error_code(refused), -32008) << refused.dump();
  auto admin = d().admin();
  EXPECT_EQ(error_code(admin.call("config.updateAdaptiveTargets", json::object())), -32602);
  EXPECT_EQ(error_code(admin.call("config.updateAdaptiveTargets", {{"max_batch_size", 0}})),
            -32602);
  EXPECT_EQ(error_code(admin.call("config.updateAdaptiveTargets", {{"max_batch_size", 101}})),
            -32602);
  EXPECT_EQ(
      error_code(admin.call("config.updateAdaptiveTargets", {{"target_batch_time_ms", "10"}})),
      -32602);
  EXPECT_EQ(error_code(admin.call("config.updateAdaptiveTargets", {{"window_ms", 1}})), -32602);
  const json ok = admin.call("config.updateAdaptiveTargets",
                             {{"max_batch_size", 42}, {"target_batch_time_ms", 2.5}});
  ASSERT_TRUE(is_result(ok)) << ok.dump();
  EXPECT_EQ(ok["result"]["size"], 42);
  EXPECT_DOUBLE_EQ(ok["result"]["target_batch_time_ms"].get<double>(), 2.5);
  const json s = batch_stats(d());
  EXPECT_EQ(s["size"], 42);
  EXPECT_EQ(s["max_batch_size"], 42);
}

}  // namespace
}  // namespace drover::test
