#include "bench/scenarios/throughput.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench/scenarios/reply_scanner.hpp"
#include "client/rpc_client.hpp"
#include "proto/worker_codec.hpp"

namespace drover::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Client method names (shared/DESIGN.md section 4). droverd relays the workers' chunk
// notification name to clients unchanged, so the constant lives in the worker protocol.
constexpr std::string_view kGenerate = "generate";
constexpr std::string_view kChunk = proto::worker::method::kChunk;

std::string generate_params_json(const ThroughputOptions& opt, int prompt_index) {
  nlohmann::json params = {{"prompt", opt.prompt}, {"max_tokens", opt.max_tokens}};
  if (opt.distinct_prompts > 0) {
    params["prompt"] = fmt::format("{} #{}", opt.prompt, prompt_index);
    params["temperature"] = 0;
  }
  if (!opt.model.empty()) params["model"] = opt.model;
  if (opt.stream) params["stream"] = true;
  if (opt.cache_bypass) params["cache"] = "bypass";
  return params.dump();
}

std::vector<std::string> body_prefixes(const ThroughputOptions& opt) {
  std::vector<std::string> out;
  for (int i = 0; i < std::max(opt.distinct_prompts, 1); ++i) {
    out.push_back(fmt::format(R"({{"jsonrpc":"2.0","method":"{}","params":{},"id":)", kGenerate,
                              generate_params_json(opt, i)));
  }
  return out;
}

// What all connection threads share. Everything but `counted_sent` is written before the
// threads start and only read afterwards.
struct RunPlan {
  explicit RunPlan(const ThroughputOptions& options)
      : opt(options),
        body_prefixes(bench::body_prefixes(options)),
        body_suffix("}") {}

  const ThroughputOptions& opt;
  Clock::time_point window_start;
  Clock::time_point window_end;  // sending stops here unless opt.requests is set
  // The request text up to its id (one per distinct prompt), and after it: the id (and the
  // prompt) is the only part that varies, so the params are serialised once, not per request.
  std::vector<std::string> body_prefixes;
  std::string body_suffix;
  // Counted requests claimed so far, across connections (--requests mode).
  std::atomic<std::int64_t> counted_sent{0};
  // Requests sent so far, across connections: picks the next prompt round-robin.
  std::atomic<std::uint64_t> prompt_turn{0};
  // Final replies so far, across connections; only maintained for the progress line.
  std::atomic<std::uint64_t> replies{0};
};

struct ConnectionResult {
  ThroughputResult totals;
  std::optional<Clock::time_point> last_counted_reply;
};

struct Pending {
  Clock::time_point sent;
  bool counted = false;
  bool chunk_seen = false;
};

// One connection: keeps opt.inflight requests outstanding until the plan says stop, then
// drains. Runs on its own thread; touches only its client, its result and plan.counted_sent.
class Connection {
 public:
  Connection(RunPlan& plan, client::RpcClient& client) : plan_(plan), client_(client) {}

  ConnectionResult run() {
    try {
      loop();
    } catch (const client::ClientError& e) {
      fail(e.what());
    }
    return std::move(result_);
  }

 private:
  void loop() {
    const auto inflight = static_cast<std::size_t>(plan_.opt.inflight);
    pending_.reserve(inflight * 2);
    for (;;) {
      if (!stopping_ && pending_.size() < inflight) top_up(inflight);
      if (pending_.empty()) return;  // stopping, and everything answered
      auto text = client_.read_text(plan_.opt.reply_timeout);
      if (!text) {
        return fail(fmt::format("no reply within {} ms ({} requests outstanding)",
                                plan_.opt.reply_timeout.count(), pending_.size()));
      }
      if (!handle(*text)) return;
    }
  }

