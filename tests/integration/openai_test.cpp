// The OpenAI-compatible HTTP API end to end (shared/DESIGN.md section 4b, docs/OPENAI.md):
// a real droverd with sim workers, spoken to over raw TCP so the bytes on the wire are checked
// as OpenAI's clients read them: the SSE framing byte for byte, the statuses and error objects,
// keep-alive, and a disconnect cancelling the work at the worker. The official `openai` npm
// client is tested against the same server in tests/openai/.
//
// droverd binds openai.listen 127.0.0.1:0 and logs the port it got; tests read it from the log
// (no fixed port: tests run in parallel).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>

#include "harness.hpp"

namespace drover::test {
namespace {

constexpr std::string_view kListening = "OpenAI-compatible API on http://127.0.0.1:";

std::string openai_yaml(const std::string& extra = {}) {
  return "openai:\n  enabled: true\n  listen: 127.0.0.1:0\n" + extra;
}

int openai_port(DroverProcess& d) {
  int port = 0;
  wait_until([&] {
    const std::string log = d.log();
    const auto at = log.find(kListening);
    if (at != std::string::npos) port = std::atoi(log.c_str() + at + kListening.size());
    return port > 0;
  });
  return port;
}

struct HttpResponse {
  int status = 0;
  std::string head;                           // status line and headers, up to the blank line
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                           // de-chunked
  std::vector<std::string> chunks;            // the chunked encoding's chunks, as sent
};

// A blocking HTTP/1.1 client on one TCP connection, every read bounded by kReplyTimeout.
class RawHttp {
 public:
  explicit RawHttp(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{static_cast<time_t>(kReplyTimeout.count() / 1000), 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error("connect failed");
    }
  }
  ~RawHttp() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }

  void post(const std::string& path, const std::string& body,
            const std::map<std::string, std::string>& headers = {}) {
    std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    send(req);
  }

