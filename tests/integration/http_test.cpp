// droverd's operator endpoints end to end (shared/DESIGN.md section 8, docs/OPERATIONS.md):
// /metrics scraped with a real HTTP client and validated by `promtool check metrics`,
// /healthz and /readyz following the workers, the HTTP limits and the systemd notify protocol.
// The deploy/ artifacts are checked in deploy_artifacts_test.cpp.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "harness.hpp"

namespace drover::test {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr Millis kHttpTimeout = 10s;
// supervisor/admin/http_server.hpp: HttpServer::kHeaderTimeout.
constexpr Millis kHeaderTimeout = 5s;


// The metrics listener binds port 0 (the kernel picks a free port) and droverd logs the port it
// got. Asking the kernel for a free port, releasing it and handing it to droverd would race with
// every other test (and anything else on the machine) that binds a port meanwhile.
constexpr const char* kMetricsAnyPortYaml = "metrics:\n  listen: 127.0.0.1:0\n";
constexpr std::string_view kListeningLine = "metrics and probes on http://127.0.0.1:";

// The port in droverd's "metrics and probes on http://127.0.0.1:PORT" log line, or 0.
int logged_metrics_port(const std::string& log) {
  const auto at = log.find(kListeningLine);
  if (at == std::string::npos) return 0;
  return std::atoi(log.c_str() + at + kListeningLine.size());
}

std::string metrics_yaml(int port) {
  return "metrics:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n";
}

struct HttpReply {
  unsigned status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  bool keep_alive = false;

  std::string header(const std::string& lower_case_name) const {
    const auto it = headers.find(lower_case_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A blocking HTTP/1.1 client on one connection (Boost.Beast), every operation bounded by
// kHttpTimeout: an async op is started and the private io_context run until it completes.
class HttpClient {
 public:
  explicit HttpClient(int port) : stream_(io_) {
    bool done = false;
    boost::system::error_code ec;
    stream_.expires_after(kHttpTimeout);
    stream_.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
        [&](boost::system::error_code e) { ec = e, done = true; });
    run(done);
    if (ec) throw std::runtime_error("connect: " + ec.message());
  }

  HttpReply request(http::verb verb, const std::string& target,
                    const std::map<std::string, std::string>& headers = {}) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::user_agent, "drover-http-test");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.prepare_payload();
    send(req);
    return receive(verb == http::verb::head);
  }

  template <typename Request>
  void send(Request& req) {
    bool done = false;
    boost::system::error_code ec;
    stream_.expires_after(kHttpTimeout);
    http::async_write(stream_, req,
                      [&](boost::system::error_code e, std::size_t) { ec = e, done = true; });
    run(done);
    if (ec) throw std::runtime_error("write: " + ec.message());
  }

  HttpReply receive(bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.skip(head);  // a HEAD response announces a body it does not carry
    parser.body_limit(64 * 1024 * 1024);
    bool done = false;
    boost::system::error_code ec;
    stream_.expires_after(kHttpTimeout);
    http::async_read(stream_, buffer_, parser,
                     [&](boost::system::error_code e, std::size_t) { ec = e, done = true; });
    run(done);
    if (ec) throw std::runtime_error("read: " + ec.message());
    auto res = parser.release();
    HttpReply r;
    r.status = res.result_int();
    r.body = res.body();
    r.keep_alive = res.keep_alive();
    for (const auto& f : res) {
      std::string name(f.name_string());
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      r.headers[name] = std::string(f.value());
    }
    return r;
  }

