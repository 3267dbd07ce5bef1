// Per-connection and per-worker limits (server.* and workers.* in the config; docs/SECURITY.md):
// each test drives a real droverd past one limit, checks the precise error the offender gets,
// and checks that another client is served meanwhile.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "tests/integration/harness.hpp"

namespace drover::test {
namespace {

// True when another, well-behaved client is served normally.
bool bystander_served(DroverProcess& d) {
  auto c = d.client();
  const json r = c.call("generate", {{"prompt", "hello"}, {"max_tokens", 4}}, kReplyTimeout);
  return r.contains("result") && r["result"]["finish_reason"] == "length";
}

// Reads until the reply with `id` arrives (skipping stream chunks); null on timeout.
json reply_to(RpcClient& c, std::int64_t id) {
  const auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto m = c.read(kReplyTimeout);
    if (m && m->contains("id") && (*m)["id"] == id) return *m;
  }
  return json();
}

// True when the server closes the connection (EOF) within the deadline.
bool closed_by_server(RpcClient& c) {
  try {
    while (c.read(kReplyTimeout)) {
    }
  } catch (const client::ClientError&) {
  }
  return c.closed_by_server();
}

TEST(Limits, ConnectionBeyondMaxConnectionsGetsAnErrorThenIsClosed) {
  DroverProcess d({.server_yaml = {"max_connections: 2"}});
  ASSERT_TRUE(d.start());
  auto a = d.client();
  auto b = d.client();
  ASSERT_TRUE(a.call("health").contains("result"));
  ASSERT_TRUE(b.call("health").contains("result"));
  auto c = d.client();
  const auto m = c.read(kReplyTimeout);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(error_code(*m), -32001) << m->dump();
  EXPECT_EQ((*m)["error"]["data"]["reason"], "max_connections");
  EXPECT_EQ((*m)["error"]["data"]["limit"], 2);
  EXPECT_TRUE(closed_by_server(c));
  // The admitted clients are unaffected, and a slot frees when one leaves.
  EXPECT_TRUE(a.call("generate", {{"prompt", "x"}, {"max_tokens", 2}}).contains("result"));
  b.close();
  EXPECT_TRUE(wait_until([&] {
    try {
      auto again = d.client();
      return again.call("health", nullptr, 2s).contains("result");
    } catch (const client::ClientError&) {
      return false;
    }
  }));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, BatchLongerThanMaxBatchLengthIsRefusedWhole) {
  DroverProcess d({.server_yaml = {"max_batch_length: 3"}});
  ASSERT_TRUE(d.start());
  auto c = d.client();
  auto batch = [](int n) {
    json b = json::array();
    for (int i = 0; i < n; ++i) b.push_back({{"jsonrpc", "2.0"}, {"id", i}, {"method", "health"}});
    return b;
  };
  c.send(batch(4));
  const auto refused = c.read(kReplyTimeout);
  ASSERT_TRUE(refused.has_value());
  ASSERT_TRUE(refused->is_object()) << refused->dump();
  EXPECT_EQ(error_code(*refused), -32600);
  EXPECT_EQ((*refused)["error"]["data"]["limit"], 3);
  EXPECT_EQ((*refused)["error"]["data"]["length"], 4);
  c.send(batch(3));
  const auto ok = c.read(kReplyTimeout);
  ASSERT_TRUE(ok.has_value());
  ASSERT_TRUE(ok->is_array());
  EXPECT_EQ(ok->size(), 3u);
  EXPECT_TRUE(bystander_served(d));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, RequestsBeyondMaxInflightPerConnectionGet32001) {
  DroverProcess d({.worker_args = {"--ttft-ms", "400"}, .server_yaml = {"max_inflight_per_connection: 2"}});
  ASSERT_TRUE(d.start());
  auto c = d.client();
  const json p = {{"prompt", "slow"}, {"max_tokens", 2}};
  const auto first = c.send_request("generate", p);
  const auto second = c.send_request("generate", p);
  const auto third = c.send_request("generate", p);
  const json refused = reply_to(c, third);
  EXPECT_EQ(error_code(refused), -32001) << refused.dump();
  EXPECT_EQ(refused["error"]["data"]["reason"], "max_inflight_per_connection");
  EXPECT_EQ(refused["error"]["data"]["limit"], 2);
  // The limit is per connection: another client still gets in while these two run.
  EXPECT_TRUE(bystander_served(d));
  // The two admitted ones are answered (in either order).
  std::set<json> answered;
  while (answered.size() < 2) {
    const auto m = c.read(kReplyTimeout);
    ASSERT_TRUE(m.has_value());
    ASSERT_TRUE(m->contains("result")) << m->dump();
    answered.insert((*m)["id"]);
  }
  EXPECT_EQ(answered, (std::set<json>{first, second}));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, MessageNotCompletedWithinPartialMessageTimeoutClosesTheConnection) {
  DroverProcess d({.server_yaml = {"partial_message_timeout_ms: 300"}});
  ASSERT_TRUE(d.start());
  auto loris = d.client();
  loris.send_raw(R"({"jsonrpc": "2.0", "id": 1, "method": "hea)");
  const auto m = loris.read(kReplyTimeout);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(error_code(*m), -32600) << m->dump();
  EXPECT_NE((*m)["error"]["data"]["detail"].get<std::string>().find("partial_message_timeout_ms=300"),
            std::string::npos);
  EXPECT_TRUE(closed_by_server(loris));
  EXPECT_TRUE(bystander_served(d));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, IdleConnectionIsClosedButOneWaitingForItsReplyIsNot) {
  DroverProcess d({.worker_args = {"--ttft-ms", "800"}, .server_yaml = {"idle_timeout_ms: 200"}});
  ASSERT_TRUE(d.start());
  auto busy = d.client();
  const auto id = busy.send_request("generate", {{"prompt", "slow"}, {"max_tokens", 2}});
  auto idle = d.client();
  EXPECT_TRUE(closed_by_server(idle));
  // 800 ms in flight with a 200 ms idle timeout: still answered.
  EXPECT_TRUE(reply_to(busy, id).contains("result"));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, StreamLongerThanMaxStreamDurationEndsWith32004) {
  DroverProcess d({.worker_args = {"--tokens-per-s", "50"}, .server_yaml = {"max_stream_duration_ms: 300"}});
  ASSERT_TRUE(d.start());
  auto c = d.client();
  const auto id = c.send_request("generate", {{"prompt", "long"}, {"max_tokens", 1000}, {"stream", true}});
  const json r = reply_to(c, id);
  EXPECT_EQ(error_code(r), -32004) << r.dump();
  EXPECT_EQ(r["error"]["data"]["timeout_ms"], 300);
  // Unary requests are not streams: 20 tokens at 50/s (400 ms) complete.
  const json unary = c.call("generate", {{"prompt", "u"}, {"max_tokens", 20}}, kReplyTimeout);
  EXPECT_TRUE(unary.contains("result")) << unary.dump();
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, ClientNotReadingItsStreamGets32010AndOthersAreUnaffected) {
  // 20,000 tokens/s: the socket buffer and then the 4 KiB write buffer fill within a second,
  // while the paced sim keeps heartbeating (an unpaced one would hold its thread for the whole
  // stream on a slow, e.g. TSan, build and be taken for hung).
  DroverProcess d({.worker_args = {"--tokens-per-s", "20000"}, .server_yaml = {"write_buffer_bytes: 4096"}});
  ASSERT_TRUE(d.start());
  auto slow = d.client();
  // Chunks arrive far faster than this client (which reads nothing) takes them.
  const auto id = slow.send_request("generate", {{"prompt", "flood"}, {"max_tokens", 200000}, {"stream", true}});
  EXPECT_TRUE(bystander_served(d));
  // It reads nothing until droverd has given up on it: a client that reads, even slowly, has
  // its chunks coalesced and may well get its whole stream (stream_flow_test.cpp).
  EXPECT_TRUE(wait_until([&] {
    auto c = d.client();
    return c.call("telemetry.metrics")["result"]["streams"]["slow_consumer_cancels_total"] == 1;
  }));
  const json r = reply_to(slow, id);
  EXPECT_EQ(error_code(r), -32010) << r.dump();
  EXPECT_TRUE(bystander_served(d));
  EXPECT_EQ(d.stop(), 0);
}

// droverd's resident set in bytes, from /proc/PID/status (0 when it cannot be read).
std::size_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

TEST(Limits, ClientThatNeverReadsIsPausedThenClosedWithMemoryBounded) {
  // A telemetry.metrics line earns a reply tens of times its size. 4 MiB of them unread would
  // be ~100 MB of queued replies; with backpressure droverd stops reading once 1 MiB is
  // unread, so the client's own writes block long before it has sent them all.
  DroverProcess d({.server_yaml = {"write_buffer_bytes: 1048576", "idle_timeout_ms: 2000"}});
  ASSERT_TRUE(d.start());
  const std::size_t rss_before = rss_bytes(d.pid());
  ASSERT_GT(rss_before, 0u);
  auto hog = d.client();
  const std::string line = R"({"jsonrpc":"2.0","id":1,"method":"telemetry.metrics"})" "\n";
  std::string burst;
  while (burst.size() < 64 * 1024) burst += line;
  const std::size_t budget = 4u << 20;
  std::size_t sent = 0;
  while (sent < budget) {
    const ssize_t n = ::send(hog.fd(), burst.data(), burst.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      // The burst is whole lines: rotating it by what was sent continues the stream.
      burst = burst.substr(static_cast<std::size_t>(n)) + burst.substr(0, static_cast<std::size_t>(n));
      continue;
    }
    ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) << std::strerror(errno);
    // Blocked: droverd is either still reading (writable again soon) or has stopped.
    pollfd p{hog.fd(), POLLOUT, 0};
    if (::poll(&p, 1, 3000) == 0) break;
  }
  EXPECT_LT(sent, budget) << "droverd kept reading a client that reads nothing";
  // Others are served meanwhile, and droverd holds about write_buffer_bytes for the hog, not
  // what it asked for (a generous figure: RSS also moves with the allocator).
  EXPECT_TRUE(bystander_served(d));
  const std::size_t rss_after = rss_bytes(d.pid());
  EXPECT_LT(rss_after, rss_before + (48u << 20)) << rss_before << " -> " << rss_after;
  // Still unread after idle_timeout_ms: closed, with a logged reason and a counter.
  EXPECT_TRUE(wait_until([&] {
    auto c = d.client();
    return c.call("telemetry.metrics")["result"]["connections"]["backlog_closes_total"] == 1;
  }));
  EXPECT_NE(d.log().find("bytes of replies for idle_timeout_ms=2000; closing"), std::string::npos);
  EXPECT_TRUE(closed_by_server(hog));
  EXPECT_TRUE(bystander_served(d));
  EXPECT_EQ(d.stop(), 0);
}

