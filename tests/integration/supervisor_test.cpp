// End-to-end tests of droverd with real sim workers: each test starts its own droverd in a temp
// dir (see harness.hpp) and checks behaviour a client or an operator relies on
// (shared/DESIGN.md sections 1, 4, 5, 6 and 9).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "harness.hpp"

namespace drover::test {
namespace {

using client::ClientError;
using proto::Framing;

// A string whose sim tokens are its UTF-8 bytes (two- and three-byte sequences included).
const std::string kUtf8Text = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x9C\x93";

json utf8_bytes(const std::string& s) {
  json out = json::array();
  for (unsigned char ch : s) out.push_back(static_cast<int>(ch));
  return out;
}

json gen_params(const std::string& prompt, std::uint64_t seed, int max_tokens,
                bool stream = false) {
  return {{"prompt", prompt},
          {"seed", seed},
          {"temperature", 0.7},
          {"max_tokens", max_tokens},
          {"stream", stream}};
}

bool is_chunk_of(const json& msg, const json& id) {
  return msg.is_object() && msg.value("method", "") == "generate.chunk" && !msg.contains("id") &&
         msg.contains("params") && msg["params"].value("id", json()) == id;
}

// Reads until a generate.chunk for `id` arrives (other messages are kept in `others`).
json read_chunk(RpcClient& c, const json& id, std::vector<json>* others = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    auto msg = c.read(std::max(left, Millis(0)));
    if (!msg) throw ClientError("no chunk for " + id.dump());
    if (is_chunk_of(*msg, id)) return *msg;
    if (others) others->push_back(std::move(*msg));
  }
}

// Reads until the replies to all of `ids` have arrived, in whatever order; other messages go to
// `others` when given. Fails (ClientError) if they do not all arrive within the timeout.
std::map<json, json> read_replies(RpcClient& c, const std::set<json>& ids,
                                  std::vector<json>* others = nullptr,
                                  Millis timeout = kReplyTimeout) {
  std::map<json, json> got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got.size() < ids.size()) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    auto msg = c.read(std::max(left, Millis(0)));
    if (!msg) throw ClientError("not every reply arrived within " + std::to_string(timeout.count()) + " ms");
    const bool reply = msg->is_object() && msg->contains("id") &&
                       (msg->contains("result") || msg->contains("error"));
    if (reply && ids.contains((*msg)["id"])) {
      if (!got.emplace((*msg)["id"], *msg).second) {
        ADD_FAILURE() << "second reply for id " << (*msg)["id"].dump() << ": " << msg->dump();
      }
    } else if (others) {
      others->push_back(std::move(*msg));
    }
  }
  return got;
}

// The first worker of workers.list that holds a request, or null.
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

// The pool is back to `n` ready workers, slot `slot` runs a process other than `old_pid`, and
// its restart counter moved.
bool recovered(DroverProcess& d, int n, int slot, int old_pid) {
  const json ws = d.workers();
  if (static_cast<int>(ws.size()) != n) return false;
  bool replaced = false;
  for (const auto& w : ws) {
    if (w.value("state", "") != "ready") return false;
    if (w.value("id", -1) == slot) {
      replaced = w.value("pid", 0) != old_pid && w.value("restarts", 0) >= 1;
    }
  }
  return replaced && d.health().value("workers_ready", -1) == n;
}

int total_restarts(DroverProcess& d) {
  int n = 0;
  for (const auto& w : d.workers()) n += w.value("restarts", 0);
  return n;
}

// Accumulates raw bytes from a socket until `complete(buffer)` holds or the timeout passes.
std::string recv_until(int fd, const std::function<bool(const std::string&)>& complete,
                       Millis timeout = kReplyTimeout) {
  std::string buf;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!complete(buf)) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char tmp[65536];
    const ssize_t n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0) break;
    buf.append(tmp, static_cast<std::size_t>(n));
  }
  return buf;
}

// Takes one strictly formed "Content-Length: N\r\n\r\n<N bytes>" frame off the front of buf.
std::optional<std::string> take_content_length_frame(std::string& buf) {
  static const std::string kPrefix = "Content-Length: ";
  if (buf.size() < kPrefix.size()) return std::nullopt;
  if (buf.compare(0, kPrefix.size(), kPrefix) != 0) {
    throw std::runtime_error("reply is not Content-Length framed: " + buf.substr(0, 80));
  }
  const auto end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  const std::size_t len = std::stoul(buf.substr(kPrefix.size(), end - kPrefix.size()));
  if (buf.size() < end + 4 + len) return std::nullopt;
  std::string body = buf.substr(end + 4, len);
  buf.erase(0, end + 4 + len);
  return body;
}

// Number of complete Content-Length frames at the front of buf (without consuming them).
std::size_t complete_cl_frames(const std::string& buf) {
  std::string copy = buf;
  std::size_t n = 0;
  try {
    while (take_content_length_frame(copy)) ++n;
  } catch (const std::exception&) {
    return SIZE_MAX;  // malformed: stop waiting, the caller's parse reports it
  }
  return n;
}

// True when the server closes the connection within the timeout without sending anything more.
bool server_closes(RpcClient& c, Millis timeout = 10s) {
  try {
    if (const auto extra = c.read(timeout)) {
      ADD_FAILURE() << "unexpected message before the close: " << extra->dump();
    }
    return false;
  } catch (const ClientError&) {
    return c.closed_by_server();
  }
}

mode_t file_mode(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Binds a Unix socket at path and closes it without unlinking: what a crashed server leaves.
void leave_stale_socket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(fd, 1), 0);
  ::close(fd);
  ASSERT_TRUE(path_exists(path));
}

// ---------------------------------------------------------------------------------------------