  // True when the server closes the connection (EOF) before the timeout.
  bool closed_by_server() {
    bool done = false;
    boost::system::error_code ec;
    char byte;
    stream_.expires_after(kHttpTimeout);
    stream_.async_read_some(asio::buffer(&byte, 1),
                            [&](boost::system::error_code e, std::size_t) { ec = e, done = true; });
    run(done);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

 private:
  void run(const bool& done) {
    io_.restart();
    while (!done && io_.run_one() > 0) {
    }
  }

  asio::io_context io_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
};

HttpReply http_get(int port, const std::string& target, http::verb verb = http::verb::get) {
  HttpClient c(port);
  return c.request(verb, target);
}

// The value of one series (`name{labels}` exactly as exposed), or nullopt when absent.
std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

double value_of(const std::string& text, const std::string& series) {
  const auto v = sample(text, series);
  EXPECT_TRUE(v.has_value()) << "series " << series << " missing from /metrics:\n" << text;
  return v.value_or(-1);
}

// `promtool check metrics` on a scrape; returns promtool's complaints ("" when it is happy).
std::string promtool_check_metrics(const std::string& text, const std::string& work_dir) {
  const std::string tool = promtool();
  if (tool.empty()) return "promtool missing";
  const std::string file = work_dir + "/scrape.prom";
  std::ofstream(file) << text;
  const auto r =
      run_program({"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\"", tool, file}, work_dir);
  if (r.exit_code == 0) return {};
  return "exit " + (r.exit_code ? std::to_string(*r.exit_code) : std::string("none")) + ": " +
         r.out + r.err;
}

// The histogram's buckets for one series must be cumulative and end in +Inf == _count.
void expect_histogram_consistent(const std::string& text, const std::string& name,
                                 const std::string& labels_prefix) {
  std::istringstream in(text);
  double previous = 0;
  std::optional<double> inf;
  const std::string bucket = name + "_bucket{" + labels_prefix;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(bucket, 0) != 0) continue;
    const double v = std::stod(line.substr(line.rfind(' ') + 1));
    EXPECT_GE(v, previous) << "buckets not cumulative at " << line;
    previous = v;
    if (line.find("le=\"+Inf\"") != std::string::npos) inf = v;
  }
  ASSERT_TRUE(inf.has_value()) << "no +Inf bucket for " << bucket;
  const std::string labels =
      labels_prefix.empty() ? "" : "{" + labels_prefix.substr(0, labels_prefix.size() - 1) + "}";
  EXPECT_EQ(*inf, value_of(text, name + "_count" + labels));
}

json gen_params(const std::string& prompt, int max_tokens, bool stream = false) {
  return {{"prompt", prompt}, {"seed", 7}, {"max_tokens", max_tokens}, {"stream", stream}};
}

class HttpTest : public DroverTest {
 protected:
  bool start_with_metrics(DroverOptions o = {}) {
    o.extra_yaml += kMetricsAnyPortYaml;
    if (!start(std::move(o))) return false;
    // The listener is bound and logged before the workers start, so before start() returns.
    port_ = logged_metrics_port(d().log());
    EXPECT_GT(port_, 0) << "no '" << kListeningLine << "' line in the log:\n" << d().log();
    return port_ > 0;
  }
  std::string scrape() {
    const auto r = http_get(port_, "/metrics");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    return r.body;
  }
  int port_ = 0;
};