  // Sends requests until `inflight` are outstanding or the plan says stop, in one write.
  void top_up(std::size_t inflight) {
    const auto now = Clock::now();
    const bool counted = now >= plan_.window_start;
    const std::int64_t first_id = next_id_;
    out_.clear();
    while (pending_.size() + static_cast<std::size_t>(next_id_ - first_id) < inflight) {
      if (counted && !claim()) {
        stopping_ = true;
        break;
      }
      // Relaxed: a ticket counter, nothing is published through it.
      body_ = plan_.body_prefixes.size() == 1
                  ? plan_.body_prefixes[0]
                  : plan_.body_prefixes[plan_.prompt_turn.fetch_add(1, std::memory_order_relaxed) %
                                        plan_.body_prefixes.size()];
      body_ += std::to_string(next_id_++);
      body_ += plan_.body_suffix;
      proto::append_frame(out_, plan_.opt.framing, body_);
    }
    if (out_.empty()) return;
    const auto sent = Clock::now();
    for (std::int64_t id = first_id; id < next_id_; ++id)
      pending_.emplace(id, Pending{sent, counted});
    client_.send_raw(out_);
  }

  // Whether one more counted request may be sent.
  bool claim() {
    if (plan_.opt.requests) {
      // Relaxed: the counter only hands out tickets; nothing else is published through it, and
      // the results are read after the threads are joined.
      return plan_.counted_sent.fetch_add(1, std::memory_order_relaxed) < *plan_.opt.requests;
    }
    return Clock::now() < plan_.window_end;
  }

  // Returns false when the connection must stop.
  bool handle(const std::string& text) {
    const auto now = Clock::now();
    const ReplyInfo reply = scan_reply(text);
    ThroughputResult& r = result_.totals;
    switch (reply.kind) {
      case ReplyInfo::Kind::notification: {
        if (reply.method != kChunk || !reply.params_id) return true;
        const auto it = pending_.find(*reply.params_id);
        if (it == pending_.end()) return true;
        ++r.chunks_total;
        if (!it->second.counted) return true;
        ++r.chunks;
        if (!it->second.chunk_seen) {
          it->second.chunk_seen = true;
          r.first_chunk.record(now - it->second.sent);
        }
        return true;
      }
      case ReplyInfo::Kind::result:
      case ReplyInfo::Kind::error: {
        const auto it = pending_.find(*reply.id);
        if (it == pending_.end()) {
          fail(fmt::format("reply to id {}, which is not outstanding", *reply.id));
          return false;
        }
        const Pending p = it->second;
        pending_.erase(it);
        ++r.replies_total;
        // Relaxed: a statistic read by the progress line, ordering nothing else.
        if (plan_.opt.progress) plan_.replies.fetch_add(1, std::memory_order_relaxed);
        if (!p.counted) return true;
        result_.last_counted_reply = now;
        if (reply.kind == ReplyInfo::Kind::error) {
          ++r.error_codes[reply.error_code];
        } else {
          ++r.ok;
          r.completion_tokens += static_cast<std::uint64_t>(reply.completion_tokens);
          r.latency.record(now - p.sent);
        }
        return true;
      }
      case ReplyInfo::Kind::other:
      case ReplyInfo::Kind::invalid:
        break;
    }
    fail("unexpected message from server: " + text.substr(0, 200));
    return false;
  }

  void fail(std::string what) {
    ThroughputResult& r = result_.totals;
    if (r.client_failures++ == 0) r.first_client_failure = std::move(what);
  }

  RunPlan& plan_;
  client::RpcClient& client_;
  ConnectionResult result_;
  std::unordered_map<std::int64_t, Pending> pending_;
  std::int64_t next_id_ = 1;
  bool stopping_ = false;
  std::string out_;   // frames of one write, reused
  std::string body_;  // one request's JSON, reused
};

// CPU time of this process so far, all threads, user plus system.
std::chrono::nanoseconds process_cpu() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto tv = [](const timeval& t) {
    return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec);
  };
  return std::chrono::duration_cast<std::chrono::nanoseconds>(tv(u.ru_utime) + tv(u.ru_stime));
}

// utime + stime of another process (all its threads), from /proc/PID/stat; nullopt when it
// cannot be read.
std::optional<std::chrono::nanoseconds> other_process_cpu(int pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  long long utime = 0, stime = 0;
  // After the name: state is field 3 of proc(5); utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoll(field);
    if (i == 15) stime = std::stoll(field);
  }
  const long tick = ::sysconf(_SC_CLK_TCK);
  if (!fields || tick <= 0) return std::nullopt;
  return std::chrono::nanoseconds((utime + stime) * 1'000'000'000LL / tick);
}