  // Reads until `buf_` holds `needle`; false on timeout or end of input.
  bool read_until(std::string_view needle) {
    while (buf_.find(needle) == std::string::npos) {
      char tmp[65536];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
    return true;
  }
  bool read_bytes(std::size_t n) {
    while (buf_.size() < n) {
      char tmp[65536];
      const ssize_t got = ::recv(fd_, tmp, sizeof tmp, 0);
      if (got <= 0) return false;
      buf_.append(tmp, static_cast<std::size_t>(got));
    }
    return true;
  }
  std::string take(std::size_t n) {
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  // Reads one whole response (Content-Length or chunked).
  HttpResponse read_response() {
    HttpResponse r;
    if (!read_until("\r\n\r\n")) throw std::runtime_error("no response head; got: " + buf_);
    r.head = take(buf_.find("\r\n\r\n") + 4);
    r.status = std::atoi(r.head.c_str() + 9);
    std::size_t pos = r.head.find("\r\n") + 2;
    while (pos < r.head.size() - 2) {
      const auto end = r.head.find("\r\n", pos);
      const std::string line = r.head.substr(pos, end - pos);
      const auto colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = line.substr(colon + 2);
      pos = end + 2;
    }
    if (r.headers.count("content-length")) {
      const auto n = std::stoul(r.headers["content-length"]);
      if (!read_bytes(n)) throw std::runtime_error("short body");
      r.body = take(n);
      return r;
    }
    if (r.headers["transfer-encoding"] != "chunked") throw std::runtime_error("no framing: " + r.head);
    for (;;) {
      if (!read_until("\r\n")) throw std::runtime_error("chunk size missing; got: " + buf_);
      const auto line_end = buf_.find("\r\n");
      const std::size_t size = std::stoul(buf_.substr(0, line_end), nullptr, 16);
      take(line_end + 2);
      if (!read_bytes(size + 2)) throw std::runtime_error("short chunk");
      std::string chunk = take(size);
      EXPECT_EQ(take(2), "\r\n");
      if (size == 0) return r;
      r.body += chunk;
      r.chunks.push_back(std::move(chunk));
    }
  }

  const std::string& buffered() const { return buf_; }

 private:
  int fd_ = -1;
  std::string buf_;
};

json body_json(const HttpResponse& r) { return json::parse(r.body); }

// The error object of an error response, checked for OpenAI's shape.
json error_of(const HttpResponse& r) {
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  const json j = body_json(r);
  EXPECT_TRUE(j.contains("error")) << r.body;
  const json e = j.value("error", json::object());
  for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(e.contains(k)) << k << " " << r.body;
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
  return e;
}

bool all_idle(DroverProcess& d) {
  for (const auto& w : d.workers()) {
    if (w.value("inflight", 0) != 0) return false;
  }
  return true;
}

class OpenAiTest : public DroverTest {
 protected:
  void start_openai(std::vector<std::string> worker_args = {"--ttft-ms", "1"},
                    const std::string& extra = {}, std::vector<std::string> server_yaml = {}) {
    ASSERT_TRUE(start({.workers = 2, .worker_args = std::move(worker_args),
                       .server_yaml = std::move(server_yaml), .extra_yaml = openai_yaml(extra)}));
    port_ = openai_port(d());
    ASSERT_GT(port_, 0) << d().log();
  }
  int port_ = 0;
};

TEST_F(OpenAiTest, StreamIsFramedByteForByteAsOpenAiSendsIt) {
  start_openai();
  // The same request through JSON-RPC first: its chunks are what the stream must carry.
  const json params = {{"model", "sim"}, {"prompt", "frame me"}, {"seed", 7}, {"max_tokens", 5},
                       {"temperature", 0.5}, {"top_p", 0.9}, {"stream", true}};
  std::vector<std::string> texts;
  const json rpc = d().client().call("generate", params, kReplyTimeout, [&](const json& n) {
    texts.push_back(n["params"]["text"].get<std::string>());
  });
  ASSERT_TRUE(is_result(rpc)) << rpc.dump();
  ASSERT_EQ(texts.size(), 5u);

  RawHttp h(port_);
  h.post("/v1/completions",
         R"({"model":"sim","prompt":"frame me","seed":7,"max_tokens":5,"temperature":0.5,)"
         R"("top_p":0.9,"stream":true,"stream_options":{"include_usage":true}})");
  const HttpResponse r = h.read_response();
  EXPECT_EQ(r.head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
  // Every chunk of the chunked encoding holds whole events.
  for (const auto& c : r.chunks) EXPECT_TRUE(c.starts_with("data: ") && c.ends_with("\n\n")) << c;
  // id and created are the server's: read from the first event, then every byte is expected.
  ASSERT_TRUE(r.body.starts_with("data: {")) << r.body;
  const json first = json::parse(r.body.substr(6, r.body.find("\n\n") - 6));
  const std::string id = first["id"], model = "sim";
  EXPECT_TRUE(id.starts_with("cmpl-")) << id;
  const std::string prefix = R"(data: {"id":")" + id +
                             R"(","object":"text_completion","created":)" +
                             std::to_string(first["created"].get<std::int64_t>()) +
                             R"(,"model":"sim","choices":[)";
  std::string expected;
  for (const auto& t : texts) {
    expected += prefix + R"({"text":)" + json(t).dump() +
                R"(,"index":0,"logprobs":null,"finish_reason":null}],"usage":null})" "\n\n";
  }
  expected += prefix + R"({"text":"","index":0,"logprobs":null,"finish_reason":"length"}],"usage":null})" "\n\n";
  const json& usage = rpc["result"]["usage"];
  const int prompt_tokens = usage["prompt_tokens"], completion_tokens = usage["completion_tokens"];
  expected += prefix + R"(],"usage":{"prompt_tokens":)" + std::to_string(prompt_tokens) +
              R"(,"completion_tokens":)" + std::to_string(completion_tokens) +
              R"(,"total_tokens":)" + std::to_string(prompt_tokens + completion_tokens) + "}}\n\n";
  expected += "data: [DONE]\n\n";
  EXPECT_EQ(r.body, expected);

  // Chat: the role event first, content deltas, the finish event, [DONE]; same connection.
  h.post("/v1/chat/completions",
         R"({"model":"sim","messages":[{"role":"user","content":"hi"}],"seed":3,"max_tokens":3,"stream":true})");
  const HttpResponse c = h.read_response();
  ASSERT_EQ(c.status, 200) << c.head << c.body;
  std::vector<json> events;
  std::size_t pos = 0;
  while (pos < c.body.size()) {
    const auto end = c.body.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos) << c.body;
    const std::string ev = c.body.substr(pos, end - pos);
    ASSERT_TRUE(ev.starts_with("data: ")) << ev;
    if (ev != "data: [DONE]") events.push_back(json::parse(ev.substr(6)));
    pos = end + 2;
  }
  EXPECT_TRUE(c.body.ends_with("data: [DONE]\n\n"));
  ASSERT_EQ(events.size(), 5u) << c.body;  // role, 3 tokens, finish
  EXPECT_EQ(events[0]["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  for (const auto& e : events) {
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    EXPECT_FALSE(e.contains("usage")) << "usage only with stream_options.include_usage";
  }
  EXPECT_EQ(events[4]["choices"][0]["delta"], json::object());
  EXPECT_EQ(events[4]["choices"][0]["finish_reason"], "length");
}

TEST_F(OpenAiTest, UnaryCompletionsChatAndModelsOnOneKeptAliveConnection) {
  start_openai({"--ttft-ms", "1"}, "metrics:\n  listen: 127.0.0.1:0\n");
  const json rpc = d().client().call(
      "generate", {{"model", "sim"}, {"prompt", "same"}, {"seed", 11}, {"max_tokens", 4},
                   {"temperature", 1.0}, {"top_p", 1.0}});
  ASSERT_TRUE(is_result(rpc)) << rpc.dump();

  RawHttp h(port_);
  h.post("/v1/completions", R"({"model":"sim","prompt":["same","other"],"seed":11,"max_tokens":4,"user":"u","future_field":1})");
  const HttpResponse r = h.read_response();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  EXPECT_EQ(r.headers.count("connection"), 0u) << "HTTP/1.1 keeps the connection by default";
  const json j = body_json(r);
  EXPECT_EQ(j["object"], "text_completion");
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["text"], rpc["result"]["text"]) << "same seed, same text as JSON-RPC";
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());