TEST_F(HttpTest, MetricsPassPromtoolAndCountRequests) {
  ASSERT_TRUE(start_with_metrics({.extra_yaml = "batch_queue: {enabled: true}\n"}));
  const auto health = http_get(port_, "/healthz");
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.body, "ok\n");
  const auto ready = http_get(port_, "/readyz");
  EXPECT_EQ(ready.status, 200u) << ready.body;

  const std::string before = scrape();
  EXPECT_EQ(promtool_check_metrics(before, d().dir()), "");
  const double gen_before =
      value_of(before, R"(drover_requests_total{method="generate",outcome="ok"})");
  const double tok_before =
      value_of(before, R"(drover_requests_total{method="tokenize",outcome="ok"})");
  const double gen_count_before =
      value_of(before, R"(drover_request_duration_seconds_count{method="generate"})");
  const double ttft_before = value_of(before, "drover_ttft_seconds_count");
  const double batch_before = value_of(before, "drover_batch_size_count");
  const double batch_time_before = value_of(before, "drover_batch_time_seconds_count");

  constexpr int kGenerates = 5;
  constexpr int kTokenizes = 3;
  auto c = d().client();
  for (int i = 0; i < kGenerates; ++i) {
    const json r = c.call("generate", gen_params("metrics " + std::to_string(i), 4, i % 2 == 1));
    ASSERT_TRUE(is_result(r)) << r.dump();
  }
  for (int i = 0; i < kTokenizes; ++i) {
    ASSERT_TRUE(is_result(c.call("tokenize", {{"text", "hello"}})));
  }
  // Invalid params are refused before they become a request: not counted.
  EXPECT_EQ(error_code(c.call("generate", {{"prompt", 5}})), -32602);

  const std::string after = scrape();
  EXPECT_EQ(promtool_check_metrics(after, d().dir()), "");
  EXPECT_EQ(
      value_of(after, R"(drover_requests_total{method="generate",outcome="ok"})") - gen_before,
      kGenerates);
  EXPECT_EQ(
      value_of(after, R"(drover_requests_total{method="tokenize",outcome="ok"})") - tok_before,
      kTokenizes);
  EXPECT_EQ(value_of(after, R"(drover_request_duration_seconds_count{method="generate"})") -
                gen_count_before,
            kGenerates);
  EXPECT_EQ(value_of(after, "drover_ttft_seconds_count") - ttft_before, kGenerates);
  EXPECT_GT(value_of(after, R"(drover_request_duration_seconds_sum{method="generate"})"), 0);
  expect_histogram_consistent(after, "drover_request_duration_seconds", R"(method="generate",)");
  expect_histogram_consistent(after, "drover_ttft_seconds", "");
  // One request at a time: each leaves through the batch queue's fast path, a batch of one.
  EXPECT_EQ(value_of(after, "drover_batch_size_count") - batch_before, kGenerates + kTokenizes);
  EXPECT_EQ(value_of(after, "drover_batch_time_seconds_count") - batch_time_before,
            kGenerates + kTokenizes);
  EXPECT_EQ(value_of(after, R"(drover_batch_size_bucket{le="1"})"),
            value_of(after, "drover_batch_size_count"));
  expect_histogram_consistent(after, "drover_batch_size", "");
  expect_histogram_consistent(after, "drover_batch_time_seconds", "");

  // Gauges from the pool's snapshot.
  EXPECT_EQ(value_of(after, "drover_workers_ready"), 2);
  EXPECT_EQ(value_of(after, "drover_workers_configured"), 2);
  EXPECT_EQ(value_of(after, "drover_queue_depth"), 0);
  EXPECT_EQ(value_of(after, "drover_admission_outstanding"), 0);
  for (const std::string w : {"0", "1"}) {
    EXPECT_EQ(value_of(after, "drover_worker_state{worker=\"" + w + "\",state=\"ready\"}"), 1);
    EXPECT_EQ(value_of(after, "drover_worker_state{worker=\"" + w + "\",state=\"vacant\"}"), 0);
    EXPECT_EQ(value_of(after, "drover_breaker_state{worker=\"" + w + "\"}"), 0);
    EXPECT_EQ(value_of(after, "drover_worker_inflight{worker=\"" + w + "\"}"), 0);
    EXPECT_EQ(value_of(after, "drover_worker_restarts_total{worker=\"" + w + "\"}"), 0);
    const double age = value_of(after, "drover_worker_heartbeat_age_seconds{worker=\"" + w + "\"}");
    EXPECT_GE(age, 0);
    EXPECT_LT(age, 5);  // below heartbeat_timeout_ms, or the worker would have been replaced
    EXPECT_GT(value_of(after, "drover_worker_rss_bytes{worker=\"" + w + "\"}"), 0);
    // drover-worker negotiates the shm rings (transport.shm defaults to true): the requests
    // went through them; the socket carried the handshake (init to, hello and init reply from).
    EXPECT_EQ(value_of(after, "drover_worker_shm{worker=\"" + w + "\"}"), 1);
    const std::string msgs = "drover_worker_transport_messages_total{worker=\"" + w + "\",path=";
    EXPECT_EQ(value_of(after, msgs + "\"socket\",direction=\"to_worker\"}"), 1);
    EXPECT_EQ(value_of(after, msgs + "\"socket\",direction=\"from_worker\"}"), 2);
    EXPECT_GE(value_of(after, msgs + "\"ring\",direction=\"to_worker\"}"), 1);
    EXPECT_GT(value_of(after, "drover_worker_transport_bytes_total{worker=\"" + w +
                                  "\",path=\"ring\",direction=\"from_worker\"}"),
              0);
  }
  // Every generate and tokenize went to a worker through a ring (tokenize may be batched).
  EXPECT_GE(value_of(after, R"(drover_worker_transport_messages_total{worker="0",path="ring",direction="to_worker"})") +
                value_of(after, R"(drover_worker_transport_messages_total{worker="1",path="ring",direction="to_worker"})"),
            kGenerates + 1);
  EXPECT_EQ(value_of(after, "drover_pool_restarts_total"), 0);
  EXPECT_EQ(value_of(after, "drover_build_info{version=\"0.1.0\"}"), 1);

  // Every family the operations contract lists is declared with its type.
  const std::vector<std::pair<std::string, std::string>> families = {
      {"drover_requests_total", "counter"},
      {"drover_request_duration_seconds", "histogram"},
      {"drover_ttft_seconds", "histogram"},
      {"drover_queue_depth", "gauge"},
      {"drover_batch_size", "histogram"},
      {"drover_batch_time_seconds", "histogram"},
      {"drover_admission_outstanding", "gauge"},
      {"drover_admission_limit", "gauge"},
      {"drover_admission_rejected_total", "counter"},
      {"drover_worker_inflight", "gauge"},
      {"drover_worker_state", "gauge"},
      {"drover_worker_restarts_total", "counter"},
      {"drover_worker_heartbeat_age_seconds", "gauge"},
      {"drover_worker_rss_bytes", "gauge"},
      {"drover_breaker_state", "gauge"},
      {"drover_breaker_transitions_total", "counter"},
      {"drover_pool_restarts_total", "counter"},
      {"drover_pool_crashes_total", "counter"},
      {"drover_pool_promotions_total", "counter"},
      {"drover_retries_total", "counter"},
      {"drover_failovers_total", "counter"},
      {"drover_retry_budget_exhausted_total", "counter"},
      {"drover_poisoned_total", "counter"},
      {"drover_recycled_total", "counter"},
      {"drover_workers_ready", "gauge"},
      {"drover_workers_configured", "gauge"},
      {"drover_workers_parked", "gauge"},
      {"drover_spares_ready", "gauge"},
      {"drover_build_info", "gauge"},
  };
  for (const auto& [name, type] : families) {
    EXPECT_NE(after.find("\n# TYPE " + name + " " + type + "\n"), std::string::npos)
        << name << " is not declared as a " << type;
  }
}

