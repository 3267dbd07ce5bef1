// Stream backpressure and stream concurrency with the real droverd and sim workers
// (docs/PIPELINE.md, "Stream backpressure"): a client that reads slowly gets its whole stream,
// contiguous and coalesced, or -32010, while other clients are served as usual; streams
// beyond the concurrency limit wait in the queue and all complete.
#include <gtest/gtest.h>

#include <map>

#include "tests/integration/harness.hpp"

namespace drover::test {
namespace {

// One stream as the client saw it.
struct Stream {
  std::vector<json> chunks;
  json reply;
};

// Reads until every id in `ids` has its reply, sorting chunks by stream.
std::map<std::int64_t, Stream> read_streams(RpcClient& c, const std::vector<std::int64_t>& ids,
                                            Millis timeout = 60s) {
  std::map<std::int64_t, Stream> out;
  std::size_t answered = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (answered < ids.size() && std::chrono::steady_clock::now() < deadline) {
    const auto m = c.read(kReplyTimeout);
    if (!m) break;
    if (m->contains("method")) {
      out[(*m)["params"]["id"].get<std::int64_t>()].chunks.push_back((*m)["params"]);
    } else {
      out[(*m)["id"].get<std::int64_t>()].reply = *m;
      ++answered;
    }
  }
  return out;
}

// Indices 0, 1, 2... in order; returns the concatenated text and adds up the worker chunks.
std::string contiguous_text(const Stream& s, std::size_t* worker_chunks = nullptr,
                            std::size_t* merged_frames = nullptr) {
  std::string text;
  for (std::size_t i = 0; i < s.chunks.size(); ++i) {
    EXPECT_EQ(s.chunks[i]["index"], i) << "stream not contiguous at frame " << i;
    text += s.chunks[i]["text"].get<std::string>();
    const std::size_t n = s.chunks[i].value("coalesced", 1);
    if (worker_chunks) *worker_chunks += n;
    if (merged_frames && n > 1) ++*merged_frames;
  }
  return text;
}

json streams_telemetry(DroverProcess& d) {
  auto c = d.client();
  return c.call("telemetry.metrics")["result"]["streams"];
}

TEST(StreamBackpressure, SlowReaderGetsItsWholeStreamCoalescedWhileOthersAreServed) {
  // 4,000 tokens/s for 4 s: ~1.4 MB of single-chunk frames, far more than the socket buffer;
  // the connection coalesces above 16 KiB unread. The 16 MiB hard limit is not reached.
  DroverProcess d({.worker_args = {"--tokens-per-s", "4000"},
                   .extra_yaml = "streaming:\n  high_watermark_bytes: 16384\n  low_watermark_bytes: 4096\n"});
  ASSERT_TRUE(d.start());
  auto slow = d.client();
  const auto id = slow.send_request(
      "generate", {{"prompt", "flood"}, {"max_tokens", 16000}, {"stream", true}, {"seed", 3}});
  // The slow client reads nothing until its connection is coalescing...
  ASSERT_TRUE(wait_until([&] { return streams_telemetry(d)["coalescing_episodes_total"] >= 1; }));
  // ...and meanwhile another client's stream is delivered chunk by chunk, complete.
  auto other = d.client();
  const auto other_id = other.send_request("generate", {{"prompt", "b"}, {"max_tokens", 50}, {"stream", true}});
  auto others = read_streams(other, {other_id});
  ASSERT_TRUE(is_result(others[other_id].reply)) << others[other_id].reply.dump();
  std::size_t other_chunks = 0, other_merged = 0;
  EXPECT_EQ(contiguous_text(others[other_id], &other_chunks, &other_merged),
            others[other_id].reply["result"]["text"]);
  EXPECT_EQ(other_chunks, 50u);
  EXPECT_EQ(other_merged, 0u) << "a client that reads is never coalesced";
  // Now the slow client reads: the whole stream, contiguous, exact, partly merged.
  auto slow_streams = read_streams(slow, {id}, 120s);
  const Stream& s = slow_streams[id];
  ASSERT_TRUE(is_result(s.reply)) << s.reply.dump();
  std::size_t worker_chunks = 0, merged = 0;
  EXPECT_EQ(contiguous_text(s, &worker_chunks, &merged), s.reply["result"]["text"]);
  EXPECT_EQ(worker_chunks, 16000u);
  EXPECT_GT(merged, 0u);
  EXPECT_LT(s.chunks.size(), 16000u);
  const json t = streams_telemetry(d);
  EXPECT_EQ(t["slow_consumer_cancels_total"], 0);
  EXPECT_GE(t["coalesced_frames_total"], merged);
  EXPECT_EQ(d.stop(), 0);
}

TEST(StreamBackpressure, ClientThatNeverReadsGets32010AfterAContiguousPrefixAndTheWorkerIsFreed) {
  DroverProcess d({.workers = 1,
                   .worker_args = {"--tokens-per-s", "20000"},
                   .server_yaml = {"write_buffer_bytes: 65536"}});
  ASSERT_TRUE(d.start());
  auto slow = d.client();
  const auto id = slow.send_request("generate", {{"prompt", "flood"}, {"max_tokens", 1000000}, {"stream", true}});
  ASSERT_TRUE(wait_until([&] { return streams_telemetry(d)["slow_consumer_cancels_total"] == 1; }, 60s));
  // Cancelled at the worker: it holds nothing any more, although 1,000,000 tokens at 20,000/s
  // would take it 50 s.
  EXPECT_TRUE(wait_until([&] { return d.workers()[0]["inflight"] == 0; }));
  auto other = d.client();
  const json r = other.call("generate", {{"prompt", "x"}, {"max_tokens", 5}});
  EXPECT_TRUE(is_result(r)) << r.dump();
  auto streams = read_streams(slow, {id});
  EXPECT_EQ(error_code(streams[id].reply), -32010) << streams[id].reply.dump();
  EXPECT_FALSE(streams[id].chunks.empty());
  contiguous_text(streams[id]);
  EXPECT_EQ(d.stop(), 0);
}

TEST(StreamBackpressure, StreamsAtFourTimesTheFixedLimitWaitAndAllComplete) {
  // 2 workers x 2 streams = 4 at once; 16 streams on 4 connections.
  DroverProcess d({.worker_args = {"--ttft-ms", "200", "--tokens-per-s", "200"},
                   .extra_yaml = "streaming:\n  max_concurrent_per_worker: 2\n"});
  ASSERT_TRUE(d.start());
  std::vector<RpcClient> clients;
  std::vector<std::vector<std::int64_t>> ids(4);
  for (int c = 0; c < 4; ++c) {
    clients.push_back(d.client());
    for (int i = 0; i < 4; ++i) {
      ids[c].push_back(clients[c].send_request(
          "generate", {{"prompt", "s" + std::to_string(c) + "-" + std::to_string(i)}, {"max_tokens", 20}, {"stream", true}}));
    }
  }
  int completed = 0;
  for (int c = 0; c < 4; ++c) {
    auto streams = read_streams(clients[c], ids[c]);
    for (const auto id : ids[c]) {
      const Stream& s = streams[id];
      ASSERT_TRUE(is_result(s.reply)) << s.reply.dump();
      EXPECT_EQ(s.reply["result"]["finish_reason"], "length");
      EXPECT_EQ(contiguous_text(s), s.reply["result"]["text"]);
      ++completed;
    }
  }
  EXPECT_EQ(completed, 16) << "0 dropped";
  const json t = streams_telemetry(d);
  EXPECT_EQ(t["limit_total"], 4);
  EXPECT_LE(t["peak_active"], 4);
  EXPECT_GE(t["waited_total"], 1);
  EXPECT_EQ(t["active"], 0);
  EXPECT_EQ(t["waiting"], 0);
  EXPECT_EQ(d.stop(), 0);
}

TEST(StreamBackpressure, StreamsAtFourTimesTheAdaptiveLimitWaitAndAllComplete) {
  DroverProcess d({.workers = 1,
                   .worker_args = {"--ttft-ms", "100", "--tokens-per-s", "100"},
                   .workers_yaml = {"heartbeat_interval_ms: 50"}});
  ASSERT_TRUE(d.start());
  const json before = streams_telemetry(d);
  ASSERT_TRUE(before["adaptive"].get<bool>());
  const int limit = before["limit_total"].get<int>();
  ASSERT_GE(limit, 1);
  const int n = 4 * limit;
  std::vector<RpcClient> clients;
  std::vector<std::vector<std::int64_t>> ids(4);
  for (int c = 0; c < 4; ++c) clients.push_back(d.client());
  for (int i = 0; i < n; ++i) {
    ids[i % 4].push_back(clients[i % 4].send_request(
        "generate", {{"prompt", "a" + std::to_string(i)}, {"max_tokens", 30}, {"stream", true}}));
  }
  int completed = 0;
  for (int c = 0; c < 4; ++c) {
    auto streams = read_streams(clients[c], ids[c]);
    for (const auto id : ids[c]) {
      ASSERT_TRUE(is_result(streams[id].reply)) << streams[id].reply.dump();
      EXPECT_EQ(contiguous_text(streams[id]), streams[id].reply["result"]["text"]);
      ++completed;
    }
  }
  EXPECT_EQ(completed, n) << "0 dropped";
  const json t = streams_telemetry(d);
  EXPECT_GE(t["waited_total"], 1) << t.dump();
  EXPECT_EQ(t["active"], 0);
  EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace drover::test
