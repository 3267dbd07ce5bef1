// The shared-memory data plane end to end (proto/README.md "Shared-memory transport"): real
// droverd and drover-worker (and the Python example worker) negotiating the rings in hello/init.
// Checks what a user relies on: the same answers over shm and over the socket, the negotiated
// transport in workers.list, messages larger than the ring, order of chunks and replies through
// a tiny ring, a worker writing a corrupt ring record replaced while droverd keeps serving, and
// no shared memory left behind by a kill -9 of droverd or of a worker.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "harness.hpp"

namespace drover::test {
namespace {

const std::string kText = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x9C\x93";

json utf8_bytes(const std::string& s) {
  json out = json::array();
  for (unsigned char ch : s) out.push_back(static_cast<int>(ch));
  return out;
}

json gen(const std::string& prompt, std::uint64_t seed, int max_tokens, bool stream = false) {
  return {{"prompt", prompt},         {"seed", seed},     {"temperature", 0.8},
          {"max_tokens", max_tokens}, {"stream", stream}, {"cache", "bypass"}};
}

std::string transport_yaml(bool shm, std::size_t ring_bytes = 1024 * 1024) {
  return "transport:\n  shm: " + std::string(shm ? "true" : "false") +
         "\n  ring_bytes: " + std::to_string(ring_bytes) + "\n";
}

// What a pool answers to a fixed set of calls: compared across transports.
struct Answers {
  std::vector<std::string> unary;
  std::string streamed;
  std::size_t chunks = 0;
  json tokens;
  std::string detokenized;
};

Answers ask(DroverProcess& d, const std::string& prompt, int stream_tokens) {
  Answers a;
  auto c = d.client();
  for (std::uint64_t seed : {11u, 12u, 11u}) {
    const json r = c.call("generate", gen(prompt, seed, 24));
    EXPECT_TRUE(is_result(r)) << r.dump();
    if (!is_result(r)) return a;
    EXPECT_EQ(r["result"]["usage"].value("completion_tokens", -1), 24) << r.dump();
    a.unary.push_back(r["result"].value("text", ""));
  }
  c.send(request("s", "generate", gen(prompt, 5, stream_tokens, true)));
  std::vector<json> others;
  const json reply = read_reply(c, "s", kReplyTimeout, &others);
  EXPECT_TRUE(is_result(reply)) << reply.dump();
  std::string joined;
  for (const auto& m : others) {
    if (m.value("method", "") != "generate.chunk") continue;
    // Chunks reach the client in order, every one before the final reply.
    EXPECT_EQ(m["params"].value("index", -1), static_cast<int>(a.chunks)) << m.dump();
    joined += m["params"].value("text", "");
    ++a.chunks;
  }
  EXPECT_EQ(joined, reply["result"].value("text", "")) << "chunks do not add up to the text";
  a.streamed = joined;
  const json t = c.call("tokenize", {{"text", prompt}});
  EXPECT_TRUE(is_result(t)) << t.dump();
  a.tokens = t["result"].value("tokens", json());
  const json dt = c.call("detokenize", {{"tokens", a.tokens}});
  EXPECT_TRUE(is_result(dt)) << dt.dump();
  a.detokenized = dt["result"].value("text", "");
  return a;
}

void expect_transport(DroverProcess& d, const std::string& transport) {
  const json ws = d.workers();
  ASSERT_FALSE(ws.empty());
  for (const auto& w : ws) EXPECT_EQ(w.value("transport", ""), transport) << w.dump();
}

std::uint64_t stat_sum(DroverProcess& d, const std::string& key) {
  std::uint64_t sum = 0;
  for (const auto& w : d.workers()) sum += w["transport_stats"].value(key, std::uint64_t{0});
  return sum;
}

// Mappings of the shm segment (a memfd named "drover-shm") in a process.
int segment_mappings(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.find("memfd:drover-shm") != std::string::npos) ++n;
  }
  return n;
}

// /dev/shm entries that name droverd `pid` or one of `workers` (named segments would be
// "drover-<pid>-<hex>"; other tests on the machine may own unrelated entries).
std::set<std::string> dev_shm_entries_of(pid_t pid, const std::set<pid_t>& workers = {}) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename().string();
    std::set<pid_t> pids = workers;
    pids.insert(pid);
    for (pid_t p : pids) {
      if (name.find("-" + std::to_string(p) + "-") != std::string::npos) out.insert(name);
    }
  }
  return out;
}

class TransportTest : public DroverTest {};