TEST_F(HttpTest, OutcomesOtherThanOkAreCountedByName) {
  // One slow worker with room for one request and a queue bound of one: a second concurrent
  // request is refused by admission (-32001), and a request with a short deadline times out.
  DroverOptions o;
  o.workers = 1;
  o.worker_args = {"--ttft-ms", "2000"};
  o.server_yaml = {"max_queue: 1"};
  ASSERT_TRUE(start_with_metrics(std::move(o)));
  auto c = d().client();
  c.send(request(1, "generate", {{"prompt", "slow"}, {"max_tokens", 1}, {"timeout_ms", 300}}));
  c.send(request(2, "generate", {{"prompt", "refused"}, {"max_tokens", 1}}));
  EXPECT_EQ(error_code(read_reply(c, 2)), -32001);
  EXPECT_EQ(error_code(read_reply(c, 1)), -32004);
  const std::string text = scrape();
  EXPECT_EQ(value_of(text, R"(drover_requests_total{method="generate",outcome="overloaded"})"), 1);
  EXPECT_EQ(value_of(text, R"(drover_requests_total{method="generate",outcome="timed_out"})"), 1);
  EXPECT_EQ(value_of(text, "drover_admission_rejected_total"), 1);
  EXPECT_EQ(value_of(text, "drover_admission_limit"), 1);
  // The refused request never started: only the timed-out one has a duration.
  EXPECT_EQ(value_of(text, R"(drover_request_duration_seconds_count{method="generate"})"), 1);
  EXPECT_EQ(value_of(text, "drover_ttft_seconds_count"), 0);
  EXPECT_EQ(promtool_check_metrics(text, d().dir()), "");
}

TEST_F(HttpTest, PipelineFamiliesCountCacheHitsMissesAndRuns) {
  ASSERT_TRUE(start_with_metrics());
  auto c = d().client();
  const json params = {{"prompt", "scraped"}, {"temperature", 0}, {"max_tokens", 4}};
  const json miss = c.call("generate", params);
  const json hit = c.call("generate", params);
  ASSERT_TRUE(is_result(miss) && is_result(hit)) << miss.dump() << hit.dump();
  ASSERT_EQ(hit["result"]["cache"], "hit");
  const std::string text = scrape();
  EXPECT_EQ(promtool_check_metrics(text, d().dir()), "");
  EXPECT_EQ(value_of(text, "drover_prompt_cache_hits_total"), 1);
  EXPECT_EQ(value_of(text, "drover_prompt_cache_misses_total"), 1);
  EXPECT_EQ(value_of(text, "drover_prompt_cache_entries"), 1);
  EXPECT_GT(value_of(text, "drover_prompt_cache_bytes"), 0);
  EXPECT_EQ(value_of(text, R"(drover_prompt_cache_evictions_total{reason="entries"})"), 0);
  EXPECT_EQ(value_of(text, "drover_pipeline_executions_total"), 1);
  EXPECT_EQ(value_of(text, "drover_dedup_shared_total"), 0);
  EXPECT_EQ(value_of(text, "drover_coalesced_streams_total"), 0);
  EXPECT_EQ(value_of(text, R"(drover_feature_flag_decisions_total{stage="prompt_cache",decision="in"})"), 2);
  EXPECT_EQ(value_of(text, R"(drover_feature_flag_decisions_total{stage="request_deduplication",decision="in"})"), 1);
}