TEST_F(DroverTest, HundredConcurrentConnectionsGetEveryReplyExactlyOnce) {
  ASSERT_TRUE(start({.workers = 2}));
  constexpr int kConnections = 100;
  constexpr int kPerConnection = 10;
  constexpr int kPairs = 5;  // distinct (prompt, seed) pairs shared by all connections
  constexpr int kMaxTokens = 8;

  std::mutex mu;  // guards failures and texts
  std::vector<std::string> failures;
  std::map<int, std::set<std::string>> texts;  // pair -> distinct texts seen
  auto fail = [&](const std::string& what) {
    std::lock_guard lock(mu);
    failures.push_back(what);
  };

  auto run_connection = [&](int k) {
    try {
      RpcClient c = d().client();
      struct Expected {
        int kind;  // 0 generate, 1 tokenize, 2 detokenize
        int pair;
      };
      std::map<json, Expected> pending;
      std::vector<json> reqs;
      for (int i = 0; i < kPerConnection; ++i) {
        // Numeric and string ids, to check that each comes back as it was sent.
        const json id = i % 2 == 0 ? json(k * 1000 + i) : json("c" + std::to_string(k) + "-r" + std::to_string(i));
        const int kind = (k + i) % 3;
        const int pair = (k + i) % kPairs;
        json params;
        if (kind == 0) {
          params = gen_params("prompt-" + std::to_string(pair), 1000 + pair, kMaxTokens);
        } else if (kind == 1) {
          params = {{"text", kUtf8Text}};
        } else {
          params = {{"tokens", utf8_bytes(kUtf8Text)}};
        }
        reqs.push_back(request(id, kind == 0 ? "generate" : kind == 1 ? "tokenize" : "detokenize", params));
        pending.emplace(id, Expected{kind, pair});
      }
      std::set<json> answered;
      auto check_one = [&](const json& reply) {
        const json id = reply.value("id", json());
        const auto it = pending.find(id);
        if (it == pending.end()) {
          fail("conn " + std::to_string(k) + ": reply with unexpected id: " + reply.dump());
          return;
        }
        if (!answered.insert(id).second) {
          fail("conn " + std::to_string(k) + ": id answered twice: " + id.dump());
          return;
        }
        if (!is_result(reply)) {
          fail("conn " + std::to_string(k) + ": error reply: " + reply.dump());
          return;
        }
        const json& r = reply["result"];
        switch (it->second.kind) {
          case 0:
            if (r.value("finish_reason", "") != "length" ||
                r["usage"].value("completion_tokens", -1) != kMaxTokens || !r["text"].is_string()) {
              fail("conn " + std::to_string(k) + ": bad generate result: " + r.dump());
            } else {
              std::lock_guard lock(mu);
              texts[it->second.pair].insert(r["text"].get<std::string>());
            }
            break;
          case 1:
            if (r.value("tokens", json()) != utf8_bytes(kUtf8Text)) {
              fail("conn " + std::to_string(k) + ": tokenize returned " + r.dump());
            }
            break;
          case 2:
            if (r.value("text", json()) != kUtf8Text) {
              fail("conn " + std::to_string(k) + ": detokenize returned " + r.dump());
            }
            break;
        }
      };
      auto read_replies = [&](int n) {
        for (int j = 0; j < n; ++j) {
          const json msg = read_one(c);
          if (!msg.is_object() || !msg.contains("id")) {
            fail("conn " + std::to_string(k) + ": unexpected message " + msg.dump());
            continue;
          }
          check_one(msg);
        }
      };
      // Wave 1: five requests written one by one, without waiting for replies.
      for (int i = 0; i < 5; ++i) c.send(reqs[static_cast<std::size_t>(i)]);
      read_replies(2);
      // Wave 2: five requests in a single write, while three replies are still owed.
      std::string burst;
      for (int i = 5; i < kPerConnection; ++i) burst += reqs[static_cast<std::size_t>(i)].dump() + "\n";
      c.send_raw(burst);
      read_replies(kPerConnection - 2);
      // Nothing more may be owed: the next message must be the reply to this request.
      c.send(request("final", "health"));
      const json last = read_one(c);
      if (last.value("id", json()) != "final") {
        fail("conn " + std::to_string(k) + ": extra message after all replies: " + last.dump());
      }
    } catch (const std::exception& e) {
      fail("conn " + std::to_string(k) + ": " + e.what());
    }
  };

  std::vector<std::thread> threads;
  threads.reserve(kConnections);
  for (int k = 0; k < kConnections; ++k) threads.emplace_back(run_connection, k);
  for (auto& t : threads) t.join();

  EXPECT_TRUE(failures.empty()) << failures.size() << " failures, first: "
                                << (failures.empty() ? "" : failures.front());
  ASSERT_EQ(texts.size(), static_cast<std::size_t>(kPairs));
  for (const auto& [pair, seen] : texts) {
    EXPECT_EQ(seen.size(), 1u) << "pair " << pair << " (same prompt and seed) gave different texts";
  }
  // The equality above means something only if the seed matters: another seed, another text.
  auto c = d().client();
  const json a = c.call("generate", gen_params("prompt-0", 1000, kMaxTokens));
  const json b = c.call("generate", gen_params("prompt-0", 1001, kMaxTokens));
  ASSERT_TRUE(is_result(a) && is_result(b)) << a.dump() << b.dump();
  EXPECT_EQ(a["result"]["text"], *texts[0].begin());
  EXPECT_NE(a["result"]["text"], b["result"]["text"]);
}