TEST_F(TransportTest, ShmAndSocketGiveTheSameAnswersAndWorkersListSaysWhich) {
  const std::string prompt = kText;
  Answers over_shm, over_socket;
  {
    DroverOptions o{.workers = 2};
    o.extra_yaml = transport_yaml(true);
    ASSERT_TRUE(start(o));
    expect_transport(d(), "shm");
    for (const auto& w : d().workers()) {
      EXPECT_EQ(segment_mappings(w.value("pid", 0)), 1) << "worker maps its segment once";
    }
    over_shm = ask(d(), prompt, 40);
    // The traffic went through the rings (the socket only carried hello, init and its reply).
    EXPECT_GE(stat_sum(d(), "ring_messages_to_worker"), 6u);
    EXPECT_GE(stat_sum(d(), "ring_messages_from_worker"), 46u);  // 5 replies + 40 chunks + ...
    EXPECT_EQ(stat_sum(d(), "socket_messages_to_worker"), 2u);   // one init each
    const pid_t droverd = d().pid();
    std::set<pid_t> workers;
    for (const auto& w : d().workers()) workers.insert(w.value("pid", 0));
    EXPECT_EQ(d().stop(), 0);
    EXPECT_TRUE(dev_shm_entries_of(droverd, workers).empty()) << "left behind by a clean stop";
  }
  {
    DroverOptions o{.workers = 2};
    o.extra_yaml = transport_yaml(false);
    drover_ = std::make_unique<DroverProcess>(o);
    ASSERT_TRUE(d().start());
    expect_transport(d(), "socket");
    over_socket = ask(d(), prompt, 40);
    EXPECT_EQ(stat_sum(d(), "ring_messages_to_worker"), 0u);
    EXPECT_EQ(stat_sum(d(), "ring_messages_from_worker"), 0u);
  }
  ASSERT_EQ(over_shm.unary.size(), 3u);
  EXPECT_EQ(over_shm.unary[0], over_shm.unary[2]) << "same seed, different text";
  EXPECT_NE(over_shm.unary[0], over_shm.unary[1]);
  EXPECT_EQ(over_shm.unary, over_socket.unary);
  EXPECT_EQ(over_shm.chunks, 40u);
  EXPECT_EQ(over_shm.streamed, over_socket.streamed);
  EXPECT_EQ(over_shm.tokens, utf8_bytes(prompt));
  EXPECT_EQ(over_shm.tokens, over_socket.tokens);
  EXPECT_EQ(over_shm.detokenized, prompt);
  EXPECT_EQ(over_socket.detokenized, prompt);
}

TEST_F(TransportTest, MessagesLargerThanTheRingTravelOnTheSocketInOrder) {
  // 4 KiB rings take payloads up to 2032 bytes: this prompt (and its tokenize reply, and the
  // detokenize request carrying its tokens) cannot go through them.
  std::string prompt;
  for (int i = 0; prompt.size() < 9000; ++i) prompt += "word" + std::to_string(i) + " ";
  DroverOptions o{.workers = 1};
  o.extra_yaml = transport_yaml(true, 4096);
  ASSERT_TRUE(start(o));
  expect_transport(d(), "shm");
  // 300 chunks of ~80 bytes through a 4 KiB ring: the worker waits for space many times.
  const Answers big = ask(d(), prompt, 300);
  EXPECT_EQ(big.unary.size(), 3u);
  EXPECT_EQ(big.chunks, 300u);
  EXPECT_EQ(big.tokens, utf8_bytes(prompt));
  EXPECT_EQ(big.detokenized, prompt);
  // Large requests went on the socket (3 generates + tokenize + detokenize) behind ring markers.
  EXPECT_GE(stat_sum(d(), "socket_messages_to_worker"), 1u + 6u);
  EXPECT_GE(stat_sum(d(), "socket_messages_from_worker"), 2u + 1u);  // hello, init, tokens

  // Interleaved small and large requests on one connection all get their own answers.
  auto c = d().client();
  for (int i = 0; i < 20; ++i) {
    const std::string text = i % 2 ? kText : prompt;
    c.send(request(i, "tokenize", {{"text", text}}));
  }
  for (int i = 0; i < 20; ++i) {
    const json r = read_reply(c, i);
    ASSERT_TRUE(is_result(r)) << r.dump();
    EXPECT_EQ(r["result"]["tokens"], utf8_bytes(i % 2 ? kText : prompt)) << "reply " << i;
  }
}

bool have_python() {
  static const bool ok =
      std::system("python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1") == 0;
  return ok;
}

