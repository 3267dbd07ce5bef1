#include "supervisor/admin/rollout_controller.hpp"

#include <algorithm>
#include <cmath>

#include "common/log.hpp"

namespace drover::supervisor {
using nlohmann::json;

namespace {

constexpr double kQuantile = 0.95;

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::optional<Stage> stage_of(const std::string& name) {
  for (std::size_t i = 0; i < kRolloutStages.size(); ++i) {
    if (kRolloutStages[i] == name) return static_cast<Stage>(i);
  }
  return std::nullopt;
}

json cohort_json(const CohortStats& c) {
  return {{"requests", c.requests}, {"errors", c.errors}, {"crashes", c.crashes}};
}

}  // namespace

std::string_view to_string(RolloutController::State s) {
  switch (s) {
    case RolloutController::State::ramping:
      return "ramping";
    case RolloutController::State::complete:
      return "complete";
    case RolloutController::State::paused:
      return "paused";
    case RolloutController::State::rolled_back:
      return "rolled_back";
  }
  return "unknown";
}

RolloutController::RolloutController(CohortMetrics& cohorts, FeatureFlagsConfig& flags, RssSource rss,
                                     const Clock& clock)
    : cohorts_(cohorts), flags_(flags), rss_(std::move(rss)), clock_(clock),
      log_(component_logger("rollout")) {}

void RolloutController::configure(const RolloutsConfig& rollouts) {
  const auto now = clock_.now();
  std::erase_if(stages_, [&](const auto& kv) {
    if (rollouts.contains(kv.first)) return false;
    log_->info("rollout of {} is no longer controlled (left at feature_flags.{})", kv.first, kv.first);
    return true;
  });
  for (const auto& [name, spec] : rollouts) {
    const auto stage = stage_of(name);
    if (!stage) continue;  // validated by the config loader
    auto [it, added] = stages_.try_emplace(name);
    StageState& s = it->second;
    s.spec = spec;
    if (added) {
      s.stage = *stage;
      s.step = 0;
      s.percent = spec.steps.front();
      s.state = s.percent >= 100 ? State::complete : State::ramping;
      restart_ramp(s, now);
      decide(s, "start", json{{"percent", s.percent}});
    } else {
      // Under new steps, the step index is the last step at or below the current percent.
      s.step = 0;
      for (std::size_t i = 0; i < spec.steps.size(); ++i) {
        if (spec.steps[i] <= s.percent) s.step = i;
      }
    }
  }
  publish();
}

void RolloutController::apply(FeatureFlagsConfig& flags) const {
  for (const auto& [name, s] : stages_) FeatureFlags::rollout_field(flags, s.stage) = s.percent;
}

void RolloutController::publish() {
  apply(flags_);
  CohortMask mask = 0;
  for (const auto& [name, s] : stages_) mask |= cohort_bit(s.stage);
  cohorts_.set_controlled(mask);
}

void RolloutController::restart_window(StageState& s, Clock::time_point now) {
  s.window_start = now;
  s.at_window_start = {cohorts_.stats(s.stage, false), cohorts_.stats(s.stage, true)};
}

void RolloutController::restart_ramp(StageState& s, Clock::time_point now) {
  s.ramp_start = now;
  s.rss_at_ramp_start = rss_ ? rss_() : 0;
  restart_window(s, now);
}

void RolloutController::decide(StageState& s, std::string action, json figures) {
  s.last_decision = {{"action", std::move(action)},
                     {"percent", s.percent},
                     {"state", to_string(s.state)},
                     {"figures", std::move(figures)}};
}

void RolloutController::tick() {
  const auto now = clock_.now();
  for (auto& [name, s] : stages_) {
    if (s.state == State::ramping) judge(name, s, now);
  }
}

std::optional<RolloutController::Verdict> RolloutController::check_triggers(
    const StageState& s, const CohortStats& canary, const CohortStats& baseline,
    Clock::time_point now) const {
  const auto& t = s.spec.triggers;
  const auto min = static_cast<std::uint64_t>(s.spec.min_requests);
  if (canary.requests >= min) {
    if (t.error_ratio_x > 0) {
      const double lo = wilson_lower(canary.errors, canary.requests, kZ);
      const double hi = wilson_upper(baseline.errors, baseline.requests, kZ);
      if (lo > t.error_ratio_x * hi) {
        return Verdict{"error_ratio_x",
                       {{"canary_error_ratio_lower_bound", lo},
                        {"baseline_error_ratio_upper_bound", hi},
                        {"limit_x", t.error_ratio_x}}};
      }
    }
    if (t.crash_ratio > 0) {
      const double lo = wilson_lower(canary.crashes, canary.requests, kZ);
      const double hi = wilson_upper(baseline.crashes, baseline.requests, kZ);
      if (lo > t.crash_ratio && lo > hi) {
        return Verdict{"crash_ratio",
                       {{"canary_crash_ratio_lower_bound", lo},
                        {"baseline_crash_ratio_upper_bound", hi},
                        {"limit", t.crash_ratio}}};
      }
    }
  }
  auto quantile = [&](const char* name, double x, const LatencyHistogram& c,
                      const LatencyHistogram& b) -> std::optional<Verdict> {
    if (x <= 0 || c.count() < min || b.count() < min) return std::nullopt;
    const double lo = quantile_lower_s(c, kQuantile, kZ);
    const double hi = quantile_upper_s(b, kQuantile, kZ);
    if (lo <= x * hi) return std::nullopt;
    return Verdict{name, {{"canary_p95_lower_bound_s", lo}, {"baseline_p95_upper_bound_s", hi}, {"limit_x", x}}};
  };
  if (auto v = quantile("p95_x", t.p95_x, canary.latency, baseline.latency)) return v;
  if (auto v = quantile("ttft_p95_x", t.ttft_p95_x, canary.ttft, baseline.ttft)) return v;
  if (t.rss_growth_pct_per_h > 0 && rss_ && s.rss_at_ramp_start > 0 && now - s.ramp_start >= kRssMinWindow) {
    const double hours = secs(now - s.ramp_start) / 3600.0;
    const double start = static_cast<double>(s.rss_at_ramp_start);
    const double growth = (static_cast<double>(rss_()) - start) / start * 100.0 / hours;
    if (growth > t.rss_growth_pct_per_h) {
      return Verdict{"rss_growth_pct_per_h",
                     {{"rss_growth_pct_per_h", growth},
                      {"rss_bytes_at_ramp_start", s.rss_at_ramp_start},
                      {"limit", t.rss_growth_pct_per_h}}};
    }
  }
  return std::nullopt;
}

void RolloutController::judge(const std::string& name, StageState& s, Clock::time_point now) {
  const CohortStats canary = cohorts_.stats(s.stage, true).since(s.at_window_start[1]);
  const CohortStats baseline = cohorts_.stats(s.stage, false).since(s.at_window_start[0]);
  json window = {{"canary", cohort_json(canary)},
                 {"baseline", cohort_json(baseline)},
                 {"seconds", secs(now - s.window_start)}};
  if (auto v = check_triggers(s, canary, baseline, now)) {
    v->figures["window"] = std::move(window);
    v->figures["trigger"] = v->trigger;
    if (s.spec.dry_run) {
      ++s.dry_run_rollbacks;
      log_->warn("rollout of {} would roll back from {}% (dry run): {} fired: {}", name, s.percent,
                 v->trigger, v->figures.dump());
      decide(s, "would_roll_back", std::move(v->figures));
      restart_window(s, now);
      return;
    }
    ++s.rollbacks;
    log_->error("rollout of {} rolled back from {}% to 0% and paused: {} fired: {}", name,
                s.percent, v->trigger, v->figures.dump());
    v->figures["from_percent"] = s.percent;
    s.percent = 0;
    s.state = State::rolled_back;
    decide(s, "roll_back", std::move(v->figures));
    publish();
    return;
  }
  if (now - s.window_start < s.spec.step_interval) return;
  if (canary.requests < static_cast<std::uint64_t>(s.spec.min_requests)) {
    window["min_requests"] = s.spec.min_requests;
    if (s.last_decision.value("action", "") != "hold") {
      log_->info("rollout of {} holds at {}%: {} canary requests of the {} a step needs", name,
                 s.percent, canary.requests, s.spec.min_requests);
    }
    decide(s, "hold", std::move(window));
    return;
  }
  const auto next = std::upper_bound(s.spec.steps.begin(), s.spec.steps.end(), s.percent);
  const int to = next == s.spec.steps.end() ? 100 : *next;
  if (s.spec.dry_run) {
    log_->info("rollout of {} would advance from {}% to {}% (dry run): {}", name, s.percent, to, window.dump());
    decide(s, "would_advance", std::move(window));
    restart_window(s, now);
    return;
  }
  log_->info("rollout of {} advances from {}% to {}%: {}", name, s.percent, to, window.dump());
  window["from_percent"] = s.percent;
  ++s.advances;
  s.percent = to;
  s.step = static_cast<std::size_t>(next - s.spec.steps.begin());
  if (to >= 100) s.state = State::complete;
  decide(s, "advance", std::move(window));
  restart_window(s, now);
  publish();
}

RolloutController::StageState* RolloutController::find(const std::string& stage) {
  const auto it = stages_.find(stage);
  return it == stages_.end() ? nullptr : &it->second;
}

namespace {
std::string not_controlled(const std::string& stage) {
  return "stage '" + stage + "' has no rollout (the rollouts block names the stages the controller ramps)";
}
}  // namespace

std::string RolloutController::pause(const std::string& stage) {
  StageState* s = find(stage);
  if (!s) return not_controlled(stage);
  if (s->state == State::ramping) s->state = State::paused;
  log_->info("rollout of {} paused by operator at {}%", stage, s->percent);
  decide(*s, "operator_pause", nullptr);
  return {};
}

std::string RolloutController::resume(const std::string& stage) {
  StageState* s = find(stage);
  if (!s) return not_controlled(stage);
  const auto now = clock_.now();
  if (s->percent <= 0) {  // after a rollback: from the first step again
    s->step = 0;
    s->percent = s->spec.steps.front();
  }
  s->state = s->percent >= 100 ? State::complete : State::ramping;
  restart_ramp(*s, now);
  log_->info("rollout of {} resumed by operator at {}%", stage, s->percent);
  decide(*s, "operator_resume", nullptr);
  publish();
  return {};
}

std::string RolloutController::set(const std::string& stage, int percent) {
  StageState* s = find(stage);
  if (!s) return not_controlled(stage);
  if (percent < 0 || percent > 100) return "param 'percent' must be an integer in 0..100";
  const auto now = clock_.now();
  s->percent = percent;
  // Held where the operator put it; resume ramps on from there.
  s->state = percent >= 100 ? State::complete : State::paused;
  restart_ramp(*s, now);
  log_->info("rollout of {} set to {}% by operator", stage, percent);
  decide(*s, "operator_set", nullptr);
  publish();
  return {};
}

std::string RolloutController::rollback(const std::string& stage) {
  StageState* s = find(stage);
  if (!s) return not_controlled(stage);
  log_->warn("rollout of {} rolled back from {}% to 0% by operator", stage, s->percent);
  s->percent = 0;
  s->state = State::rolled_back;
  ++s->rollbacks;
  decide(*s, "operator_rollback", nullptr);
  publish();
  return {};
}

json RolloutController::status() const {
  json out = json::object();
  const auto now = clock_.now();
  for (const auto& [name, s] : stages_) {
    const CohortStats canary = cohorts_.stats(s.stage, true).since(s.at_window_start[1]);
    const CohortStats baseline = cohorts_.stats(s.stage, false).since(s.at_window_start[0]);
    out[name] = {{"percent", s.percent},
                 {"state", to_string(s.state)},
                 {"steps", s.spec.steps},
                 {"step_interval_s", s.spec.step_interval.count()},
                 {"min_requests", s.spec.min_requests},
                 {"dry_run", s.spec.dry_run},
                 {"window",
                  {{"seconds", secs(now - s.window_start)},
                   {"canary", cohort_json(canary)},
                   {"baseline", cohort_json(baseline)}}},
                 {"last_decision", s.last_decision},
                 {"advances_total", s.advances},
                 {"rollbacks_total", s.rollbacks},
                 {"dry_run_rollbacks_total", s.dry_run_rollbacks}};
  }
  return out;
}

void RolloutController::register_metrics(metrics::Registry& r) {
  auto& percent = r.gauge("drover_rollout_percent",
                          "Rollout percentage of a stage the canary controller ramps.", {"stage"});
  auto& state = r.gauge("drover_rollout_state",
                        "1 for the state a controlled stage is in (ramping, complete, paused, "
                        "rolled_back), 0 for the others.",
                        {"stage", "state"});
  auto& rollbacks = r.counter("drover_rollout_rollbacks_total",
                              "Rollbacks of a stage to 0 %, by its triggers or an operator.",
                              {"stage"});
  auto& advances = r.counter("drover_rollout_advances_total",
                             "Steps a stage's rollout moved up.", {"stage"});
  r.add_collect_hook([this, &percent, &state, &rollbacks, &advances] {
    for (const auto& [name, s] : stages_) {
      percent.with({name}).set(s.percent);
      for (State st : {State::ramping, State::complete, State::paused, State::rolled_back}) {
        state.with({name, std::string(to_string(st))}).set(s.state == st ? 1 : 0);
      }
      rollbacks.with({name}).set_total(static_cast<double>(s.rollbacks));
      advances.with({name}).set_total(static_cast<double>(s.advances));
    }
  });
}

void RolloutController::start(asio::io_context& io, Clock::duration period) {
  timer_ = std::make_unique<asio::steady_timer>(io);
  arm(period);
}

void RolloutController::arm(Clock::duration period) {
  timer_->expires_after(period);
  timer_->async_wait([this, period](boost::system::error_code ec) {
    if (ec) return;
    tick();
    arm(period);
  });
}

std::optional<int> RolloutController::percent(const std::string& stage) const {
  const auto it = stages_.find(stage);
  return it == stages_.end() ? std::nullopt : std::optional<int>(it->second.percent);
}

std::optional<RolloutController::State> RolloutController::state(const std::string& stage) const {
  const auto it = stages_.find(stage);
  return it == stages_.end() ? std::nullopt : std::optional<State>(it->second.state);
}

std::uint64_t RolloutController::rollbacks(const std::string& stage) const {
  const auto it = stages_.find(stage);
  return it == stages_.end() ? 0 : it->second.rollbacks;
}

}  // namespace drover::supervisor