TEST_F(DroverTest, StreamSendsContiguousChunksBeforeTheFinalReply) {
  ASSERT_TRUE(start());
  auto c = d().client();
  // Two streams at once on one connection: each chunk must name its own request.
  const std::map<json, int> max_tokens = {{json("s-a"), 16}, {json(7), 12}};
  c.send(request("s-a", "generate", gen_params("stream a", 1, 16, true)));
  c.send(request(7, "generate", gen_params("stream b", 2, 12, true)));
  std::map<json, std::vector<json>> chunks;
  std::map<json, json> finals;
  while (finals.size() < 2) {
    const json msg = read_one(c);
    if (msg.value("method", "") == "generate.chunk") {
      ASSERT_FALSE(msg.contains("id")) << "a chunk is a notification: " << msg.dump();
      const json id = msg["params"].value("id", json());
      ASSERT_TRUE(max_tokens.contains(id)) << "chunk for an unknown id: " << msg.dump();
      ASSERT_FALSE(finals.contains(id)) << "chunk after the final reply: " << msg.dump();
      chunks[id].push_back(msg["params"]);
    } else {
      const json id = msg.value("id", json());
      ASSERT_TRUE(max_tokens.contains(id)) << msg.dump();
      ASSERT_FALSE(finals.contains(id)) << "second final reply: " << msg.dump();
      finals[id] = msg;
    }
  }
  for (const auto& [id, n] : max_tokens) {
    SCOPED_TRACE("request " + id.dump());
    ASSERT_TRUE(is_result(finals[id])) << finals[id].dump();
    const json& r = finals[id]["result"];
    ASSERT_FALSE(chunks[id].empty()) << "no chunk arrived before the final reply";
    std::string joined;
    for (std::size_t i = 0; i < chunks[id].size(); ++i) {
      EXPECT_EQ(chunks[id][i].value("index", -1), static_cast<int>(i));
      joined += chunks[id][i].value("text", "");
    }
    EXPECT_EQ(joined, r.value("text", "")) << "final text differs from the concatenated chunks";
    EXPECT_EQ(r.value("finish_reason", ""), "length");
    EXPECT_EQ(r["usage"].value("completion_tokens", -1), n);
  }
  // The same request unstreamed produces the same text.
  const json unary = c.call("generate", gen_params("stream a", 1, 16, false));
  ASSERT_TRUE(is_result(unary)) << unary.dump();
  EXPECT_EQ(unary["result"]["text"], finals[json("s-a")]["result"]["text"]);
}

TEST_F(DroverTest, ContentLengthAndNdjsonFramingEndToEnd) {
  ASSERT_TRUE(start());
  {
    SCOPED_TRACE("Content-Length client");
    auto c = d().client(Framing::content_length);
    // A request split inside its header and inside its body still arrives whole.
    const std::string body = request(1, "tokenize", {{"text", kUtf8Text}}).dump();
    const std::string framed = "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    c.send_raw(framed.substr(0, 9));
    c.send_raw(framed.substr(9, 20));
    c.send_raw(framed.substr(29));
    // Then a streamed generate with a lower-case header and an extra Content-Type header.
    const std::string gen = request(2, "generate", gen_params("framed", 9, 6, true)).dump();
    c.send_raw("content-length: " + std::to_string(gen.size()) +
               "\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" + gen);
    // 1 tokenize reply + 6 chunks + 1 final reply, every one Content-Length framed.
    std::string buf = recv_until(c.fd(), [](const std::string& b) { return complete_cl_frames(b) >= 8; });
    std::vector<json> frames;
    while (auto f = take_content_length_frame(buf)) frames.push_back(json::parse(*f));
    ASSERT_EQ(frames.size(), 8u);
    EXPECT_TRUE(buf.empty()) << "unframed bytes: " << buf;
    // The two requests run on different workers, so only each one's own order is fixed.
    std::string joined;
    int chunks = 0;
    std::map<json, json> replies;
    for (const auto& f : frames) {
      if (is_chunk_of(f, 2)) {
        ASSERT_FALSE(replies.contains(2)) << "chunk after the final reply: " << f.dump();
        EXPECT_EQ(f["params"].value("index", -1), chunks++);
        joined += f["params"].value("text", "");
      } else {
        ASSERT_TRUE(f.contains("id")) << f.dump();
        replies[f["id"]] = f;
      }
    }
    EXPECT_EQ(chunks, 6);
    ASSERT_TRUE(replies.contains(1) && replies.contains(2)) << testing::PrintToString(frames);
    EXPECT_EQ(replies[1]["result"]["tokens"], utf8_bytes(kUtf8Text)) << replies[1].dump();
    EXPECT_EQ(replies[2]["result"].value("text", ""), joined) << replies[2].dump();
    // The client library speaks the framing too.
    const json h = c.call("health");
    EXPECT_TRUE(is_result(h)) << h.dump();
  }
  {
    SCOPED_TRACE("NDJSON client");
    auto c = d().client(Framing::ndjson);
    // CRLF line endings and blank lines between messages are accepted.
    c.send_raw("\r\n" + request(1, "detokenize", {{"tokens", utf8_bytes(kUtf8Text)}}).dump() + "\r\n");
    std::string buf = recv_until(c.fd(), [](const std::string& b) { return b.find('\n') != std::string::npos; });
    ASSERT_FALSE(buf.empty());
    EXPECT_EQ(buf.front(), '{');
    const auto nl = buf.find('\n');
    ASSERT_EQ(nl, buf.size() - 1) << "one reply, one line: " << buf;
    const json reply = json::parse(buf.substr(0, nl));
    EXPECT_EQ(reply.value("id", json()), 1);
    EXPECT_EQ(reply["result"].value("text", ""), kUtf8Text);
  }
}