// options.idle_connections sockets: opened, each answered once (`health`), then held silent
// until the run ends. Owns the descriptors.
class IdleConnections {
 public:
  explicit IdleConnections(const ThroughputOptions& opt) {
    if (opt.idle_connections == 0) return;
    raise_fd_limit(static_cast<rlim_t>(opt.idle_connections + opt.connections) + 64);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (opt.socket.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long");
    std::memcpy(addr.sun_path, opt.socket.c_str(), opt.socket.size() + 1);
    constexpr std::string_view kHealth = R"({"jsonrpc":"2.0","id":0,"method":"health"})"
                                         "\n";
    fds_.reserve(static_cast<std::size_t>(opt.idle_connections));
    for (int i = 0; i < opt.idle_connections; ++i) {
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) fail(fmt::format("idle connection {}: socket", i + 1));
      fds_.push_back(fd);
      // Blocking: a full accept backlog makes connect wait until the server catches up.
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
        fail(fmt::format("idle connection {}: connect {}", i + 1, opt.socket));
      if (::send(fd, kHealth.data(), kHealth.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(kHealth.size()))
        fail(fmt::format("idle connection {}: send", i + 1));
    }
    // Every answer, in order: the server works on all of them meanwhile.
    const auto deadline = Clock::now() + opt.reply_timeout;
    std::string reply;
    for (std::size_t i = 0; i < fds_.size(); ++i) {
      reply.clear();
      while (reply.find('\n') == std::string::npos) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd p{fds_[i], POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0)
          throw std::runtime_error(
              fmt::format("idle connection {}: no answer to health in time", i + 1));
        char buf[4096];
        const ssize_t n = ::read(fds_[i], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail(fmt::format("idle connection {}: closed by the server", i + 1));
        reply.append(buf, static_cast<std::size_t>(n));
      }
      if (reply.find("\"result\"") == std::string::npos || reply.find('\n') + 1 != reply.size())
        throw std::runtime_error(
            fmt::format("idle connection {}: health answered {}", i + 1, reply.substr(0, 300)));
    }
  }
  IdleConnections(const IdleConnections&) = delete;
  IdleConnections& operator=(const IdleConnections&) = delete;

  std::size_t size() const { return fds_.size(); }

  // Connections on which something arrived since the health answer: the server closed them
  // (or wrote to an idle client, which it must not).
  std::uint64_t disturbed() const {
    std::vector<pollfd> p;
    for (int fd : fds_) p.push_back({fd, POLLIN, 0});
    if (p.empty() || ::poll(p.data(), p.size(), 0) <= 0) return 0;
    return static_cast<std::uint64_t>(
        std::count_if(p.begin(), p.end(), [](const pollfd& x) { return x.revents != 0; }));
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
  }

  // The soft limit up to `want` (at most the hard limit): idle connections are descriptors.
  static void raise_fd_limit(rlim_t want) {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= want) return;
    r.rlim_cur = std::min(want, r.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_cur < want) {
      throw std::runtime_error(fmt::format(
          "{} descriptors needed, the hard limit (ulimit -Hn) is {}", want, r.rlim_max));
    }
  }

  // A member, so the descriptors are closed also when the constructor throws.
  struct Fds : std::vector<int> {
    Fds() = default;
    Fds(const Fds&) = delete;
    ~Fds() {
      for (int fd : *this) ::close(fd);
    }
  } fds_;
};

}  // namespace

std::uint64_t ThroughputResult::errors() const {
  std::uint64_t n = client_failures;
  for (const auto& [code, count] : error_codes) n += count;
  return n;
}

double ThroughputResult::requests_per_s() const {
  const double s = std::chrono::duration<double>(elapsed).count();
  return s > 0 ? static_cast<double>(ok) / s : 0.0;
}

double ThroughputResult::tokens_per_s() const {
  const double s = std::chrono::duration<double>(elapsed).count();
  return s > 0 ? static_cast<double>(completion_tokens) / s : 0.0;
}

