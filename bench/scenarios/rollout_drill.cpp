#include "bench/scenarios/rollout_drill.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "client/rpc_client.hpp"

namespace drover::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kReplyTimeout = 30s;

json admin_call(const std::string& admin_socket, const std::string& method, const json& params) {
  client::RpcClient admin(admin_socket);
  json reply = admin.call(method, params, 10s);
  if (reply.contains("error")) throw std::runtime_error(method + ": " + reply["error"].dump());
  return reply["result"];
}

json stage_status(const DrillOptions& o) {
  const json stages = admin_call(o.admin_socket, "rollouts.status", nullptr).value("stages", json::object());
  if (!stages.contains(o.stage)) {
    std::string names;
    for (const auto& [name, s] : stages.items()) names += (names.empty() ? "" : ", ") + name;
    throw std::runtime_error(fmt::format("stage '{}' has no rollout (the rollouts block names: {})", o.stage,
                                         names.empty() ? "none" : names));
  }
  return stages[o.stage];
}

// What the load threads count, under `m`. The poller sets rolled_back_at.
struct Tally {
  std::mutex m;
  DrillResult* result = nullptr;
  std::optional<Clock::time_point> rolled_back_at;
};

bool injected(const json& reply) {
  return reply.contains("error") && reply["error"].contains("data") && reply["error"]["data"].is_object() &&
         reply["error"]["data"].contains("fault_injection");
}

// One connection keeping `inflight` requests in flight until `stop`, then collecting the rest.
void load(const DrillOptions& o, Tally& t, const std::atomic<bool>& stop) {
  try {
    client::RpcClient c(o.socket);
    const json params = o.method == "generate" ? json{{"prompt", "drill"}, {"max_tokens", o.max_tokens}}
                                               : json{{"text", "drill"}};
    std::map<std::int64_t, Clock::time_point> sent;  // id -> when it was sent
    while (true) {
      const bool stopping = stop.load(std::memory_order_relaxed);
      while (!stopping && static_cast<int>(sent.size()) < o.inflight) {
        sent[c.send_request(o.method, params)] = Clock::now();
      }
      if (sent.empty()) return;
      const auto msg = c.read(kReplyTimeout);
      if (!msg) throw client::ClientError("no reply within 30 s");
      if (!msg->contains("id") || !(*msg)["id"].is_number_integer()) continue;  // a notification
      const auto it = sent.find((*msg)["id"].get<std::int64_t>());
      if (it == sent.end()) throw client::ClientError("a reply to an id not in flight: " + msg->dump());
      const bool fault = injected(*msg);
      std::lock_guard lock(t.m);
      DrillResult& r = *t.result;
      ++r.requests;
      if (msg->contains("result")) {
        ++r.ok;
      } else {
        ++r.error_codes[(*msg)["error"].value("code", 0)];
      }
      if (fault) {
        ++r.injected;
        if (t.rolled_back_at && it->second > *t.rolled_back_at) ++r.injected_after_rollback;
      }
      sent.erase(it);
    }
  } catch (const std::exception& e) {
    std::lock_guard lock(t.m);
    if (t.result->client_failures++ == 0) t.result->first_client_failure = e.what();
  }
}

DrillPoint point_of(const json& s, double t_s) {
  DrillPoint p;
  p.t_s = t_s;
  p.percent = s.value("percent", 0);
  p.state = s.value("state", std::string());
  const json w = s.value("window", json::object());
  const json canary = w.value("canary", json::object()), baseline = w.value("baseline", json::object());
  p.canary = canary.value("requests", std::uint64_t{0});
  p.canary_errors = canary.value("errors", std::uint64_t{0});
  p.baseline = baseline.value("requests", std::uint64_t{0});
  p.baseline_errors = baseline.value("errors", std::uint64_t{0});
  const json last = s.value("last_decision", json());
  if (last.is_object()) {
    p.decision = last.value("action", std::string());
    const json f = last.value("figures", json());
    if (f.is_object() && f.contains("trigger")) p.decision += " (" + f["trigger"].get<std::string>() + ")";
  }
  return p;
}

}  // namespace

bool DrillResult::failed() const {
  return (outcome != "rolled_back" && outcome != "complete") || client_failures > 0 ||
         injected_after_rollback > 0 || requests == 0;
}