TEST_F(DroverTest, CancelEndsARunningStreamAndUnknownIdsAreNotCancelled) {
  // 2000 tokens at 20/s: a stream that would run for 100 s if nothing stopped it.
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--tokens-per-s", "20"}}));
  auto c = d().client();
  c.send(request("long", "generate", gen_params("a long story", 3, 2000, true)));
  std::vector<json> chunks{read_chunk(c, "long")};

  // Another connection cannot cancel this connection's request.
  {
    auto other = d().client();
    const json r = other.call("cancel", {{"id", "long"}});
    ASSERT_TRUE(is_result(r)) << r.dump();
    EXPECT_EQ(r["result"], json({{"cancelled", false}}));
  }

  c.send(request("cx", "cancel", {{"id", "long"}}));
  std::map<std::string, json> replies;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (replies.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    const json msg = read_one(c, 20s);
    if (is_chunk_of(msg, "long")) {
      ASSERT_FALSE(replies.contains("long")) << "chunk after the final reply";
      chunks.push_back(msg);
    } else {
      replies[msg.value("id", "?")] = msg;
    }
  }
  ASSERT_TRUE(replies.contains("cx"));
  ASSERT_TRUE(replies.contains("long"));
  EXPECT_EQ(replies["cx"].value("result", json()), json({{"cancelled", true}})) << replies["cx"].dump();
  ASSERT_TRUE(is_result(replies["long"])) << replies["long"].dump();
  const json& r = replies["long"]["result"];
  EXPECT_EQ(r.value("finish_reason", ""), "cancelled");
  EXPECT_LT(r["usage"].value("completion_tokens", 2000), 2000);
  std::string joined;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i]["params"].value("index", -1), static_cast<int>(i));
    joined += chunks[i]["params"].value("text", "");
  }
  EXPECT_EQ(r.value("text", ""), joined);

  // Unknown and already finished ids are not cancelled.
  const json unknown = c.call("cancel", {{"id", "no-such-request"}});
  EXPECT_EQ(unknown.value("result", json()), json({{"cancelled", false}})) << unknown.dump();
  const json finished = c.call("cancel", {{"id", "long"}});
  EXPECT_EQ(finished.value("result", json()), json({{"cancelled", false}})) << finished.dump();
  EXPECT_TRUE(wait_until([&] { return all_idle(d()); }));
}

// Issue 15 item 12: ids come back exactly as written (no number normalisation, no escape
// decoding), and cancel compares them as JSON text, so 1 is not 1.0.
TEST_F(DroverTest, IdsAreEchoedByteExactAndCancelComparesThemAsText) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "1500"}}));
  auto c = d().client();
  for (const std::string id : {"1e2", "123456789012345678901234567890", R"("a\u0062")", "-0", "1.50"}) {
    SCOPED_TRACE(id);
    c.send_raw(R"({"jsonrpc":"2.0","method":"health","id":)" + id + "}\n");
    const auto text = c.read_text(kReplyTimeout);
    ASSERT_TRUE(text.has_value());
    EXPECT_NE(text->find(R"("id":)" + id + ","), std::string::npos) << *text;
  }
  c.send_raw(R"({"jsonrpc":"2.0","id":1.0,"method":"generate","params":{"prompt":"ids","max_tokens":3}})" "\n");
  ASSERT_TRUE(wait_until([&] { return !all_idle(d()); }));
  c.send_raw(R"({"jsonrpc":"2.0","id":"c1","method":"cancel","params":{"id":1}})" "\n");
  const json not_it = read_reply(c, "c1");
  EXPECT_EQ(not_it.value("result", json()), json({{"cancelled", false}})) << not_it.dump();
  c.send_raw(R"({"jsonrpc":"2.0","id":"c2","method":"cancel","params":{"id":1.0}})" "\n");
  // The generate's reply (cancelled, with its id as written) and the cancel's, in either order.
  std::optional<std::string> generate_text;
  std::optional<json> ack;
  while (!generate_text || !ack) {
    const auto text = c.read_text(kReplyTimeout);
    ASSERT_TRUE(text.has_value());
    const json m = json::parse(*text);
    if (m.value("id", json()) == "c2") {
      ack = m;
    } else {
      generate_text = *text;
    }
  }
  EXPECT_EQ(ack->value("result", json()), json({{"cancelled", true}})) << ack->dump();
  EXPECT_NE(generate_text->find(R"("id":1.0,)"), std::string::npos) << *generate_text;
  EXPECT_EQ(json::parse(*generate_text)["result"]["finish_reason"], "cancelled") << *generate_text;
}

TEST_F(DroverTest, ClientDisconnectMidStreamCancelsAtTheWorker) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--tokens-per-s", "20"}}));
  {
    auto c = d().client();
    c.send(request(1, "generate", gen_params("never finished", 4, 2000, true)));
    read_chunk(c, 1);
    ASSERT_FALSE(busy_worker(d()).is_null()) << "the stream should be held by a worker";
    c.close();
  }
  // The supervisor lowers a worker's inflight only when the worker answers, so this proves the
  // cancel reached the worker (the stream alone would run for 100 s).
  EXPECT_TRUE(wait_until([&] { return all_idle(d()); }, 20s)) << d().workers().dump();
  const json r = d().client().call("generate", gen_params("still serving", 5, 3));
  EXPECT_TRUE(is_result(r)) << r.dump();
}

TEST_F(DroverTest, WorkerKilledMidRequestIsRetriedOnAnotherWorker) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "4000"}}));
  auto c = d().client();
  const json params = gen_params("survive a crash", 11, 6);
  c.send(request(1, "generate", params));
  json victim;
  ASSERT_TRUE(wait_until([&] { return !(victim = busy_worker(d())).is_null(); }, 20s));
  const int victim_pid = victim["pid"].get<int>();
  const int victim_slot = victim["id"].get<int>();
  ASSERT_EQ(::kill(victim_pid, SIGKILL), 0);

  const json reply = read_reply(c, 1);
  ASSERT_TRUE(is_result(reply)) << "the request must survive its worker: " << reply.dump();
  EXPECT_EQ(reply["result"].value("finish_reason", ""), "length");
  EXPECT_EQ(reply["result"]["usage"].value("completion_tokens", -1), 6);
  EXPECT_TRUE(wait_until([&] { return recovered(d(), 2, victim_slot, victim_pid); }))
      << d().workers().dump();
  // The retry ran the same request (same seed): a fresh run gives the same text.
  const json again = c.call("generate", params);
  ASSERT_TRUE(is_result(again)) << again.dump();
  EXPECT_EQ(again["result"]["text"], reply["result"]["text"]);
}