TEST_F(HttpTest, HttpProtocolAndLimits) {
  ASSERT_TRUE(start_with_metrics());
  EXPECT_EQ(http_get(port_, "/nope").status, 404u);
  EXPECT_EQ(http_get(port_, "/").status, 404u);
  EXPECT_EQ(http_get(port_, "/metrics?debug=1").status, 200u);

  {
    HttpClient c(port_);
    const auto post = c.request(http::verb::post, "/metrics", {{"Content-Type", "text/plain"}});
    EXPECT_EQ(post.status, 405u);
    EXPECT_EQ(post.header("allow"), "GET, HEAD");
    // Still keep-alive after a 405: the same connection answers the next request.
    EXPECT_EQ(c.request(http::verb::delete_, "/healthz").status, 405u);
    const auto head = c.request(http::verb::head, "/metrics");
    EXPECT_EQ(head.status, 200u);
    EXPECT_TRUE(head.body.empty());
    EXPECT_GT(std::stoul(head.header("content-length")), 100u);
    // Keep-alive: several requests on one connection.
    for (int i = 0; i < 3; ++i) {
      const auto r = c.request(http::verb::get, "/healthz");
      EXPECT_EQ(r.status, 200u);
      EXPECT_TRUE(r.keep_alive);
    }
    EXPECT_EQ(c.request(http::verb::get, "/metrics").status, 200u);
  }
  {
    // A client asking to close gets its answer, then the server closes.
    HttpClient c(port_);
    const auto r = c.request(http::verb::get, "/healthz", {{"Connection", "close"}});
    EXPECT_EQ(r.status, 200u);
    EXPECT_FALSE(r.keep_alive);
    EXPECT_TRUE(c.closed_by_server());
  }
  {
    // Request headers are bounded: 431, then the connection is closed.
    HttpClient c(port_);
    const auto r =
        c.request(http::verb::get, "/metrics", {{"X-Padding", std::string(16 * 1024, 'a')}});
    EXPECT_EQ(r.status, 431u);
    EXPECT_TRUE(c.closed_by_server());
  }
  {
    // So are bodies: 413.
    HttpClient c(port_);
    http::request<http::string_body> req{http::verb::get, "/metrics", 11};
    req.body() = std::string(64 * 1024, 'b');
    req.prepare_payload();
    c.send(req);
    EXPECT_EQ(c.receive().status, 413u);
  }
  {
    // Not HTTP at all: 400 and closed.
    std::string garbage = "NOT-HTTP\r\n\r\n";
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(garbage.size()));
    std::string got;
    char buf[512];
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, static_cast<int>(kHttpTimeout.count())) == 1) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;  // closed by the server
      got.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
  }
  // The endpoint still works after all that.
  EXPECT_EQ(http_get(port_, "/healthz").status, 200u);
}

// A raw TCP connection to the listener that sends `bytes` (possibly nothing) and then idles.
class IdleConnection {
 public:
  IdleConnection(int port, const std::string& bytes = {}) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
    if (!bytes.empty() &&
        ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
      throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    }
  }
  ~IdleConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  IdleConnection(const IdleConnection&) = delete;
  IdleConnection& operator=(const IdleConnection&) = delete;

  // True when the server closes the connection within `timeout` (EOF or reset).
  bool closed_by_server(Millis timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) != 1) continue;
      char buf[512];
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
  }

 private:
  int fd_ = -1;
};

TEST_F(HttpTest, ProbesAnswerWhileIdleConnectionsFillEverySlot) {
  // Issue 15 item 9: the listener has kMaxConnections (64) slots; any local user could fill
  // them with connections that never send a request and so starve the kubelet's probes. Idle
  // connections are evicted, oldest first, when a new one needs the slot.
  ASSERT_TRUE(start_with_metrics());
  std::vector<std::unique_ptr<IdleConnection>> idle;
  for (int i = 0; i < 100; ++i) idle.push_back(std::make_unique<IdleConnection>(port_));
  for (int i = 0; i < 3; ++i) {
    HttpReply r;
    ASSERT_NO_THROW(r = http_get(port_, "/healthz")) << "probe " << i << " not answered";
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "ok\n");
  }
  EXPECT_EQ(http_get(port_, "/readyz").status, 200u);
  // The oldest idle connections made room (the newest are still open: no timeout was needed).
  EXPECT_TRUE(idle.front()->closed_by_server(kHttpTimeout));
  EXPECT_NE(d().log().find("evicted idle HTTP connection"), std::string::npos) << d().log();
}