  h.post("/v1/chat/completions",
         R"({"model":"sim","messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}],"max_tokens":2})");
  const HttpResponse c = h.read_response();
  ASSERT_EQ(c.status, 200) << c.body;
  const json cj = body_json(c);
  EXPECT_EQ(cj["object"], "chat.completion");
  EXPECT_EQ(cj["choices"][0]["message"]["role"], "assistant");
  EXPECT_FALSE(cj["choices"][0]["message"]["content"].get<std::string>().empty());
  EXPECT_EQ(cj["choices"][0]["finish_reason"], "length");

  h.send("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
  const HttpResponse m = h.read_response();
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(body_json(m)["data"][0]["id"], "sim");
  EXPECT_EQ(body_json(m)["data"][0]["object"], "model");
  h.send("GET /v1/models/sim HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(body_json(h.read_response())["id"], "sim");
  h.send("GET /v1/models/nope HTTP/1.1\r\nHost: x\r\n\r\n");
  const HttpResponse missing = h.read_response();
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(error_of(missing)["code"], "model_not_found");

  // /metrics counts the requests by frontend: 3 generates here (2 prompts, 1 chat), 1 there.
  const std::string log = d().log();
  constexpr std::string_view kMetricsLine = "metrics and probes on http://127.0.0.1:";
  const auto at = log.find(kMetricsLine);
  ASSERT_NE(at, std::string::npos) << log;
  RawHttp m2(std::atoi(log.c_str() + at + kMetricsLine.size()));
  m2.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string metrics = m2.read_response().body;
  EXPECT_NE(metrics.find("drover_frontend_requests_total{frontend=\"openai\",outcome=\"ok\"} 3\n"),
            std::string::npos) << metrics;
  EXPECT_NE(metrics.find("drover_frontend_requests_total{frontend=\"jsonrpc\",outcome=\"ok\"} 1\n"),
            std::string::npos) << metrics;
}

TEST_F(OpenAiTest, ErrorsCarryOpenAisShapeAndStatus) {
  start_openai({"--ttft-ms", "1"}, "  max_body_bytes: 1024\n  api_keys: [key-one, key-two]\n");
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer key-two"}};
  auto post = [&](const std::string& path, const std::string& body,
                  const std::map<std::string, std::string>& headers) {
    RawHttp h(port_);
    h.post(path, body, headers);
    return h.read_response();
  };
  const std::string ok_body = R"({"model":"sim","prompt":"p","max_tokens":1})";
  EXPECT_EQ(post("/v1/completions", ok_body, auth).status, 200);

  for (const auto& headers : std::vector<std::map<std::string, std::string>>{
           {}, {{"Authorization", "Bearer key-three"}}, {{"Authorization", "key-one"}}}) {
    const HttpResponse r = post("/v1/completions", ok_body, headers);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(error_of(r)["code"], "invalid_api_key");
  }
  const HttpResponse n = post("/v1/completions", R"({"model":"sim","prompt":"p","n":2})", auth);
  EXPECT_EQ(n.status, 400);
  EXPECT_EQ(error_of(n)["param"], "n");
  EXPECT_EQ(error_of(n)["type"], "invalid_request_error");
  const HttpResponse bad_json = post("/v1/chat/completions", "{\"model\":", auth);
  EXPECT_EQ(bad_json.status, 400);
  const HttpResponse bad_priority = post("/v1/completions", ok_body, {{"Authorization", "Bearer key-one"}, {"X-Drover-Priority", "urgent"}});
  EXPECT_EQ(bad_priority.status, 400);
  EXPECT_EQ(error_of(bad_priority)["param"], "X-Drover-Priority");
  const HttpResponse unknown_model = post("/v1/completions", R"({"model":"nope","prompt":"p"})", auth);
  EXPECT_EQ(unknown_model.status, 404);
  EXPECT_EQ(error_of(unknown_model)["param"], "model");
  EXPECT_EQ(error_of(unknown_model)["code"], "model_not_found");
  const HttpResponse route = post("/v1/embeddings", ok_body, auth);
  EXPECT_EQ(route.status, 404);
  {
    RawHttp h(port_);
    h.send("GET /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-one\r\n\r\n");
    EXPECT_EQ(h.read_response().status, 405);
  }
  // Past max_body_bytes: 413, and the connection closes (the rest cannot be framed).
  const HttpResponse big = post("/v1/completions", R"({"model":"sim","prompt":")" + std::string(2000, 'x') + "\"}", auth);
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.headers.at("connection"), "close");
  EXPECT_EQ(error_of(big)["code"], "request_too_large");

  // A seeded request is answered from the prompt cache the second time; with
  // Cache-Control: no-cache it is not (the hit counter stays).
  const std::string seeded = R"({"model":"sim","prompt":"cached","seed":5,"max_tokens":2})";
  ASSERT_EQ(post("/v1/completions", seeded, auth).status, 200);
  auto hits = [&] {
    return d().client().call("telemetry.metrics")["result"]["pipeline"]["prompt_cache"]["hits_total"].get<int>();
  };
  const int before = hits();
  ASSERT_EQ(post("/v1/completions", seeded, auth).status, 200);
  EXPECT_EQ(hits(), before + 1);
  auto no_cache = auth;
  no_cache["Cache-Control"] = "no-cache";
  ASSERT_EQ(post("/v1/completions", seeded, no_cache).status, 200);
  EXPECT_EQ(hits(), before + 1);
}

