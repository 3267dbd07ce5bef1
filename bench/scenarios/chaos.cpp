#include "bench/scenarios/chaos.hpp"

#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "bench/scenarios/report.hpp"
#include "client/rpc_client.hpp"

namespace drover::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct ReadyWorker {
  int id = 0;
  int pid = 0;
};

// The ready workers as workers.list reports them; throws when the admin socket does not answer.
std::vector<ReadyWorker> ready_workers(const std::string& admin_socket) {
  client::RpcClient admin(admin_socket);
  const json reply = admin.call("workers.list", nullptr, std::chrono::seconds(5));
  std::vector<ReadyWorker> out;
  for (const auto& w : reply.at("result").at("workers")) {
    if (w.value("state", "") == "ready") out.push_back({w.value("id", 0), w.value("pid", 0)});
  }
  return out;
}

// Kills one random ready worker; returns why it could not, or an empty string.
std::string kill_one(const ChaosOptions& o, std::mt19937& rng) {
  const auto ready = ready_workers(o.admin_socket);
  if (ready.empty()) return "no ready worker to kill";
  const ReadyWorker w = ready[std::uniform_int_distribution<std::size_t>(0, ready.size() - 1)(rng)];
  if (o.via_admin) {
    client::RpcClient admin(o.admin_socket);
    const json reply = admin.call("workers.kill", {{"id", w.id}, {"signal", "KILL"}});
    return reply.contains("error") ? "workers.kill: " + reply["error"].dump() : "";
  }
  if (w.pid <= 0 || ::kill(w.pid, SIGKILL) != 0) return fmt::format("kill({}) failed", w.pid);
  return "";
}

double ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

bool ChaosResult::failed() const {
  return steady.client_failures > 0 || chaos.client_failures > 0 || !recovery || chaos.ok == 0;
}

ChaosResult run_chaos(const ThroughputOptions& load, const ChaosOptions& o) {
  ChaosResult r;
  r.workers_before = static_cast<int>(ready_workers(o.admin_socket).size());
  if (o.steady.count() > 0) {
    ThroughputOptions steady = load;
    steady.requests.reset();
    steady.duration = o.steady;
    r.steady = run_throughput(steady);
  }

  // The chaos thread waits on a condition variable with a deadline (the kill schedule), so the
  // end of the load phase stops it at once.
  std::mutex m;
  std::condition_variable cv;
  bool stop = false;
  Clock::time_point last_kill{};
  std::thread chaos([&] {
    std::mt19937 rng(o.seed);
    std::unique_lock lock(m);
    while (!cv.wait_for(lock, o.interval, [&] { return stop; })) {
      lock.unlock();
      std::string why;
      try {
        why = kill_one(o, rng);
      } catch (const std::exception& e) {
        why = e.what();
      }
      lock.lock();
      if (why.empty()) {
        ++r.kills;
        last_kill = Clock::now();
      } else if (r.kill_failures++ == 0) {
        r.first_kill_failure = why;
      }
    }
  });
  try {
    r.chaos = run_throughput(load);
  } catch (...) {
    {
      std::lock_guard lock(m);
      stop = true;
    }
    cv.notify_all();
    chaos.join();
    throw;
  }
  {
    std::lock_guard lock(m);
    stop = true;
  }
  cv.notify_all();
  chaos.join();

  // Recovery: poll workers.list until every slot is ready again (a deadline, not a sleep).
  const auto deadline = Clock::now() + o.recovery_timeout;
  while (true) {
    r.workers_after = static_cast<int>(ready_workers(o.admin_socket).size());
    if (r.workers_after >= r.workers_before) {
      if (r.kills > 0) {
        r.recovery = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_kill);
      } else {
        r.recovery = std::chrono::milliseconds(0);
      }
      break;
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling interval of the deadline
  }
  return r;
}

std::string format_chaos_text(const ThroughputOptions& load, const ChaosOptions& o,
                              const ChaosResult& r) {
  std::string out = fmt::format(
      "chaos: SIGKILL of a random ready worker every {} ms ({}), {} connection(s) x {} in flight\n",
      o.interval.count(), o.via_admin ? "workers.kill" : "kill(2)", load.connections, load.inflight);
  if (o.steady.count() > 0) out += "--- fault-free phase\n" + format_text(load, r.steady);
  out += "--- chaos phase\n" + format_text(load, r.chaos);
  const double steady_rps = r.steady.requests_per_s();
  out += fmt::format("kills:       {} ({} could not be made{})\n", r.kills, r.kill_failures,
                     r.first_kill_failure.empty() ? "" : ": " + r.first_kill_failure);
  out += fmt::format("exactly-once: {} lost or duplicated answers\n",
                     r.steady.client_failures + r.chaos.client_failures);
  if (steady_rps > 0) {
    out += fmt::format("throughput during chaos: {:.0f} % of the fault-free phase\n",
                       100.0 * r.chaos.requests_per_s() / steady_rps);
  }
  out += r.recovery ? fmt::format("pool: {} of {} ready {:.0f} ms after the last kill\n",
                                  r.workers_after, r.workers_before, ms(*r.recovery))
                    : fmt::format("pool: only {} of {} ready {} ms after the run\n", r.workers_after,
                                  r.workers_before, o.recovery_timeout.count());
  out += r.failed() ? "FAILED\n" : "ok\n";
  return out;
}

json chaos_json(const ThroughputOptions& load, const ChaosOptions& o, const ChaosResult& r) {
  json out = {{"scenario", "chaos"},
              {"interval_ms", o.interval.count()},
              {"kill", o.via_admin ? "workers.kill" : "kill(2)"},
              {"chaos", to_json(load, r.chaos, "chaos")},
              {"kills", r.kills},
              {"kill_failures", r.kill_failures},
              {"lost_or_duplicated", r.steady.client_failures + r.chaos.client_failures},
              {"workers_before", r.workers_before},
              {"workers_after", r.workers_after},
              {"recovery_ms", r.recovery ? json(ms(*r.recovery)) : json()},
              {"failed", r.failed()}};
  if (o.steady.count() > 0) {
    out["steady"] = to_json(load, r.steady, "throughput");
    if (r.steady.requests_per_s() > 0) {
      out["chaos_throughput_ratio"] = r.chaos.requests_per_s() / r.steady.requests_per_s();
    }
  }
  if (!r.first_kill_failure.empty()) out["first_kill_failure"] = r.first_kill_failure;
  return out;
}

}  // namespace drover::bench