// Replies of work accepted before the pause keep coming: past 2 x write_buffer_bytes unread,
// the connection is closed at once (not after idle_timeout_ms).
TEST(Limits, RepliesPilingUpPastTwiceTheWriteBufferCloseTheConnection) {
  DroverProcess d({.server_yaml = {"write_buffer_bytes: 4096"}});
  ASSERT_TRUE(d.start());
  auto hog = d.client();
  // ~40 x 10+ KiB of replies: far more than the socket buffers hold, all accepted in one read.
  std::string lines;
  for (int i = 0; i < 40; ++i) {
    lines += request(i, "generate", {{"prompt", "reply " + std::to_string(i)}, {"max_tokens", 3000},
                                     {"cache", "bypass"}})
                 .dump() +
             "\n";
  }
  hog.send_raw(lines);
  EXPECT_TRUE(wait_until([&] {
    auto c = d.client();
    return c.call("telemetry.metrics")["result"]["connections"]["backlog_closes_total"] == 1;
  }));
  EXPECT_NE(d.log().find("past 2 x write_buffer_bytes=4096; closing"), std::string::npos);
  EXPECT_TRUE(closed_by_server(hog));
  EXPECT_TRUE(bystander_served(d));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, ClientThatReadsSlowlyIsPausedAndResumedWithEveryReply) {
  // Backpressure is a pause, not a penalty: a client that writes ahead and only then reads
  // gets every reply, in order.
  DroverProcess d({.server_yaml = {"write_buffer_bytes: 65536"}});
  ASSERT_TRUE(d.start());
  auto c = d.client();
  std::string batch;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    batch += R"({"jsonrpc":"2.0","id":)" + std::to_string(i) + R"(,"method":"telemetry.metrics"})" "\n";
  }
  // Written from another thread straight to the socket (RpcClient is one thread's), so the
  // writes block once droverd pauses and resume as the replies below are read.
  std::thread writer([&, fd = c.fd()] {
    std::size_t off = 0;
    while (off < batch.size()) {
      const ssize_t k = ::send(fd, batch.data() + off, batch.size() - off, MSG_NOSIGNAL);
      if (k > 0) {
        off += static_cast<std::size_t>(k);
      } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 1000);
      } else {
        return;
      }
    }
  });
  for (int i = 0; i < n; ++i) {
    const auto m = c.read(kReplyTimeout);
    ASSERT_TRUE(m.has_value()) << i;
    ASSERT_EQ((*m)["id"], i);
    ASSERT_TRUE(m->contains("result"));
  }
  writer.join();
  EXPECT_GE(c.call("telemetry.metrics")["result"]["connections"]["reader_pauses_total"], 1);
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, WorkerReplyLargerThanWorkersMaxMessageBytesReplacesTheWorker) {
  DroverProcess d({.workers_yaml = {"max_message_bytes: 2048", "restart_backoff_base_ms: 10"},
                   .extra_yaml = "retry: {max_attempts: 2}\n"});
  ASSERT_TRUE(d.start());
  auto c = d.client();
  const json r = c.call("generate", {{"prompt", "big"}, {"max_tokens", 2000}}, kReplyTimeout);
  EXPECT_EQ(error_code(r), -32003) << r.dump();
  EXPECT_NE(d.log().find("garbage from worker"), std::string::npos);
  EXPECT_TRUE(d.wait_ready(2));
  EXPECT_TRUE(bystander_served(d));
  EXPECT_EQ(d.stop(), 0);
}