DrillResult run_rollout_drill(const DrillOptions& o, const std::function<void(const DrillPoint&)>& on_point) {
  if (o.restart) admin_call(o.admin_socket, "rollouts.resume", {{"stage", o.stage}});
  const json first = stage_status(o);
  if (const std::string state = first.value("state", std::string()); state != "ramping") {
    throw std::runtime_error(fmt::format(
        "stage '{}' is {} at {}%, not ramping; --restart resumes it from its first step", o.stage, state,
        first.value("percent", 0)));
  }
  DrillResult r;
  Tally tally;
  tally.result = &r;
  std::atomic<bool> stop{false};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < o.connections; ++i) threads.emplace_back([&] { load(o, tally, stop); });

  std::optional<DrillPoint> printed;
  double next_second = 0;
  try {
    while (true) {
      const json s = stage_status(o);
      const auto now = Clock::now();
      const double t = std::chrono::duration<double>(now - start).count();
      DrillPoint p = point_of(s, t);
      const bool changed = !printed || p.percent != printed->percent || p.state != printed->state ||
                           p.decision != printed->decision;
      if (changed || t >= next_second) {
        r.timeline.push_back(p);
        if (on_point) on_point(p);
        printed = p;
        next_second = std::floor(t) + 1;
      }
      if (p.state == "rolled_back" || p.state == "complete" || p.state == "paused") {
        r.outcome = p.state;
        r.seconds = t;
        r.last_decision = s.value("last_decision", json());
        if (p.state == "rolled_back") {
          const json f = r.last_decision.value("figures", json::object());
          r.trigger = f.value("trigger", std::string("operator"));
          r.from_percent = f.value("from_percent", 0);
          r.window_s = f.value("window", json::object()).value("seconds", 0.0);
          std::lock_guard lock(tally.m);
          tally.rolled_back_at = now;
        }
        break;
      }
      if (now - start >= o.timeout) {
        r.outcome = "timeout";
        r.seconds = t;
        break;
      }
      std::this_thread::sleep_for(o.poll);  // the poll schedule
    }
    // After a rollback the traffic goes on a little: nobody may get the injected fault now.
    if (r.outcome == "rolled_back") std::this_thread::sleep_for(o.after);
  } catch (...) {
    stop = true;
    for (auto& th : threads) th.join();
    throw;
  }
  stop = true;
  for (auto& th : threads) th.join();
  return r;
}

std::string drill_header(const DrillOptions& o) {
  return fmt::format("rollout drill: stage {}, {} connections x {} in flight, {}\n{:>8} {:>7}  {:<12} {:>15} {:>15}  {}",
                     o.stage, o.connections, o.inflight, o.method, "t_s", "percent", "state",
                     "canary(err/n)", "baseline(err/n)", "decision");
}

std::string format_drill_point(const DrillPoint& p) {
  return fmt::format("{:>8.2f} {:>6}%  {:<12} {:>15} {:>15}  {}", p.t_s, p.percent, p.state,
                     fmt::format("{}/{}", p.canary_errors, p.canary),
                     fmt::format("{}/{}", p.baseline_errors, p.baseline), p.decision.empty() ? "-" : p.decision);
}

std::string format_drill_summary(const DrillOptions& o, const DrillResult& r) {
  const std::string traffic =
      fmt::format("{} requests, {} ok, {} injected faults, {} injected after the rollback{}", r.requests, r.ok,
                  r.injected, r.injected_after_rollback,
                  r.client_failures ? fmt::format(", {} client failures ({})", r.client_failures, r.first_client_failure)
                                    : std::string());
  if (r.outcome == "rolled_back") {
    return fmt::format("summary: rolled back after {:.2f} s from {}% by {} (controller window {:.2f} s); {}",
                       r.seconds, r.from_percent, r.trigger, r.window_s, traffic);
  }
  if (r.outcome == "complete") return fmt::format("summary: ramp complete after {:.2f} s; {}", r.seconds, traffic);
  if (r.outcome == "paused") return fmt::format("summary: paused by an operator after {:.2f} s; {}", r.seconds, traffic);
  return fmt::format("summary: no rollback and no completed ramp of {} within {:.0f} s; {}", o.stage,
                     std::chrono::duration<double>(o.timeout).count(), traffic);
}

nlohmann::json drill_json(const DrillOptions& o, const DrillResult& r) {
  json timeline = json::array();
  for (const auto& p : r.timeline) {
    timeline.push_back({{"t_s", p.t_s},
                        {"percent", p.percent},
                        {"state", p.state},
                        {"canary", {{"requests", p.canary}, {"errors", p.canary_errors}}},
                        {"baseline", {{"requests", p.baseline}, {"errors", p.baseline_errors}}},
                        {"decision", p.decision}});
  }
  json codes = json::object();
  for (const auto& [code, n] : r.error_codes) codes[std::to_string(code)] = n;
  return {{"scenario", "rollout-drill"},
          {"options",
           {{"stage", o.stage},
            {"connections", o.connections},
            {"inflight", o.inflight},
            {"method", o.method},
            {"poll_ms", o.poll.count()}}},
          {"outcome", r.outcome},
          {"seconds", r.seconds},
          {"trigger", r.trigger},
          {"from_percent", r.from_percent},
          {"controller_window_s", r.window_s},
          {"last_decision", r.last_decision},
          {"requests", r.requests},
          {"ok", r.ok},
          {"error_codes", codes},
          {"injected", r.injected},
          {"injected_after_rollback", r.injected_after_rollback},
          {"client_failures", r.client_failures},
          {"timeline", timeline}};
}

}  // namespace drover::bench