TEST_F(OpenAiTest, OverloadAnswers429WithRetryAfter) {
  // One request at a time: while a long stream holds the only admission slot, a second
  // request is refused at admission.
  start_openai({"--tokens-per-s", "20"}, {}, {"max_queue: 1"});
  RawHttp first(port_);
  first.post("/v1/completions", R"({"model":"sim","prompt":"long","max_tokens":2000,"stream":true})");
  ASSERT_TRUE(first.read_until("\"text\":\"")) << first.buffered();
  RawHttp second(port_);
  second.post("/v1/completions", R"({"model":"sim","prompt":"turned away","max_tokens":1})");
  const HttpResponse r = second.read_response();
  EXPECT_EQ(r.status, 429);
  EXPECT_GE(std::atoi(r.headers.count("retry-after") ? r.headers.at("retry-after").c_str() : "0"), 1) << r.head;
  EXPECT_EQ(error_of(r)["type"], "rate_limit_error");
  first.close();  // cancels the long one at its worker
  EXPECT_TRUE(wait_until([&] { return all_idle(d()); }));
}

// No worker can take the request (both breakers open after a timeout each): 503 with
// Retry-After, as JSON-RPC's -32002 with retry_after_ms.
TEST_F(OpenAiTest, NoWorkerReadyAnswers503WithRetryAfter) {
  start_openai({"--ttft-ms", "2000"},
               "circuit_breaker:\n  consecutive_failures: 1\n  open_ms: 60000\n");
  auto c = d().client();
  for (int i = 0; i < 2; ++i) {  // the first opens one breaker, so the second goes to the other
    const json p = {{"prompt", "slow"}, {"seed", i}, {"max_tokens", 2}, {"timeout_ms", 50}};
    EXPECT_EQ(error_code(c.call("generate", p)), -32004);
  }
  ASSERT_TRUE(wait_until([&] {
    for (const auto& w : d().workers()) {
      if (w.value("breaker", std::string()) != "open") return false;
    }
    return true;
  })) << d().workers().dump();
  RawHttp http(port_);
  http.post("/v1/completions", R"({"model":"sim","prompt":"nobody","max_tokens":1})");
  const HttpResponse r = http.read_response();
  EXPECT_EQ(r.status, 503) << r.head << r.body;
  EXPECT_GE(std::atoi(r.headers.count("retry-after") ? r.headers.at("retry-after").c_str() : "0"), 1) << r.head;
  const json e = error_of(r);
  EXPECT_EQ(e["type"], "server_error");
  EXPECT_EQ(e["code"], "no_worker_ready");
}