// After a chunk has reached the client, a stream can only continue by replaying it on another
// worker with the same seed and skipping what the client already has (DESIGN.md section 6);
// a supervisor without that failover answers -32003 instead. Either way the client must see
// one coherent outcome: contiguous, unrepeated chunks and exactly one final reply.
TEST_F(DroverTest, WorkerKilledMidStreamResumesSeamlesslyOrFailsWithWorkerFailed) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--tokens-per-s", "20"}}));
  auto c = d().client();
  const json params = gen_params("cut short", 6, 60, true);
  c.send(request("s", "generate", params));
  std::vector<json> chunks{read_chunk(c, "s")};
  const json victim = busy_worker(d());
  ASSERT_FALSE(victim.is_null());
  ASSERT_EQ(::kill(victim["pid"].get<int>(), SIGKILL), 0);

  std::vector<json> others;
  const json reply = read_reply(c, "s", kReplyTimeout, &others);
  for (const auto& m : others) {
    ASSERT_TRUE(is_chunk_of(m, "s")) << "unexpected message: " << m.dump();
    chunks.push_back(m);
  }
  std::string joined;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    ASSERT_EQ(chunks[i]["params"].value("index", -1), static_cast<int>(i))
        << "chunks repeated or skipped across the worker's death";
    joined += chunks[i]["params"].value("text", "");
  }
  if (is_result(reply)) {
    const json& r = reply["result"];
    EXPECT_EQ(r.value("finish_reason", ""), "length");
    EXPECT_EQ(r["usage"].value("completion_tokens", -1), 60);
    EXPECT_EQ(r.value("text", ""), joined);
    json unary = params;
    unary["stream"] = false;
    const json fresh = c.call("generate", unary);
    ASSERT_TRUE(is_result(fresh)) << fresh.dump();
    EXPECT_EQ(fresh["result"]["text"], r["text"]) << "the resumed stream is not the seed's text";
  } else {
    ASSERT_EQ(error_code(reply), -32003) << reply.dump();
    const json& data = reply["error"]["data"];
    ASSERT_TRUE(data.is_object()) << reply.dump();
    EXPECT_GE(data.value("attempts", 0), 1);
    EXPECT_EQ(data.value("worker", -1), victim["id"].get<int>());
  }
  EXPECT_TRUE(wait_until([&] {
    return recovered(d(), 2, victim["id"].get<int>(), victim["pid"].get<int>());
  })) << d().workers().dump();
  EXPECT_TRUE(is_result(c.call("health")));
}

// Killing every worker that picks the stream up exhausts its attempts: -32003 naming how many
// attempts were made and the last worker, and the pool recovers.
TEST_F(DroverTest, StreamWhoseWorkersKeepDyingFailsWithWorkerFailed) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--tokens-per-s", "20"}}));
  auto c = d().client();
  c.send(request("s", "generate", gen_params("doomed", 7, 400, true)));
  read_chunk(c, "s");
  std::set<int> killed;
  int last_slot = -1;
  json reply;
  const bool answered = wait_until(
      [&] {
        while (auto m = c.read(0ms)) {
          if (m->is_object() && m->value("id", json()) == "s") {
            reply = *m;
            return true;
          }
        }
        for (const auto& w : d().workers()) {
          const int pid = w.value("pid", 0);
          if (w.value("inflight", 0) > 0 && !killed.contains(pid)) {
            EXPECT_EQ(::kill(pid, SIGKILL), 0);
            killed.insert(pid);
            last_slot = w.value("id", -1);
          }
        }
        return false;
      },
      kWaitTimeout, 20ms);
  ASSERT_TRUE(answered) << "no final reply; killed " << killed.size() << " workers";
  ASSERT_EQ(error_code(reply), -32003) << reply.dump();
  const json& data = reply["error"]["data"];
  ASSERT_TRUE(data.is_object()) << reply.dump();
  EXPECT_EQ(data.value("attempts", 0), static_cast<int>(killed.size()))
      << "one attempt per worker that died holding it";
  EXPECT_EQ(data.value("worker", -1), last_slot);
  EXPECT_TRUE(wait_until([&] {
    const json ws = d().workers();
    if (ws.size() != 2) return false;
    for (const auto& w : ws) {
      if (w.value("state", "") != "ready" || killed.contains(w.value("pid", 0))) return false;
    }
    return total_restarts(d()) >= static_cast<int>(killed.size());
  })) << d().workers().dump();
  EXPECT_TRUE(is_result(c.call("generate", gen_params("next", 8, 3))));
}

// One worker: the retry then always lands on a fresh replacement. With several workers the sim
// faults strike in lockstep (round robin gives each worker every Nth request), so a retry would
// meet another worker at the same fault threshold and exhaust its attempts with -32003.
TEST_F(DroverTest, WorkerWritingGarbageIsReplacedAndRequestsStillAnswered) {
  ASSERT_TRUE(start({.workers = 1, .worker_args = {"--garbage-after", "2"}}));
  auto c = d().client();
  for (int i = 0; i < 10; ++i) {
    const json r = c.call("generate", gen_params("garbage " + std::to_string(i), i, 4));
    EXPECT_TRUE(is_result(r)) << "request " << i << ": " << r.dump();
  }
  EXPECT_TRUE(wait_until([&] { return total_restarts(d()) > 0; }));
  EXPECT_TRUE(d().wait_ready(1));
  EXPECT_EQ(d().health().value("status", ""), "ok");
}

TEST_F(DroverTest, CrashingWorkerIsReplacedAndRequestsStillAnswered) {
  ASSERT_TRUE(start({.workers = 1, .worker_args = {"--crash-after", "2"}}));
  auto c = d().client();
  for (int i = 0; i < 10; ++i) {
    const json r = c.call("generate", gen_params("crash " + std::to_string(i), i, 4));
    EXPECT_TRUE(is_result(r)) << "request " << i << ": " << r.dump();
  }
  EXPECT_TRUE(wait_until([&] { return total_restarts(d()) > 0; }));
  EXPECT_TRUE(d().wait_ready(1));
  EXPECT_EQ(d().health().value("status", ""), "ok");
}

