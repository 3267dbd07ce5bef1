// Chaos suite: 64 requests in flight (unary and streaming, mixed) against 4 sim workers while
// workers are SIGKILLed (through workers.kill and by kill(2) from outside), SIGSTOPped, made
// to write garbage, to hang and to stall. Every request must get exactly one answer, and each
// answer must be the correct text (streams contiguous and identical to a clean run with the
// same seed) or a documented error with its data. The pool must return to its size, and the
// harness's teardown checks that no worker process outlives droverd.
//
// Knobs (bench/chaos.sh runs the long version and keeps the printed figures):
//   DROVER_CHAOS_SECONDS       chaos duration (default 12)
//   DROVER_CHAOS_STEADY_SECONDS  a fault-free phase first, for the throughput baseline (default 3)
//   DROVER_CHAOS_INTERVAL_MS   time between faults (default: random 250-750 ms)
//   DROVER_CHAOS_MODE          "mixed" (default) or "kill" (SIGKILL of a random worker only)
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "../integration/harness.hpp"
#include "worker/backends/sim_backend.hpp"

namespace drover::test {
namespace {

constexpr int kWorkers = 4;
constexpr int kConnections = 8;
constexpr int kInflightPerConnection = 8;
constexpr int kMaxTokens = 12;
constexpr double kTemperature = 0.8;

std::string expected_text(const std::string& prompt, std::uint64_t seed) {
  std::string s;
  for (const auto& t : worker::sim_tokens(prompt, seed, kTemperature, kMaxTokens)) s += t;
  return s;
}

struct Outcome {
  std::uint64_t ok = 0;
  std::uint64_t streams_ok = 0;
  std::map<int, std::uint64_t> errors;  // by code
  std::vector<std::string> violations;  // broken guarantees (test fails)
  std::vector<double> latency_ms;
};

struct Pending {
  std::string prompt;
  std::uint64_t seed = 0;
  bool stream = false;
  std::vector<json> chunks;
  std::chrono::steady_clock::time_point sent;
};

// One client connection keeping kInflightPerConnection requests outstanding until `stop`.
void client_loop(DroverProcess& d, int conn, std::atomic<bool>& stop, Outcome& out, std::mutex& mu) {
  auto c = d.client();
  std::map<std::int64_t, Pending> pending;
  std::int64_t next = 1;
  std::mt19937 rng(static_cast<unsigned>(conn * 7919 + 1));
  auto violate = [&](std::string what) {
    std::lock_guard lock(mu);
    out.violations.push_back("conn " + std::to_string(conn) + ": " + std::move(what));
  };
  auto send_one = [&] {
    const std::int64_t id = next++;
    Pending p;
    p.prompt = "chaos " + std::to_string(conn) + " " + std::to_string(id % 5);
    p.seed = static_cast<std::uint64_t>(conn) * 100000 + static_cast<std::uint64_t>(id);
    p.stream = rng() % 2 == 0;
    p.sent = std::chrono::steady_clock::now();
    c.send(request(id, "generate", {{"prompt", p.prompt}, {"seed", p.seed}, {"temperature", kTemperature},
                                   {"max_tokens", kMaxTokens}, {"stream", p.stream}}));
    pending.emplace(id, std::move(p));
  };
  for (int i = 0; i < kInflightPerConnection; ++i) send_one();
  const auto deadline_after_stop = std::chrono::seconds(60);
  std::optional<std::chrono::steady_clock::time_point> stop_seen;
  while (!pending.empty()) {
    if (stop && !stop_seen) stop_seen = std::chrono::steady_clock::now();
    if (stop_seen && std::chrono::steady_clock::now() - *stop_seen > deadline_after_stop) {
      violate(std::to_string(pending.size()) + " requests never answered");
      return;
    }
    std::optional<json> msg;
    try {
      msg = c.read(1000ms);
    } catch (const client::ClientError& e) {
      violate(std::string("connection failed: ") + e.what());
      return;
    }
    if (!msg) continue;
    if (msg->contains("method")) {
      const json& p = (*msg)["params"];
      const auto it = pending.find(p.value("id", json()).is_number_integer() ? p["id"].get<std::int64_t>() : -1);
      if (it == pending.end()) {
        violate("chunk for an unknown or finished request: " + msg->dump());
        continue;
      }
      it->second.chunks.push_back(p);
      continue;
    }
    const json id = msg->value("id", json());
    const auto it = id.is_number_integer() ? pending.find(id.get<std::int64_t>()) : pending.end();
    if (it == pending.end()) {
      violate("reply for an unknown or already answered id: " + msg->dump());
      continue;
    }
    Pending p = std::move(it->second);
    pending.erase(it);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - p.sent).count();
    if (is_result(*msg)) {
      const json& r = (*msg)["result"];
      const std::string want = expected_text(p.prompt, p.seed);
      if (r.value("text", std::string()) != want) violate("wrong text for seed " + std::to_string(p.seed));
      if (p.stream) {
        std::string joined;
        for (std::size_t i = 0; i < p.chunks.size(); ++i) {
          if (p.chunks[i].value("index", -1) != static_cast<int>(i)) {
            violate("stream index gap at " + std::to_string(i));
            break;
          }
          joined += p.chunks[i].value("text", std::string());
        }
        if (joined != want) violate("stream text differs from a clean run, seed " + std::to_string(p.seed));
      }
      std::lock_guard lock(mu);
      ++out.ok;
      if (p.stream) ++out.streams_ok;
      out.latency_ms.push_back(ms);
    } else {
      const int code = error_code(*msg);
      const json& data = (*msg)["error"].value("data", json());
      const bool documented =
          (code == -32003 && data.contains("attempts") && data.contains("worker")) ||
          ((code == -32002 || code == -32001) && data.contains("retry_after_ms"));
      if (!documented) violate("undocumented error: " + msg->dump());
      std::lock_guard lock(mu);
      ++out.errors[code];
    }
    if (!stop) send_one();
  }
}

int env_int(const char* name, int fallback) {
  const char* s = std::getenv(name);
  return s ? std::max(0, std::atoi(s)) : fallback;
}

int chaos_seconds() { return std::max(1, env_int("DROVER_CHAOS_SECONDS", 12)); }

TEST_F(DroverTest, EveryRequestAnsweredExactlyOnceUnderChaos) {
  DroverOptions o;
  o.workers = kWorkers;
  o.worker_args = {"--ttft-ms", "2", "--tokens-per-s", "3000"};
  o.workers_yaml = {"warm_spares: 1", "heartbeat_interval_ms: 100", "heartbeat_timeout_ms: 800",
                    "stall_timeout_ms: 2000", "max_inflight: 64"};
  o.extra_yaml = "retry:\n  max_attempts: 4\n  min_retry_concurrency: 64\n";
  o.log_level = "warn";
  ASSERT_TRUE(start(o));

  std::atomic<bool> stop{false};
  Outcome out;
  std::mutex mu;
  std::vector<std::thread> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.emplace_back([&, i] { client_loop(d(), i, stop, out, mu); });
  }