TEST_F(HttpTest, ARequestHeaderNotCompletedWithinTheHeaderTimeoutClosesTheConnection) {
  // Slow-loris: a request line and then nothing. The connection is closed after the header
  // timeout (5 s), well before the keep-alive idle limit (30 s) that used to apply.
  ASSERT_TRUE(start_with_metrics());
  IdleConnection slow(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
  static_assert(kHeaderTimeout < kHttpTimeout);
  EXPECT_TRUE(slow.closed_by_server(kHttpTimeout)) << "still open after " << kHttpTimeout.count() << " ms";
  EXPECT_EQ(http_get(port_, "/healthz").status, 200u);
}

TEST_F(HttpTest, ReadinessFlipsWhenTheOnlyWorkerIsDownAndBack) {
  // One worker that takes a second to load: after it is killed, nothing is ready until its
  // replacement has loaded, so /readyz must be seen at 503 and then at 200 again.
  DroverOptions o;
  o.workers = 1;
  o.worker_args = {"--load-ms", "1000"};
  ASSERT_TRUE(start_with_metrics(std::move(o)));
  EXPECT_EQ(http_get(port_, "/readyz").status, 200u);
  const json killed = d().admin().call("workers.kill", {{"id", 0}});
  ASSERT_TRUE(is_result(killed)) << killed.dump();

  HttpReply last;
  EXPECT_TRUE(wait_until(
      [&] {
        last = http_get(port_, "/readyz");
        return last.status == 503;
      },
      10s))
      << "readyz never reported 503; last: " << last.status << " " << last.body;
  EXPECT_EQ(last.body, "0/1 workers ready\n");
  // Liveness is not readiness: the process is fine.
  EXPECT_EQ(http_get(port_, "/healthz").status, 200u);
  EXPECT_TRUE(wait_until([&] {
    last = http_get(port_, "/readyz");
    return last.status == 200;
  })) << "readyz did not return to 200; last: "
      << last.status << " " << last.body;
  EXPECT_EQ(last.body, "1/1 workers ready\n");

  const std::string text = scrape();
  EXPECT_EQ(value_of(text, R"(drover_worker_restarts_total{worker="0"})"), 1);
  EXPECT_EQ(value_of(text, "drover_pool_restarts_total"), 1);
  EXPECT_EQ(value_of(text, "drover_pool_crashes_total"), 0);  // an operator's kill is no crash
  EXPECT_EQ(value_of(text, R"(drover_worker_state{worker="0",state="ready"})"), 1);
}

TEST_F(HttpTest, NotReadyWhileDraining) {
  // During a SIGTERM drain /readyz says 503 "draining" while /healthz and /metrics still answer.
  DroverOptions o;
  o.workers = 1;
  o.worker_args = {"--ttft-ms", "3000"};
  ASSERT_TRUE(start_with_metrics(std::move(o)));
  auto c = d().client();
  c.send(request(1, "generate", {{"prompt", "in flight"}, {"max_tokens", 1}}));
  ASSERT_TRUE(
      wait_until([&] { return value_of(scrape(), "drover_admission_outstanding") == 1; }, 10s));
  d().workers();  // remembers the worker pids for stop()'s check that none outlives droverd
  d().terminate();
  HttpReply last;
  EXPECT_TRUE(wait_until(
      [&] {
        last = http_get(port_, "/readyz");
        return last.status == 503;
      },
      10s))
      << last.status << " " << last.body;
  EXPECT_EQ(last.body, "draining\n");
  EXPECT_EQ(http_get(port_, "/healthz").status, 200u);
  EXPECT_TRUE(is_result(read_reply(c, 1)));  // the request in flight is still answered
  // droverd exits by itself once drained (stop() would try the admin socket, gone by now).
  EXPECT_TRUE(d().wait_exit(kWaitTimeout).has_value());
  EXPECT_EQ(d().stop(), 0);
}

TEST(HttpStandalone, PermanentlyNotReadyWhenNoWorkerCanStart) {
  // A worker command that always fails: droverd runs (healthz 200) but never becomes ready.
  // DroverProcess::start() waits for readiness, so this droverd is started directly.
  std::string dir = "/tmp/drover-http-XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  {
    std::ofstream cfg(dir + "/droverd.yaml");
    cfg << "server:\n  socket: " << dir << "/c.sock\n  admin_socket: " << dir << "/a.sock\n"
        << "  run_dir: " << dir << "/run\n"
        << "workers:\n  count: 2\n  command: [/bin/false]\n  restart_backoff_base_ms: 10\n"
        << "  restart_backoff_max_ms: 50\n"
        << kMetricsAnyPortYaml;
  }
  {
    Child droverd({droverd_bin(), "--config", dir + "/droverd.yaml"}, dir + "/log", dir + "/log");
    int port = 0;
    ASSERT_TRUE(wait_until([&] { return (port = logged_metrics_port(read_file(dir + "/log"))) > 0; },
                           kStartTimeout))
        << read_file(dir + "/log");
    const HttpReply health = http_get(port, "/healthz");
    EXPECT_EQ(health.status, 200u);
    // Wait until both slots are parked (crash loop), then readiness is 503 for good.
    std::string text;
    EXPECT_TRUE(wait_until([&] {
      text = http_get(port, "/metrics").body;
      return sample(text, "drover_workers_parked") == 2.0;
    })) << text;
    const auto ready = http_get(port, "/readyz");
    EXPECT_EQ(ready.status, 503u);
    EXPECT_EQ(ready.body, "0/2 workers ready\n");
    EXPECT_EQ(value_of(text, "drover_workers_ready"), 0);
    EXPECT_EQ(value_of(text, R"(drover_worker_state{worker="1",state="parked"})"), 1);
    EXPECT_GT(value_of(text, "drover_pool_crashes_total"), 0);
    EXPECT_EQ(promtool_check_metrics(text, dir), "");
    droverd.signal(SIGTERM);
    const auto status = droverd.wait_exit(kWaitTimeout);
    ASSERT_TRUE(status.has_value()) << "droverd did not exit on SIGTERM";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << read_file(dir + "/log");
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST_F(HttpTest, DisabledMeansNoListener) {
  DroverOptions o;
  o.extra_yaml = "metrics:\n  enabled: false\n  listen: 127.0.0.1:0\n";
  ASSERT_TRUE(start(std::move(o)));
  EXPECT_EQ(d().log().find("metrics and probes on"), std::string::npos) << d().log();
  EXPECT_EQ(d().log().find("metrics.listen"), std::string::npos) << d().log();
}

TEST_F(HttpTest, AnAddressInUseDoesNotStopTheService) {
  // Something else holds the port: droverd logs the error and serves clients anyway.
  asio::io_context io;
  tcp::acceptor squatter(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const int port = squatter.local_endpoint().port();
  DroverOptions o;
  o.extra_yaml = metrics_yaml(port);
  ASSERT_TRUE(start(std::move(o)));
  EXPECT_TRUE(is_result(d().client().call("generate", gen_params("still serving", 2))));
  EXPECT_NE(d().log().find("metrics.listen"), std::string::npos) << d().log();
}

// --- systemd notify protocol ---

// A datagram socket standing in for systemd's notify socket. Like the real manager it reads
// continuously (on its own thread): a unix datagram queue holds only net.unix.max_dgram_qlen
// messages (10 by default), and droverd never blocks on a full one.
class NotifyListener {
 public:
  explicit NotifyListener(bool abstract) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::mt19937_64 rng{std::random_device{}()};
    const std::string name =
        "drover-notify-" + std::to_string(::getpid()) + "-" + std::to_string(rng() % 1000000);
    socklen_t len;
    if (abstract) {
      address_ = "@" + name;
      std::memcpy(addr.sun_path + 1, name.data(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    } else {
      address_ = "/tmp/" + name + ".sock";
      std::memcpy(addr.sun_path, address_.data(), address_.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size() + 1);
    }
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::pipe2(stop_, O_CLOEXEC) != 0) {
      throw std::runtime_error("cannot set up the notify socket " + address_);
    }
    reader_ = std::thread([this] { read_loop(); });
  }
  ~NotifyListener() {
    const char byte = 0;
    (void)!::write(stop_[1], &byte, 1);
    reader_.join();
    ::close(fd_);
    ::close(stop_[0]);
    ::close(stop_[1]);
    if (address_.front() == '/') ::unlink(address_.c_str());
  }
  const std::string& address() const { return address_; }

  // Waits for a message after the last one returned that contains `needle`.
  std::optional<std::string> wait_for(const std::string& needle, Millis timeout = kWaitTimeout) {
    std::unique_lock lock(mu_);
    std::optional<std::string> found;
    cv_.wait_for(lock, timeout, [&] {
      for (; next_ < received_.size(); ++next_) {
        if (received_[next_].find(needle) != std::string::npos) {
          found = received_[next_++];
          return true;
        }
      }
      return false;
    });
    return found;
  }
  std::vector<std::string> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }

 private:
  void read_loop() {
    for (;;) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) continue;
      if (p[1].revents) return;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) continue;
      std::lock_guard lock(mu_);
      received_.emplace_back(buf, static_cast<std::size_t>(n));
      cv_.notify_all();
    }
  }

  int fd_ = -1;
  int stop_[2] = {-1, -1};
  std::string address_;
  mutable std::mutex mu_;  // guards received_ and next_
  std::condition_variable cv_;
  std::vector<std::string> received_;
  std::size_t next_ = 0;
  std::thread reader_;
};