TEST_F(DroverTest, AdminMethodsOnlyOnTheAdminSocket) {
  ASSERT_TRUE(start({.workers = 2, .server_yaml = {"socket_mode: 0640"}}));
  EXPECT_EQ(file_mode(d().admin_path()), 0600u);
  EXPECT_EQ(file_mode(d().socket_path()), 0640u);

  auto c = d().client();
  for (const char* m : {"workers.list", "workers.kill", "config.get"}) {
    const json params = std::string(m) == "workers.kill" ? json{{"id", 0}} : json(nullptr);
    const json r = c.call(m, params);
    EXPECT_EQ(error_code(r), -32008) << m << ": " << r.dump();
  }
  const json before = d().workers();
  ASSERT_EQ(before.size(), 2u);
  for (const auto& w : before) {
    for (const char* key : {"id", "pid", "state", "inflight", "breaker", "restarts", "uptime_s",
                            "heartbeat_age_ms", "rss_bytes", "models"}) {
      EXPECT_TRUE(w.contains(key)) << "workers.list entry lacks '" << key << "': " << w.dump();
    }
  }
  const int old_pid = before[0]["pid"].get<int>();
  auto a = d().admin();
  const json killed = a.call("workers.kill", {{"id", before[0]["id"]}, {"signal", "KILL"}});
  ASSERT_TRUE(is_result(killed)) << killed.dump();
  EXPECT_TRUE(wait_until([&] { return recovered(d(), 2, before[0]["id"].get<int>(), old_pid); }))
      << d().workers().dump();
  // The client socket was not disturbed by any of this.
  EXPECT_TRUE(is_result(c.call("health")));
}

TEST_F(DroverTest, BadInputIsAnsweredAndTheServerKeepsServing) {
  ASSERT_TRUE(start({.workers = 2, .server_yaml = {"max_message_bytes: 4096"}}));
  auto bystander = d().client();  // a well-behaved client connected throughout
  ASSERT_TRUE(is_result(bystander.call("health")));

  auto c = d().client();
  {
    SCOPED_TRACE("malformed JSON");
    c.send_raw("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \n");
    const json r = read_one(c);
    EXPECT_EQ(error_code(r), -32700) << r.dump();
    EXPECT_TRUE(r.contains("id") && r["id"].is_null()) << r.dump();
  }
  {
    SCOPED_TRACE("invalid requests");
    c.send(json{{"jsonrpc", "2.0"}, {"id", 5}});
    json r = read_one(c);
    EXPECT_EQ(error_code(r), -32600) << r.dump();
    EXPECT_EQ(r.value("id", json()), 5);
    c.send(json{{"jsonrpc", "1.0"}, {"id", 6}, {"method", "health"}});
    r = read_one(c);
    EXPECT_EQ(error_code(r), -32600) << r.dump();
    c.send(json{{"jsonrpc", "2.0"}, {"id", 7}, {"method", "health"}, {"params", 3}});
    r = read_one(c);
    EXPECT_EQ(error_code(r), -32600) << r.dump();
  }
  {
    SCOPED_TRACE("unknown method");
    const json r = c.call("no.such.method");
    EXPECT_EQ(error_code(r), -32601) << r.dump();
  }
  {
    SCOPED_TRACE("bad params");
    const std::vector<std::pair<json, std::string>> cases = {
        {json{{"prompt", 5}}, "prompt"},
        {json{{"prompt", "x"}, {"max_tokens", -1}}, "max_tokens"},
        {json{{"prompt", "x"}, {"temperature", "hot"}}, "temperature"},
        {json{{"prompt", "x"}, {"max_token", 3}}, "max_token"},
        {json::object(), "prompt"},
    };
    for (const auto& [params, name] : cases) {
      const json r = c.call("generate", params);
      ASSERT_EQ(error_code(r), -32602) << params.dump() << " -> " << r.dump();
      EXPECT_NE(r["error"].dump().find(name), std::string::npos)
          << "the error should name '" << name << "': " << r.dump();
    }
    const json r = c.call("detokenize", {{"tokens", {1, "two"}}});
    EXPECT_EQ(error_code(r), -32602) << r.dump();
    EXPECT_NE(r["error"].dump().find("tokens"), std::string::npos) << r.dump();
  }
  {
    SCOPED_TRACE("oversize message, then the same connection again");
    const json big = request(42, "generate", {{"prompt", std::string(5000, 'x')}});
    c.send(big);
    const json r = read_one(c);
    ASSERT_EQ(error_code(r), -32007) << r.dump();
    EXPECT_EQ(r["error"]["data"].value("limit_bytes", 0), 4096) << r.dump();
    const json h = c.call("health");
    EXPECT_TRUE(is_result(h)) << "connection unusable after an oversize message: " << h.dump();
  }
  {
    SCOPED_TRACE("single notification gets no reply");
    c.send(notification("health"));
    c.send(request("after-notification", "health"));
    const json r = read_one(c);
    EXPECT_EQ(r.value("id", json()), "after-notification") << r.dump();
  }
  {
    SCOPED_TRACE("batch of valid, invalid and notification members");
    const json batch = json::array({
        request(1, "health"),
        json{{"jsonrpc", "2.0"}, {"id", 2}},  // no method: -32600
        notification("tokenize", {{"text", "quiet"}}),
        1,  // not an object: -32600 with id null
        request("t", "tokenize", {{"text", "ab"}}),
        request(3, "no.such.method"),
    });
    c.send(batch);
    const json r = read_one(c);
    ASSERT_TRUE(r.is_array()) << r.dump();
    ASSERT_EQ(r.size(), 5u) << "one reply per non-notification member: " << r.dump();
    std::map<json, json> by_id;
    int null_ids = 0;
    for (const auto& m : r) {
      if (m["id"].is_null()) {
        ++null_ids;
        EXPECT_EQ(error_code(m), -32600) << m.dump();
      } else {
        by_id[m["id"]] = m;
      }
    }
    EXPECT_EQ(null_ids, 1);
    EXPECT_TRUE(is_result(by_id[json(1)])) << r.dump();
    EXPECT_EQ(error_code(by_id[json(2)]), -32600) << r.dump();
    EXPECT_EQ(by_id[json("t")]["result"].value("tokens", json()), json({97, 98})) << r.dump();
    EXPECT_EQ(error_code(by_id[json(3)]), -32601) << r.dump();
  }
  {
    SCOPED_TRACE("empty batch");
    c.send_raw("[]\n");
    const json r = read_one(c);
    ASSERT_TRUE(r.is_object()) << "an empty batch gets a single error, not an array: " << r.dump();
    EXPECT_EQ(error_code(r), -32600);
    EXPECT_TRUE(r["id"].is_null());
  }
  {
    SCOPED_TRACE("notification-only batch gets no reply at all");
    c.send(json::array({notification("health"), notification("tokenize", {{"text", "x"}})}));
    c.send(request("after", "health"));
    const json r = read_one(c);
    EXPECT_EQ(r.value("id", json()), "after") << "first message after the batch: " << r.dump();
  }
  {
    SCOPED_TRACE("broken Content-Length header: error, then the connection is closed");
    auto cl = d().client(Framing::content_length);
    cl.send_raw("Content-Length: twelve\r\n\r\n{}");
    const json r = read_one(cl);
    EXPECT_EQ(error_code(r), -32700) << r.dump();
    EXPECT_TRUE(server_closes(cl)) << "the server should close a connection it cannot resynchronise";
  }
  EXPECT_TRUE(d().running());
  EXPECT_TRUE(is_result(bystander.call("health")));
  EXPECT_TRUE(is_result(bystander.call("generate", gen_params("after the storm", 1, 3))));
}