TEST_F(TransportTest, PythonWorkerWithoutShmUsesTheSocket) {
  if (!have_python()) GTEST_SKIP() << "python3 >= 3.11 is not on PATH";
  DroverOptions o{.workers = 1};
  o.command = {"python3", std::string(DROVER_SOURCE_DIR) + "/worker/python/example_worker.py",
               "--model", "py-markov"};
  o.extra_yaml = transport_yaml(true);
  ASSERT_TRUE(start(o));
  expect_transport(d(), "socket");
  auto c = d().client();
  const json r1 = c.call("generate", gen("the drover walked", 7, 12));
  const json r2 = c.call("generate", gen("the drover walked", 7, 12));
  ASSERT_TRUE(is_result(r1) && is_result(r2)) << r1.dump() << r2.dump();
  EXPECT_EQ(r1["result"]["text"], r2["result"]["text"]);
  const json t = c.call("tokenize", {{"text", kText}});
  ASSERT_TRUE(is_result(t)) << t.dump();
  EXPECT_EQ(t["result"]["tokens"], utf8_bytes(kText));
  EXPECT_EQ(stat_sum(d(), "ring_messages_from_worker"), 0u);
  EXPECT_EQ(d().log().find("declined shm"), std::string::npos) << "nothing was offered";
}

TEST_F(TransportTest, AWorkerThatClaimsShmButCannotUseItStaysOnTheSocket) {
  if (!have_python()) GTEST_SKIP() << "python3 >= 3.11 is not on PATH";
  DroverOptions o{.workers = 1};
  o.command = {"python3",
               std::string(DROVER_SOURCE_DIR) + "/tests/integration/data/shm_claiming_worker.py",
               "--model", "py-markov"};
  o.extra_yaml = transport_yaml(true);
  ASSERT_TRUE(start(o));
  expect_transport(d(), "socket");
  const json t = d().client().call("tokenize", {{"text", kText}});
  ASSERT_TRUE(is_result(t)) << t.dump();
  EXPECT_EQ(t["result"]["tokens"], utf8_bytes(kText));
  const std::string log = d().log();
  EXPECT_NE(log.find("declined shm"), std::string::npos) << "the fallback is logged";
  EXPECT_EQ(d().workers()[0].value("restarts", -1), 0) << "a declined offer is not a failure";
}

TEST_F(TransportTest, WorkerWritingACorruptRingRecordIsReplacedAndServingGoesOn) {
  DroverOptions o{.workers = 2};
  o.extra_yaml = transport_yaml(true);
  ASSERT_TRUE(start(o));
  expect_transport(d(), "shm");
  const int victim = d().workers()[0].value("pid", 0);
  auto a = d().admin();
  ASSERT_TRUE(is_result(a.call("workers.inject", {{"id", 0}, {"fault", "ring_garbage"}})));
  ASSERT_TRUE(wait_until([&] {
    const json ws = d().workers();
    if (ws.size() != 2) return false;
    for (const auto& w : ws) {
      if (w.value("state", "") != "ready" || w.value("pid", 0) == victim) return false;
    }
    return true;
  })) << d().workers().dump();
  EXPECT_NE(d().log().find("shm replies ring"), std::string::npos) << "not found corrupt";
  EXPECT_TRUE(DroverProcess::wait_pids_gone({victim}));
  expect_transport(d(), "shm");  // the replacement negotiated a new segment
  auto c = d().client();
  for (int i = 0; i < 4; ++i) {
    const json r = c.call("generate", gen("again", static_cast<std::uint64_t>(i), 8));
    EXPECT_TRUE(is_result(r)) << r.dump();
  }
}

TEST_F(TransportTest, NoSharedMemoryOutlivesAKilledWorkerOrDroverd) {
  DroverOptions o{.workers = 2};
  o.extra_yaml = transport_yaml(true);
  ASSERT_TRUE(start(o));
  expect_transport(d(), "shm");
  // The segments are anonymous (memfd): droverd maps one per worker, /dev/shm gains nothing.
  EXPECT_EQ(segment_mappings(d().pid()), 2);
  EXPECT_TRUE(dev_shm_entries_of(d().pid()).empty());

  // A killed worker's segment is discarded: droverd maps exactly its live workers' segments.
  const int victim = d().workers()[1].value("pid", 0);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] {
    const json ws = d().workers();
    return ws.size() == 2 && ws[1].value("pid", 0) != victim && ws[1].value("state", "") == "ready";
  }));
  EXPECT_TRUE(wait_until([&] { return segment_mappings(d().pid()) == 2; }))
      << segment_mappings(d().pid()) << " segments mapped for 2 workers";

  // kill -9 of droverd itself: nothing of it remains in /dev/shm, and its workers exit.
  const std::set<pid_t> workers = {d().workers()[0].value("pid", 0),
                                   d().workers()[1].value("pid", 0)};
  const pid_t droverd = d().pid();
  ::kill(droverd, SIGKILL);
  ASSERT_TRUE(d().wait_exit().has_value());
  EXPECT_TRUE(DroverProcess::wait_pids_gone(workers));
  EXPECT_TRUE(dev_shm_entries_of(droverd, workers).empty());
  drover_.reset();  // droverd is gone: skip the graceful-stop checks of TearDown
}

}  // namespace
}  // namespace drover::test