  auto completed = [&out, &mu] {
    std::lock_guard lock(mu);
    std::uint64_t n = out.ok;
    for (const auto& [code, k] : out.errors) n += k;
    return n;
  };
  // Steady phase: the throughput baseline, without faults. Pacing, not synchronisation.
  const int steady_s = env_int("DROVER_CHAOS_STEADY_SECONDS", 3);
  const auto steady_start_n = completed();
  std::this_thread::sleep_until(std::chrono::steady_clock::now() + std::chrono::seconds(steady_s));
  const auto steady_n = completed() - steady_start_n;

  // The chaos: one action per interval on a random live worker.
  std::mt19937 rng(12345);
  std::map<std::string, int> actions;
  const bool kill_only = std::string(std::getenv("DROVER_CHAOS_MODE") ? std::getenv("DROVER_CHAOS_MODE") : "") == "kill";
  const int interval_ms = env_int("DROVER_CHAOS_INTERVAL_MS", 0);
  const auto chaos_start_n = completed();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(chaos_seconds());
  auto admin = d().admin();
  while (std::chrono::steady_clock::now() < until) {
    // Pacing of the fault load, not synchronisation: nothing below waits for anything to
    // have happened.
    const Millis pause(interval_ms > 0 ? interval_ms : 250 + static_cast<int>(rng() % 500));
    std::this_thread::sleep_until(std::chrono::steady_clock::now() + pause);
    json ws = d().workers();
    std::vector<json> live;
    for (const auto& w : ws) {
      if (w.value("state", std::string()) == "ready" && w.value("pid", 0) > 0) live.push_back(w);
    }
    if (live.empty()) continue;
    const json& w = live[rng() % live.size()];
    const int id = w["id"].get<int>();
    const pid_t pid = w["pid"].get<int>();
    switch (kill_only ? 1 : rng() % 6) {
      case 0:
        admin.call("workers.kill", {{"id", id}, {"signal", "KILL"}});
        ++actions["workers.kill"];
        break;
      case 1:
        ::kill(pid, SIGKILL);
        ++actions["kill(2) SIGKILL"];
        break;
      case 2:
        ::kill(pid, SIGSTOP);
        ++actions["SIGSTOP"];
        break;
      case 3:
        admin.call("workers.inject", {{"id", id}, {"fault", "garbage"}});
        ++actions["inject garbage"];
        break;
      case 4:
        admin.call("workers.inject", {{"id", id}, {"fault", "hang"}});
        ++actions["inject hang"];
        break;
      case 5:
        admin.call("workers.inject", {{"id", id}, {"fault", "stall"}});
        ++actions["inject stall"];
        break;
    }
  }
  const auto chaos_n = completed() - chaos_start_n;
  stop = true;
  for (auto& t : clients) t.join();
  const auto recovery_start = std::chrono::steady_clock::now();
  const bool recovered = d().wait_ready(kWorkers, 60s);
  const double recovery_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - recovery_start).count();

  std::uint64_t errors = 0;
  for (const auto& [code, n] : out.errors) errors += n;
  std::sort(out.latency_ms.begin(), out.latency_ms.end());
  auto pct = [&out](double q) {
    return out.latency_ms.empty() ? 0.0 : out.latency_ms[static_cast<std::size_t>(q * (out.latency_ms.size() - 1))];
  };
  std::printf("steady %d s + chaos %d s: %llu ok (%llu streams), %llu errors, p50 %.1f ms, p99 %.1f ms, "
              "max %.1f ms\n",
              steady_s, chaos_seconds(), static_cast<unsigned long long>(out.ok),
              static_cast<unsigned long long>(out.streams_ok), static_cast<unsigned long long>(errors),
              pct(0.5), pct(0.99), out.latency_ms.empty() ? 0.0 : out.latency_ms.back());
  for (const auto& [code, n] : out.errors) std::printf("  error %d: %llu\n", code, static_cast<unsigned long long>(n));
  for (const auto& [a, n] : actions) std::printf("  action %s: %d\n", a.c_str(), n);
  const double steady_rps = steady_s > 0 ? static_cast<double>(steady_n) / steady_s : 0.0;
  const double chaos_rps = static_cast<double>(chaos_n) / chaos_seconds();
  std::printf("  throughput: steady %.0f req/s, during chaos %.0f req/s (%.0f%%); pool back to %d ready "
              "%.0f ms after the last fault\n",
              steady_rps, chaos_rps, steady_rps > 0 ? 100.0 * chaos_rps / steady_rps : 0.0, kWorkers,
              recovery_ms);

  for (const auto& v : out.violations) ADD_FAILURE() << v;
  EXPECT_GT(out.ok, 100u);
  EXPECT_GT(out.streams_ok, 10u);
  // Retries and failover absorb the faults: errors stay a small fraction.
  EXPECT_LE(errors * 20, out.ok + errors) << "more than 5% of requests failed";
  // The pool returns to its size once the chaos stops.
  EXPECT_TRUE(recovered) << d().workers().dump();
}

}  // namespace
}  // namespace drover::test