TEST_F(DroverTest, AdmissionRefusesBeyondMaxQueueWhileAdmittedRequestsComplete) {
  ASSERT_TRUE(start({.workers = 2,
                     .worker_args = {"--ttft-ms", "5000"},
                     .server_yaml = {"max_queue: 2"}}));
  auto c = d().client();
  std::string burst;
  for (int i = 1; i <= 5; ++i) burst += request(i, "generate", gen_params("queued", i, 3)).dump() + "\n";
  c.send_raw(burst);
  std::map<int, json> replies;
  // The refusals come first (at once); the two admitted requests need their 5 s.
  for (int i = 0; i < 3; ++i) {
    const json r = read_one(c);
    replies[r.value("id", 0)] = r;
  }
  for (int id = 3; id <= 5; ++id) {
    ASSERT_TRUE(replies.contains(id)) << "request " << id << " should have been refused first";
    EXPECT_EQ(error_code(replies[id]), -32001) << replies[id].dump();
    EXPECT_GT(replies[id]["error"]["data"].value("retry_after_ms", 0), 0) << replies[id].dump();
  }
  // While full: other clients are refused too, but local methods still answer.
  {
    auto other = d().client();
    EXPECT_EQ(error_code(other.call("tokenize", {{"text", "x"}})), -32001);
    EXPECT_TRUE(is_result(other.call("health")));
  }
  for (const auto& [id, r] : read_replies(c, {1, 2})) EXPECT_TRUE(is_result(r)) << r.dump();
  // Slots are released: new work is admitted again.
  EXPECT_TRUE(is_result(c.call("generate", gen_params("later", 9, 2))));
}

TEST_F(DroverTest, SecondDroverdOnTheSameSocketRefusesToStart) {
  ASSERT_TRUE(start());
  const RunResult second = run_program({droverd_bin(), "--config", d().config_path()}, d().dir());
  ASSERT_FALSE(second.timed_out) << "the second droverd should exit at once";
  ASSERT_TRUE(second.exit_code.has_value());
  EXPECT_NE(*second.exit_code, 0) << second.err;
  EXPECT_NE(second.err.find(d().socket_path()), std::string::npos) << second.err;
  // Refused with its own run directory (server.run_dir empty: a fresh one in the private run
  // directory, here $XDG_RUNTIME_DIR/drover), it
  // leaves nothing behind either: the directory goes on this way out too.
  {
    std::string cfg = read_file(d().config_path());
    const auto at = cfg.find("  run_dir: ");
    ASSERT_NE(at, std::string::npos) << cfg;
    cfg.replace(at, cfg.find('\n', at) - at, "  run_dir: \"\"");
    const std::string config = d().dir() + "/own-run-dir.yaml";
    const std::string xdg = d().dir() + "/xdg";
    std::filesystem::create_directories(xdg);
    std::ofstream(config) << cfg;
    const RunResult r = run_program(
        {"/usr/bin/env", "XDG_RUNTIME_DIR=" + xdg, droverd_bin(), "--config", config}, d().dir());
    ASSERT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    const std::string base = xdg + "/drover";
    ASSERT_TRUE(std::filesystem::is_directory(base)) << "the private run directory was not made";
    EXPECT_TRUE(std::filesystem::is_empty(base)) << "run directory left behind in " << base;
  }
  // The first keeps its socket and keeps serving.
  EXPECT_TRUE(path_exists(d().socket_path()));
  EXPECT_TRUE(is_result(d().client().call("generate", gen_params("still mine", 1, 3))));
  EXPECT_EQ(d().health().value("workers_ready", 0), 2);
}

TEST_F(DroverTest, StaleSocketFileIsReplaced) {
  drover_ = std::make_unique<DroverProcess>();
  ASSERT_NO_FATAL_FAILURE(leave_stale_socket(d().socket_path()));
  ASSERT_NO_FATAL_FAILURE(leave_stale_socket(d().admin_path()));
  ASSERT_TRUE(d().start());
  EXPECT_TRUE(is_result(d().client().call("health")));
  EXPECT_TRUE(is_result(d().admin().call("workers.list")));
}