TEST(Limits, WorkerFloodingNotificationsIsReplaced) {
  DroverProcess d({.workers = 1,
                   .workers_yaml = {"max_notifications_per_s: 5", "heartbeat_interval_ms: 10",
                                    "max_restarts: 1000"}});
  ASSERT_TRUE(d.start());
  EXPECT_TRUE(wait_until([&] { return d.log().find("max_notifications_per_s=5") != std::string::npos; }));
  EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace drover::test

namespace drover::test {
namespace {

TEST(Limits, WorkerSendingFieldsOfTheWrongTypeIsReplacedAndDroverdKeepsServing) {
  DroverOptions o;
  o.workers = 1;
  o.command = {"python3", std::string(DROVER_SOURCE_DIR) + "/tests/integration/data/typed_garbage_worker.py"};
  o.workers_yaml = {"max_restarts: 1000", "restart_backoff_base_ms: 50"};
  DroverProcess d(o);
  // Its workers never stay ready, so start() would wait in vain: watch the log instead.
  d.launch();
  // The codec names the first field of the wrong type.
  EXPECT_TRUE(wait_until([&] {
    return d.log().find("garbage from worker: inflight must be an integer") != std::string::npos;
  }));
  ASSERT_TRUE(d.running());
  EXPECT_TRUE(d.health().contains("workers_total"));
  EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace drover::test