ThroughputResult run_throughput(const ThroughputOptions& opt) {
  if (opt.idle_connections > 0 && opt.framing != proto::Framing::ndjson) {
    throw std::runtime_error("idle connections speak NDJSON only");
  }
  // Connect everything first, so the window does not include connection set-up.
  IdleConnections idle(opt);
  std::vector<client::RpcClient> clients;
  clients.reserve(static_cast<std::size_t>(opt.connections));
  // tcp:// and tls:// addresses too (TLS files from DROVER_TLS_CA/CERT/KEY, as droverctl).
  const auto tls = client::TlsOptions::from_environment();
  for (int i = 0; i < opt.connections; ++i) {
    clients.emplace_back(opt.socket, opt.framing, 64 * 1024 * 1024, tls);
  }
  std::vector<client::RpcClient*> links;
  for (auto& c : clients) links.push_back(&c);
  ThroughputResult r = run_throughput_on(opt, links);
  r.idle_connections = idle.size();
  if (const std::uint64_t gone = idle.disturbed(); gone > 0) {
    if (r.client_failures == 0) {
      r.first_client_failure = fmt::format("{} idle connection(s) closed by the server", gone);
    }
    r.client_failures += gone;
  }
  return r;
}

ThroughputResult run_throughput_on(const ThroughputOptions& opt,
                                   const std::vector<client::RpcClient*>& links) {
  RunPlan plan(opt);
  const auto run_start = Clock::now();
  const auto cpu_start = process_cpu();
  const auto supervisor_start =
      opt.supervisor_pid ? other_process_cpu(*opt.supervisor_pid) : std::nullopt;

  std::vector<std::unique_ptr<Connection>> connections;
  connections.reserve(links.size());
  for (client::RpcClient* link : links) connections.push_back(std::make_unique<Connection>(plan, *link));
  const auto start = Clock::now();
  plan.window_start = start + opt.warmup;
  plan.window_end = plan.window_start + opt.duration;

  std::vector<ConnectionResult> results(connections.size());
  {
    std::mutex mutex;  // guards `running` for the progress line's wait
    std::condition_variable finished;
    std::size_t running = connections.size();
    std::vector<std::jthread> threads;
    for (std::size_t i = 0; i < connections.size(); ++i) {
      threads.emplace_back([&, i] {
        results[i] = connections[i]->run();
        std::lock_guard lock(mutex);
        --running;
        finished.notify_all();
      });
    }
    if (opt.progress) {
      // One line, rewritten every second until the last connection is done.
      std::uint64_t last = 0;
      std::unique_lock lock(mutex);
      while (!finished.wait_for(lock, std::chrono::seconds(1), [&] { return running == 0; })) {
        const std::uint64_t now = plan.replies.load(std::memory_order_relaxed);
        const double t = std::chrono::duration<double>(Clock::now() - start).count();
        std::fprintf(stderr, "\r%7.1f s  %12llu replies  %9llu req/s (last second)%s", t,
                     static_cast<unsigned long long>(now),
                     static_cast<unsigned long long>(now - last),
                     Clock::now() < plan.window_start ? "  [warm-up]" : "           ");
        last = now;
      }
      std::fprintf(stderr, "\r%*s\r", 72, "");
    }
  }  // jthreads join here
  std::optional<std::chrono::nanoseconds> supervisor_cpu;
  if (supervisor_start) {
    const auto end = other_process_cpu(*opt.supervisor_pid);
    if (end) supervisor_cpu = *end - *supervisor_start;
  }

  ThroughputResult total;
  std::optional<Clock::time_point> last;
  for (const ConnectionResult& c : results) {
    const ThroughputResult& r = c.totals;
    total.ok += r.ok;
    total.replies_total += r.replies_total;
    total.completion_tokens += r.completion_tokens;
    total.chunks += r.chunks;
    total.chunks_total += r.chunks_total;
    for (const auto& [code, count] : r.error_codes) total.error_codes[code] += count;
    if (r.client_failures > 0 && total.client_failures == 0) {
      total.first_client_failure = r.first_client_failure;
    }
    total.client_failures += r.client_failures;
    total.latency.merge(r.latency);
    total.first_chunk.merge(r.first_chunk);
    if (c.last_counted_reply && (!last || *c.last_counted_reply > *last))
      last = c.last_counted_reply;
  }
  if (last) total.elapsed = *last - plan.window_start;
  total.run_wall = Clock::now() - run_start;
  total.client_cpu = process_cpu() - cpu_start;
  total.supervisor_cpu = supervisor_cpu;
  return total;
}

}  // namespace drover::bench
