#include "supervisor/admin/slo_engine.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/log.hpp"
#include "supervisor/admin/confidence_bounds.hpp"

namespace drover::supervisor {
using nlohmann::json;

namespace {

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

const char* mode_of(const SloPolicySpec& s) { return s.dry_run ? "dry_run" : "applied"; }

// A figure as an operator reads it: latencies in ms, the error ratio as it is.
std::string show(SloTarget t, double v) {
  return t == SloTarget::error_ratio ? fmt::format("{:.4f}", v) : fmt::format("{:.1f} ms", v * 1000.0);
}

// What a level policy's action does, for the log: `on` applying it, else reverting it.
std::string describe(const SloPolicySpec& s, bool on, int level) {
  switch (s.action) {
    case SloAction::shed_low_priority:
      return on ? fmt::format("shed low-priority requests (-32001, retry_after_ms {})", s.retry_after_ms)
                : "stop shedding low-priority requests";
    case SloAction::tighten_admission:
      return on ? fmt::format("tighten admission to server.max_queue x {}", s.factor)
                : "restore admission to server.max_queue";
    case SloAction::lower_batch_target:
      return on ? fmt::format("lower the batch target time and size x {}", s.factor)
                : "restore the batch target time and size";
    case SloAction::add_warm_spare:
      return on ? fmt::format("add a warm spare ({} extra of at most {})", level, s.max_extra_spares)
                : "remove the extra warm spares";
    case SloAction::recycle_rss_growth:
      break;
  }
  return "recycle a worker";
}

}  // namespace

SloEngine::SloEngine(SloActuator& actuator, TotalsSource totals, RssSource rss, const Clock& clock)
    : actuator_(actuator),
      totals_(std::move(totals)),
      rss_source_(std::move(rss)),
      clock_(clock),
      window_(config_.window),
      rss_(config_.window),
      log_(component_logger("slo")) {}

void SloEngine::configure(const SloConfig& next) {
  for (std::size_t i = 0; i < objectives_.size(); ++i) {
    const double target = next.target(static_cast<SloTarget>(i));
    if (objectives_[i].target != target) objectives_[i] = Objective{target, false, {}};
  }
  const auto now = clock_.now();
  for (auto it = policies_.begin(); it != policies_.end();) {
    Policy& p = it->second;
    if (std::find(next.policies.begin(), next.policies.end(), p.spec) != next.policies.end()) {
      ++it;
      continue;
    }
    if (p.active && p.spec.action != SloAction::recycle_rss_growth) {
      actuate(p, 0);
      record(p, "revert", json{{"reason", "the policy was changed or removed by a reload"}}, now);
    }
    log_->info("SLO policy {} changed or removed by a reload", to_string(p.spec.action));
    it = policies_.erase(it);
  }
  for (const auto& spec : next.policies) {
    if (policies_.try_emplace(spec.action, Policy{spec}).second) {
      log_->info("SLO policy {} configured{}", to_string(spec.action), spec.dry_run ? " (dry run)" : "");
    }
  }
  const bool was_enabled = config_.enabled();
  config_ = next;
  window_.set_span(config_.window);
  rss_.set_span(config_.window);
  if (config_.enabled() && !was_enabled && totals_) {
    // The window starts now: requests served while no policy watched are not judged.
    window_.reset();
    window_.update(totals_(), now);
  }
}

SloEngine::Evidence SloEngine::evidence_of(SloTarget t, const CohortStats& w) const {
  Evidence e;
  if (t == SloTarget::error_ratio) {
    e.samples = w.requests;
    if (e.samples == 0) return e;
    e.figure = static_cast<double>(w.errors) / static_cast<double>(w.requests);
    e.lower_bound = wilson_lower(w.errors, w.requests, kZ);
    return e;
  }
  const LatencyHistogram& h = t == SloTarget::latency_p95 ? w.latency : w.ttft;
  e.samples = h.count();
  if (e.samples == 0) return e;
  e.figure = h.quantile_s(kQuantile);
  e.lower_bound = quantile_lower_s(h, kQuantile, kZ);
  return e;
}

void SloEngine::judge_objective(SloTarget t, Objective& o, const CohortStats& w) {
  const Evidence e = evidence_of(t, w);
  o.evidence = e;
  const auto min = static_cast<std::uint64_t>(config_.min_requests);
  const double window_s = secs(window_.covered());
  if (!o.breached) {
    if (e.samples >= min && e.lower_bound > o.target) {
      o.breached = true;
      log_->warn("SLO {} breached: {} (lower bound {}) above the objective {}, {} samples over {:.1f} s",
                 to_string(t), show(t, e.figure), show(t, e.lower_bound), show(t, o.target), e.samples,
                 window_s);
    }
    return;
  }
  if (e.samples < min) {
    o.breached = false;
    log_->info("SLO {} no longer breached: {} samples over {:.1f} s, fewer than min_requests {}",
               to_string(t), e.samples, window_s, min);
  } else if (e.figure < config_.recover_ratio * o.target) {
    o.breached = false;
    log_->info("SLO {} recovered: {} below recover_ratio {} x the objective {}, {} samples over {:.1f} s",
               to_string(t), show(t, e.figure), config_.recover_ratio, show(t, o.target), e.samples,
               window_s);
  }
}

bool SloEngine::watched_breached(const Policy& p) const {
  if (p.spec.watch) return objectives_[static_cast<std::size_t>(*p.spec.watch)].breached;
  for (const auto& o : objectives_) {
    if (o.target > 0 && o.breached) return true;
  }
  return false;
}

json SloEngine::figures_of(const Policy& p) const {
  json out = json::object();
  for (std::size_t i = 0; i < objectives_.size(); ++i) {
    const Objective& o = objectives_[i];
    if (o.target <= 0 || (p.spec.watch && static_cast<std::size_t>(*p.spec.watch) != i)) continue;
    out[std::string(kSloTargetNames[i])] = {{"figure", o.evidence.figure},
                                            {"lower_bound", o.evidence.lower_bound},
                                            {"objective", o.target},
                                            {"samples", o.evidence.samples},
                                            {"breached", o.breached}};
  }
  out["window_s"] = secs(window_.covered());
  return out;
}

bool SloEngine::cooling(const Policy& p, Clock::time_point now) const {
  return p.last_action && now - *p.last_action < p.spec.cooldown;
}

void SloEngine::actuate(Policy& p, int level) {
  p.level = level;
  p.active = level > 0;
  if (p.spec.dry_run) return;
  const bool on = level > 0;
  switch (p.spec.action) {
    case SloAction::shed_low_priority:
      actuator_.shed_low_priority(on ? std::optional<std::int64_t>(p.spec.retry_after_ms) : std::nullopt);
      break;
    case SloAction::tighten_admission:
      actuator_.tighten_admission(on ? p.spec.factor : 1.0);
      break;
    case SloAction::lower_batch_target:
      actuator_.lower_batch_target(on ? p.spec.factor : 1.0);
      break;
    case SloAction::add_warm_spare:
      actuator_.set_extra_spares(level);
      break;
    case SloAction::recycle_rss_growth:
      break;  // one-shot, by judge_recycle
  }
}

void SloEngine::record(Policy& p, const std::string& action, json figures, Clock::time_point now) {
  const char* mode = mode_of(p.spec);
  ++counts_[{std::string(to_string(p.spec.action)), action, mode}];
  p.last_decision = {{"action", action}, {"mode", mode}, {"level", p.level}, {"figures", std::move(figures)}};
  p.decided_at = now;
}

void SloEngine::judge_level_policy(Policy& p, Clock::time_point now) {
  const std::string name(to_string(p.spec.action));
  const char* would = p.spec.dry_run ? "would " : "";
  const char* dry = p.spec.dry_run ? " (dry run)" : "";
  if (!watched_breached(p)) {
    p.waiting_logged = false;
    if (!p.active) return;
    const std::string what = describe(p.spec, false, 0);
    actuate(p, 0);
    record(p, "revert", figures_of(p), now);
    log_->info("SLO policy {} {}{}{}: {}", name, would, what, dry, p.last_decision["figures"].dump());
    return;
  }
  const int top = p.spec.action == SloAction::add_warm_spare ? p.spec.max_extra_spares : 1;
  if (p.level >= top) return;
  if (cooling(p, now)) {
    if (!p.waiting_logged) {
      log_->info("SLO policy {} holds: breached, but its cooldown of {} s has {:.1f} s to run", name,
                 p.spec.cooldown.count(), secs(p.spec.cooldown - (now - *p.last_action)));
      p.waiting_logged = true;
    }
    return;
  }
  p.waiting_logged = false;
  actuate(p, p.level + 1);
  p.last_action = now;
  record(p, "apply", figures_of(p), now);
  log_->warn("SLO policy {} {}{}{}: {}", name, would, describe(p.spec, true, p.level), dry,
             p.last_decision["figures"].dump());
}

void SloEngine::judge_recycle(Policy& p, Clock::time_point now) {
  const double bound = p.spec.max_rss_growth_mb_per_min;
  const auto judged = rss_.judged(now);
  std::set<int> present;
  for (const auto& g : judged) {
    present.insert(g.pid);
    if (!p.flagged.contains(g.pid) && g.mib_per_min > bound) {
      p.flagged.insert(g.pid);
      log_->warn("worker_id={} pid={} RSS grows {:.2f} MiB/min, above the bound {} (SLO policy recycle_rss_growth)",
                 g.id, g.pid, g.mib_per_min, bound);
    } else if (p.flagged.contains(g.pid) && g.mib_per_min < config_.recover_ratio * bound) {
      p.flagged.erase(g.pid);
      p.recycled.erase(g.pid);
      log_->info("worker_id={} pid={} RSS growth {:.2f} MiB/min is back below recover_ratio x the bound",
                 g.id, g.pid, g.mib_per_min);
    }
  }
  std::erase_if(p.flagged, [&](int pid) { return !present.contains(pid); });
  std::erase_if(p.recycled, [&](int pid) { return !present.contains(pid); });
  p.active = !p.flagged.empty();
  for (const auto& g : judged) {
    if (!p.flagged.contains(g.pid) || p.recycled.contains(g.pid)) continue;
    if (cooling(p, now)) {
      if (!p.waiting_logged) {
        log_->info("SLO policy recycle_rss_growth holds worker_id={}: its cooldown of {} s has {:.1f} s to run",
                   g.id, p.spec.cooldown.count(), secs(p.spec.cooldown - (now - *p.last_action)));
        p.waiting_logged = true;
      }
      return;
    }
    p.waiting_logged = false;
    json figures = {{"worker_id", g.id},
                    {"pid", g.pid},
                    {"rss_mib", static_cast<double>(g.rss_bytes) / (1024.0 * 1024.0)},
                    {"growth_mib_per_min", g.mib_per_min},
                    {"max_rss_growth_mb_per_min", bound},
                    {"samples", g.samples},
                    {"window_s", config_.window.count()}};
    p.recycled.insert(g.pid);
    p.last_action = now;
    if (!p.spec.dry_run) {
      if (std::string error = actuator_.recycle_worker(g.id); !error.empty()) figures["error"] = error;
    }
    record(p, "recycle", figures, now);
    log_->warn("SLO policy recycle_rss_growth {} worker_id={}{}: {}",
               p.spec.dry_run ? "would drain and replace" : "drains and replaces", g.id,
               p.spec.dry_run ? " (dry run)" : "", figures.dump());
    return;  // one worker per cooldown
  }
}

void SloEngine::tick() {
  if (!config_.enabled()) return;
  const auto now = clock_.now();
  const CohortStats& w = window_.update(totals_(), now);
  for (std::size_t i = 0; i < objectives_.size(); ++i) {
    if (objectives_[i].target > 0) judge_objective(static_cast<SloTarget>(i), objectives_[i], w);
  }
  if (policies_.contains(SloAction::recycle_rss_growth) && rss_source_) rss_.sample(rss_source_(), now);
  for (auto& [action, p] : policies_) {
    if (action == SloAction::recycle_rss_growth) {
      judge_recycle(p, now);
    } else {
      judge_level_policy(p, now);
    }
  }
}

bool SloEngine::active(SloAction a) const {
  const auto it = policies_.find(a);
  return it != policies_.end() && it->second.active;
}

std::uint64_t SloEngine::count(SloAction a, const std::string& action, const std::string& mode) const {
  const auto it = counts_.find({std::string(to_string(a)), action, mode});
  return it == counts_.end() ? 0 : it->second;
}

json SloEngine::status() const {
  const auto now = clock_.now();
  const CohortStats& w = window_.stats();
  json objectives = json::object();
  for (std::size_t i = 0; i < objectives_.size(); ++i) {
    const Objective& o = objectives_[i];
    if (o.target <= 0) continue;
    objectives[std::string(kSloTargetNames[i])] = {{"objective", o.target},
                                                   {"figure", o.evidence.figure},
                                                   {"lower_bound", o.evidence.lower_bound},
                                                   {"samples", o.evidence.samples},
                                                   {"breached", o.breached}};
  }
  json policies = json::object();
  for (const auto& [action, p] : policies_) {
    json j = {{"slo", action == SloAction::recycle_rss_growth ? json(nullptr)
                                                              : json(p.spec.watch ? to_string(*p.spec.watch) : "any")},
              {"dry_run", p.spec.dry_run},
              {"breached", action == SloAction::recycle_rss_growth ? !p.flagged.empty() : watched_breached(p)},
              {"active", p.active},
              {"level", p.level},
              {"cooldown_s", p.spec.cooldown.count()},
              {"cooldown_remaining_s", cooling(p, now) ? secs(p.spec.cooldown - (now - *p.last_action)) : 0.0},
              {"last_decision", p.last_decision}};
    if (p.decided_at) j["last_decision_age_s"] = secs(now - *p.decided_at);
    if (action == SloAction::recycle_rss_growth) j["flagged_pids"] = p.flagged;
    json counts = json::object();
    for (const auto& [key, n] : counts_) {
      const auto& [policy, act, mode] = key;
      if (policy == to_string(action)) counts[act + "_" + mode] = n;
    }
    j["counts"] = std::move(counts);
    policies[std::string(to_string(action))] = std::move(j);
  }
  return {{"enabled", config_.enabled()},
          {"window",
           {{"seconds", secs(window_.covered())},
            {"span_s", config_.window.count()},
            {"requests", w.requests},
            {"errors", w.errors}}},
          {"min_requests", config_.min_requests},
          {"recover_ratio", config_.recover_ratio},
          {"objectives", std::move(objectives)},
          {"policies", std::move(policies)}};
}

void SloEngine::register_metrics(metrics::Registry& r) {
  auto& breached = r.gauge("drover_slo_breached",
                           "1 while an SLO objective is breached by the engine's rule (confidence bound "
                           "above the objective; recovered below recover_ratio x it), else 0.",
                           {"slo"});
  auto& figure = r.gauge("drover_slo_window_figure",
                         "An SLO objective's figure over the sliding window: p95 in seconds "
                         "(latency_p95, ttft_p95) or the error ratio.",
                         {"slo"});
  auto& objective = r.gauge("drover_slo_objective", "An SLO objective as configured (seconds or ratio).",
                            {"slo"});
  auto& active = r.gauge("drover_slo_policy_active",
                         "1 while an SLO policy's action is in force (or would be, in dry run).",
                         {"policy"});
  auto& actions = r.counter("drover_slo_actions_total",
                            "SLO policy actions (apply, revert, recycle), applied or only decided in "
                            "dry run.",
                            {"policy", "action", "mode"});
  r.add_collect_hook([this, &breached, &figure, &objective, &active, &actions] {
    for (std::size_t i = 0; i < objectives_.size(); ++i) {
      const Objective& o = objectives_[i];
      if (o.target <= 0) continue;
      const std::string name(kSloTargetNames[i]);
      breached.with({name}).set(o.breached ? 1 : 0);
      figure.with({name}).set(o.evidence.figure);
      objective.with({name}).set(o.target);
    }
    for (const auto& [action, p] : policies_) active.with({std::string(to_string(action))}).set(p.active ? 1 : 0);
    for (const auto& [key, n] : counts_) {
      const auto& [policy, act, mode] = key;
      actions.with({policy, act, mode}).set_total(static_cast<double>(n));
    }
  });
}

void SloEngine::start(asio::io_context& io) {
  timer_ = std::make_unique<asio::steady_timer>(io);
  arm();
}

void SloEngine::arm() {
  timer_->expires_after(config_.eval_interval);
  timer_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    tick();
    arm();
  });
}

}  // namespace drover::supervisor