void check_notify_protocol(DroverProcess& d, NotifyListener& systemd) {
  // READY=1 once both workers are ready, with a STATUS line.
  const auto ready = systemd.wait_for("READY=1");
  ASSERT_TRUE(ready.has_value()) << "no READY=1; got "
                                 << testing::PrintToString(systemd.received());
  EXPECT_NE(ready->find("STATUS=2/2 workers ready"), std::string::npos) << *ready;
  // WATCHDOG=1 about every 100 ms (half of WATCHDOG_USEC=200000): several within seconds.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(systemd.wait_for("WATCHDOG=1", 5s).has_value())
        << "watchdog ping " << i << " missing";
  }
  // The workers do not inherit the notify socket.
  for (const auto& w : d.workers()) {
    const std::string env = read_file("/proc/" + std::to_string(w["pid"].get<int>()) + "/environ");
    EXPECT_EQ(env.find("NOTIFY_SOCKET="), std::string::npos);
    EXPECT_EQ(env.find("WATCHDOG_USEC="), std::string::npos);
  }
  EXPECT_EQ(d.stop(), 0);
  EXPECT_TRUE(systemd.wait_for("STOPPING=1", 5s).has_value())
      << "no STOPPING=1; got " << testing::PrintToString(systemd.received());
}

// Sets NOTIFY_SOCKET and WATCHDOG_USEC for the droverd started in its scope only.
class NotifyEnvironment {
 public:
  explicit NotifyEnvironment(const std::string& socket) {
    ::setenv("NOTIFY_SOCKET", socket.c_str(), 1);
    ::setenv("WATCHDOG_USEC", "200000", 1);
  }
  ~NotifyEnvironment() { clear(); }
  void clear() {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
  }
};