TEST_F(OpenAiTest, ClientNotReadingItsStreamIsCancelledAsAJsonRpcOneIs) {
  // 20,000 tokens/s into a client that reads nothing: the socket buffers, then the 4 KiB write
  // buffer fill, and the stream is failed and cancelled at its worker (the JSON-RPC hard limit).
  start_openai({"--tokens-per-s", "20000"}, {}, {"write_buffer_bytes: 4096"});
  RawHttp slow(port_);
  slow.post("/v1/completions", R"({"model":"sim","prompt":"flood","max_tokens":200000,"stream":true})");
  EXPECT_TRUE(wait_until([&] {
    return d().client().call("telemetry.metrics")["result"]["streams"]["slow_consumer_cancels_total"] == 1;
  }, 60s));
  EXPECT_TRUE(wait_until([&] { return all_idle(d()); }));
  // Others are served meanwhile.
  RawHttp other(port_);
  other.post("/v1/completions", R"({"model":"sim","prompt":"bystander","max_tokens":2})");
  EXPECT_EQ(other.read_response().status, 200);
  // What the slow client finally reads ends with the error, not [DONE].
  const HttpResponse r = slow.read_response();
  EXPECT_EQ(r.status, 200);
  const auto last = r.body.rfind("data: ");
  ASSERT_NE(last, std::string::npos);
  const json e = json::parse(r.body.substr(last + 6));
  EXPECT_EQ(e["error"]["code"], "slow_consumer") << r.body.substr(last);
  EXPECT_EQ(r.body.find("[DONE]"), std::string::npos);
}

TEST_F(OpenAiTest, ABodyNotCompletedInTimeGets408AndOthersAreServed) {
  start_openai({"--ttft-ms", "1"}, {}, {"partial_message_timeout_ms: 300"});
  RawHttp slow(port_);
  slow.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\":");
  RawHttp other(port_);
  other.post("/v1/completions", R"({"model":"sim","prompt":"meanwhile","max_tokens":2})");
  EXPECT_EQ(other.read_response().status, 200);
  const HttpResponse r = slow.read_response();
  EXPECT_EQ(r.status, 408);
  EXPECT_EQ(r.headers.at("connection"), "close");
  EXPECT_NE(error_of(r)["message"].get<std::string>().find("partial_message_timeout_ms=300"), std::string::npos);
}

TEST_F(OpenAiTest, ClientDisconnectMidStreamCancelsAtTheWorker) {
  start_openai({"--tokens-per-s", "20"});
  {
    RawHttp h(port_);
    h.post("/v1/chat/completions",
           R"({"model":"sim","messages":[{"role":"user","content":"never finished"}],"max_tokens":2000,"stream":true})");
    ASSERT_TRUE(h.read_until("\"content\":\"")) << h.buffered();  // a token arrived
    bool busy = false;
    for (const auto& w : d().workers()) busy |= w.value("inflight", 0) > 0;
    ASSERT_TRUE(busy) << "the stream should be held by a worker";
  }
  // The supervisor lowers a worker's inflight only when the worker answers, so this proves the
  // cancel reached the worker (the stream alone would run for 100 s).
  EXPECT_TRUE(wait_until([&] { return all_idle(d()); }, 20s)) << d().workers().dump();
}

}  // namespace
}  // namespace drover::test