TEST_F(DroverTest, InvalidConfigIsRefusedNamingTheKey) {
  DroverProcess p({.workers = 1, .workers_yaml = {"max_inflight: 0"}});
  const RunResult r = run_program({droverd_bin(), "--config", p.config_path()}, p.dir());
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("workers.max_inflight"), std::string::npos) << r.err;
  EXPECT_FALSE(path_exists(p.socket_path()));
}

TEST_F(DroverTest, NonSocketFileAtTheSocketPathIsNeverDeleted) {
  DroverProcess p;
  { std::ofstream(p.socket_path()) << "precious"; }
  const RunResult r = run_program({droverd_bin(), "--config", p.config_path()}, p.dir());
  ASSERT_FALSE(r.timed_out);
  ASSERT_TRUE(r.exit_code.has_value());
  EXPECT_NE(*r.exit_code, 0);
  EXPECT_EQ(read_file(p.socket_path()), "precious");
}

TEST_F(DroverTest, HalfClosedClientStillGetsAllItsReplies) {
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "300"}}));
  auto c = d().client();
  std::string burst = request(1, "generate", gen_params("one", 1, 3)).dump() + "\n" +
                      request(2, "generate", gen_params("two", 2, 3)).dump() + "\n" +
                      request(3, "tokenize", {{"text", "three"}}).dump() + "\n";
  c.send_raw(burst);
  c.shutdown_write();
  std::set<int> got;
  for (int i = 0; i < 3; ++i) {
    const json r = read_one(c);
    EXPECT_TRUE(is_result(r)) << r.dump();
    EXPECT_TRUE(got.insert(r.value("id", 0)).second) << r.dump();
  }
  EXPECT_EQ(got, (std::set<int>{1, 2, 3}));
  // Then the server closes its side.
  EXPECT_TRUE(server_closes(c));
}

TEST_F(DroverTest, SigtermFinishesInFlightWorkThenExitsZero) {
  // A generous heartbeat timeout: on a loaded machine (a sanitizer build) a 5 s timeout can
  // replace the worker mid-drain, which this test is not about.
  ASSERT_TRUE(start({.workers = 2, .worker_args = {"--ttft-ms", "4000"},
                     .workers_yaml = {"heartbeat_timeout_ms: 60000"}}));
  auto c = d().client();
  c.send(request(1, "generate", gen_params("last words", 1, 5)));
  ASSERT_TRUE(wait_until([&] { return !busy_worker(d()).is_null(); }, 20s));
  d().terminate();
  // Draining: the listening sockets go first, new work on open connections is refused...
  ASSERT_TRUE(wait_until([&] { return !path_exists(d().socket_path()); }));
  c.send(request(2, "generate", gen_params("too late", 2, 2)));
  auto replies = read_replies(c, {1, 2});
  EXPECT_EQ(error_code(replies[2]), -32009) << replies[2].dump();
  // ...and the request in flight completes.
  const json& r = replies[1];
  ASSERT_TRUE(is_result(r)) << r.dump();
  EXPECT_EQ(r["result"].value("finish_reason", ""), "length");
  const auto status = d().wait_exit();
  ASSERT_TRUE(status.has_value()) << "droverd did not exit after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_FALSE(path_exists(d().socket_path()));
  EXPECT_FALSE(path_exists(d().admin_path()));
  EXPECT_THROW(d().client(), ClientError);
  // TearDown checks that the workers are gone.
}

TEST_F(DroverTest, DroverctlGenerateStreamAndErrors) {
  ASSERT_TRUE(start());
  const std::string ctl = droverctl_bin();
  const std::string sock = d().socket_path();
  {
    const RunResult r = run_program({ctl, "--socket", sock, "generate", "hello"}, d().dir());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_GT(r.out.size(), 1u);
    EXPECT_EQ(r.out.back(), '\n');
  }
  const std::vector<std::string> gen = {ctl, "--socket", sock, "generate", "hello", "--seed", "5",
                                        "--temperature", "0.5", "--max-tokens", "10"};
  const RunResult plain = run_program(gen, d().dir());
  auto streamed_argv = gen;
  streamed_argv.push_back("--stream");
  const RunResult streamed = run_program(streamed_argv, d().dir());
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  const json expected = d().client().call(
      "generate", {{"prompt", "hello"}, {"seed", 5}, {"temperature", 0.5}, {"max_tokens", 10}});
  ASSERT_TRUE(is_result(expected));
  EXPECT_EQ(plain.out, expected["result"]["text"].get<std::string>() + "\n");
  EXPECT_EQ(streamed.out, plain.out);
  {
    // Global options may follow the subcommand too (OPERATIONS.md, "Day-to-day operations").
    const RunResult r = run_program({ctl, "generate", "hello", "--seed", "5", "--temperature", "0.5",
                                     "--max-tokens", "10", "--socket", sock},
                                    d().dir());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, plain.out);
  }
  {
    // Usage errors exit 2, whatever CLI11's own code for them is.
    const RunResult r = run_program({ctl, "--socket", sock, "generate"}, d().dir());
    EXPECT_EQ(r.exit_code, 2) << r.err;
    const RunResult extra = run_program({ctl, "--socket", sock, "health", "--no-such-flag"}, d().dir());
    EXPECT_EQ(extra.exit_code, 2) << extra.err;
  }
  {
    const RunResult r = run_program({ctl, "--socket", sock, "call", "nope"}, d().dir());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("-32601"), std::string::npos) << r.err;
  }
  {
    const RunResult r = run_program(
        {ctl, "--socket", sock, "--admin-socket", d().admin_path(), "workers"}, d().dir());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const auto& w : d().workers()) {
      EXPECT_NE(r.out.find(std::to_string(w["pid"].get<int>())), std::string::npos) << r.out;
    }
  }
}

}  // namespace
}  // namespace drover::test
