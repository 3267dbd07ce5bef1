// RolloutController: the canary controller of shared/DESIGN.md section 7b. For each stage named
// in the `rollouts` block it ramps the stage's rollout percentage through `steps`, judging the
// stage's canary cohort (requests in the rollout) against its baseline cohort (requests out of
// it, served at the same time) from the CohortMetrics, as Argo Rollouts / Flagger step weights
// and Kayenta's cohort-vs-cohort judgement do, but per request inside droverd.
//
// Per ramping stage, on every tick (every 250 ms in droverd; unit tests call tick() with a fake
// clock), over the current step's window:
//   - a trigger that fires rolls the stage back to 0 % at once, logs the figures, counts it, and
//     leaves the stage `rolled_back` until an operator acts (resume ramps again from the first
//     step, set / rollback move it by hand);
//   - else, once step_interval_s has passed: with at least min_requests canary requests the
//     stage moves to the next step (`complete` at 100 %, judged no more); with fewer it holds
//     and the window keeps growing until it has them.
//
// The rule that keeps noise from firing a trigger (z = 3.09, one-sided 99.9 %):
//   error_ratio_x  canary >= min_requests and WilsonLower(canary errors) >
//                  x * WilsonUpper(baseline errors)
//   crash_ratio    canary >= min_requests and WilsonLower(canary -32003s) > crash_ratio and
//                  > WilsonUpper(baseline -32003s)
//   p95_x, ttft_p95_x  both cohorts >= min_requests; the canary p95's lower confidence bound
//                  (the order statistic at rank n*0.95 - z*sqrt(n*0.95*0.05), lower bucket
//                  edge) > x * the baseline p95's upper bound (rank n*0.95 + z*sqrt(...), upper
//                  bucket edge): distribution-free, no normality assumed
//   rss_growth_pct_per_h  droverd's RSS growth since the ramp (re)started, per hour, judged
//                  once the ramp has run 5 minutes (shorter windows extrapolate noise)
// Each bound is conservative on both sides, so a cohort must be clearly worse, not merely
// unlucky; docs/OPERATIONS.md "Canary rollouts" has the measured false-positive rate.
//
// dry_run: decisions are made, logged and counted as usual, but no percentage changes (a
// would-be rollback restarts the window so it is not logged on every tick).
//
// The controlled percentages are written into the live FeatureFlagsConfig (the Supervisor's),
// where every stage reads them; a config reload keeps each kept stage's state (configure()).
// Supervisor thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/async_util.hpp"
#include "common/clock.hpp"
#include "common/config.hpp"
#include "common/metrics.hpp"
#include "supervisor/admin/confidence_bounds.hpp"
#include "supervisor/pipeline/cohort_metrics.hpp"

namespace drover::supervisor {

class RolloutController {
 public:
  enum class State { ramping, complete, paused, rolled_back };
  static constexpr double kZ = 3.09;
  static constexpr std::chrono::minutes kRssMinWindow{5};

  // Reads the process RSS in bytes (droverd: /proc/self/statm); 0 when unknown.
  using RssSource = std::function<std::uint64_t()>;

  // `cohorts`, `flags` and `clock` must outlive the controller.
  RolloutController(CohortMetrics& cohorts, FeatureFlagsConfig& flags, RssSource rss,
                    const Clock& clock = real_clock());
  RolloutController(const RolloutController&) = delete;
  RolloutController& operator=(const RolloutController&) = delete;

  // Takes the `rollouts` block (at start and on every reload): a new stage starts ramping at its
  // first step, a kept stage keeps its percentage and state under its new spec, a stage no longer
  // named is let go (its feature_flags value applies again). Then writes the percentages.
  void configure(const RolloutsConfig& rollouts);
  // Writes the controlled percentages into `flags` (a reloaded configuration's, before it is
  // diffed and installed).
  void apply(FeatureFlagsConfig& flags) const;

  // Judges every ramping stage now.
  void tick();
  // Ticks every `period` on `io` until destroyed.
  void start(asio::io_context& io, Clock::duration period = std::chrono::milliseconds(250));

  // Operator actions; an empty string on success, else why not (unknown stage, bad percent).
  std::string pause(const std::string& stage);
  std::string resume(const std::string& stage);
  std::string set(const std::string& stage, int percent);
  std::string rollback(const std::string& stage);

  // {STAGE: {percent, state, step, steps, dry_run, window: {...}, last_decision, counts}}.
  nlohmann::json status() const;
  void register_metrics(metrics::Registry& registry);

  // For tests.
  std::optional<int> percent(const std::string& stage) const;
  std::optional<State> state(const std::string& stage) const;
  std::uint64_t rollbacks(const std::string& stage) const;

 private:
  struct StageState {
    Stage stage{};
    RolloutSpec spec;
    int percent = 0;
    std::size_t step = 0;  // index into spec.steps of the current percent (or the last below it)
    State state = State::ramping;
    Clock::time_point window_start{};
    std::array<CohortStats, 2> at_window_start{};  // [baseline, canary]
    Clock::time_point ramp_start{};
    std::uint64_t rss_at_ramp_start = 0;
    nlohmann::json last_decision;
    std::uint64_t advances = 0;
    std::uint64_t rollbacks = 0;
    std::uint64_t dry_run_rollbacks = 0;
  };
  // The trigger that fired and its figures.
  struct Verdict {
    std::string trigger;
    nlohmann::json figures;
  };

  void judge(const std::string& name, StageState& s, Clock::time_point now);
  std::optional<Verdict> check_triggers(const StageState& s, const CohortStats& canary,
                                        const CohortStats& baseline, Clock::time_point now) const;
  void restart_window(StageState& s, Clock::time_point now);
  void restart_ramp(StageState& s, Clock::time_point now);
  void decide(StageState& s, std::string action, nlohmann::json figures);
  void publish();
  StageState* find(const std::string& stage);
  void arm(Clock::duration period);

  CohortMetrics& cohorts_;
  FeatureFlagsConfig& flags_;
  RssSource rss_;
  const Clock& clock_;
  std::map<std::string, StageState> stages_;
  std::unique_ptr<asio::steady_timer> timer_;
  std::shared_ptr<spdlog::logger> log_;
};

std::string_view to_string(RolloutController::State s);

}  // namespace drover::supervisor