TEST_F(HttpTest, SystemdNotifyOnAnAbstractSocket) {
  NotifyListener systemd(/*abstract=*/true);
  NotifyEnvironment env(systemd.address());
  ASSERT_TRUE(start_with_metrics());
  env.clear();
  check_notify_protocol(d(), systemd);
}

TEST_F(HttpTest, SystemdNotifyOnAPathSocket) {
  NotifyListener systemd(/*abstract=*/false);
  NotifyEnvironment env(systemd.address());
  ASSERT_TRUE(start_with_metrics());
  env.clear();
  check_notify_protocol(d(), systemd);
}

// The SLO engine's families (docs/OPERATIONS.md "SLO policies"): every request is delayed past
// the latency objective, so the shed_low_priority policy acts; the scrape shows the breach, the
// action, the policy in force and the shed request, and passes promtool.
TEST_F(HttpTest, SloFamiliesShowABreachAndTheActionTaken) {
  ASSERT_TRUE(start_with_metrics({.workers = 1, .extra_yaml = R"(
fault_injection: {enabled: true, delay_ms: 300, delay_percent: 100}
slo:
  latency_p95_ms: 100
  window_s: 30
  eval_interval_ms: 100
  min_requests: 20
  policies:
    - {action: shed_low_priority, retry_after_ms: 1000}
)"}));
  auto c = d().client();
  std::int64_t next = 1;
  // Rounds of 20 requests at once until the policy has acted; the window (30 s) keeps the
  // breach for the scrape below.
  ASSERT_TRUE(wait_until([&] {
    std::vector<json> ids;
    for (int i = 0; i < 20; ++i) {
      ids.emplace_back(next++);
      c.send(request(ids.back(), "tokenize", {{"text", "slo"}}));
    }
    for (std::size_t i = 0; i < ids.size(); ++i) read_one(c);
    const json s = d().admin().call("slo.status")["result"];
    return s["policies"]["shed_low_priority"]["active"].get<bool>();
  }, 60s));
  EXPECT_EQ(error_code(c.call("tokenize", {{"text", "slo"}, {"priority", "low"}})), -32001);
  const std::string text = scrape();
  EXPECT_EQ(promtool_check_metrics(text, d().dir()), "");
  EXPECT_EQ(value_of(text, R"(drover_slo_breached{slo="latency_p95"})"), 1);
  EXPECT_EQ(value_of(text, R"(drover_slo_objective{slo="latency_p95"})"), 0.1);
  EXPECT_GE(value_of(text, R"(drover_slo_window_figure{slo="latency_p95"})"), 0.1);
  EXPECT_EQ(value_of(text, R"(drover_slo_policy_active{policy="shed_low_priority"})"), 1);
  EXPECT_EQ(value_of(text, R"(drover_slo_actions_total{policy="shed_low_priority",action="apply",mode="applied"})"), 1);
  EXPECT_GE(value_of(text, "drover_slo_shed_requests_total"), 1);
}

}  // namespace
}  // namespace drover::test
