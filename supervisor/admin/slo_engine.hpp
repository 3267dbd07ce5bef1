// SloEngine: the SLO policy engine of shared/DESIGN.md section 7b (docs/OPERATIONS.md "SLO
// policies"). Every slo.eval_interval_ms it judges the objectives of the `slo` block over a
// sliding window of the requests droverd served (SloWindow over RequestPipeline::totals()) and
// lets each policy act through an SloActuator while an objective it watches is breached:
//
//   shed_low_priority    refuse low-priority requests (-32001 + retry_after_ms); stop after
//   tighten_admission    server.max_queue x factor; restored after
//   lower_batch_target   the batch queue's target batch time and size x factor; restored after
//   add_warm_spare       +1 warm spare, +1 more per cooldown while still breached (up to
//                        max_extra_spares); back to workers.warm_spares after
//   recycle_rss_growth   drain and replace a worker whose RSS grows faster than
//                        max_rss_growth_mb_per_min (RssGrowth); not tied to an objective
//
// The rule (z = 3.09, one-sided 99.9 %, confidence_bounds.hpp), per objective:
//   breached   when the window holds at least min_requests observations and the figure's lower
//              confidence bound is above the objective: latency_p95 / ttft_p95 by the order
//              statistic at rank n*0.95 - z*sqrt(n*0.95*0.05), error_ratio by Wilson's lower
//              bound. Noise at low counts cannot breach it; a real breach shows at once.
//   recovered  (hysteresis) only when the window's figure itself (p95: the upper edge of its
//              bucket; the error ratio) is below recover_ratio x the objective, or when the
//              window holds fewer than min_requests observations: there is no longer evidence
//              of a breach (the load went, or all of it is being shed), and an action kept on
//              without evidence could never end.
// Between the two lies a band where an objective stays as it is, so a figure hovering around
// the objective does not flap. Worked example (latency_p95_ms: 100, recover_ratio 0.8,
// min_requests 100): 200 requests with p95 130 ms whose lower bound is 115 ms -> breached;
// p95 then falls to 90 ms -> still breached (not below 80 ms); 75 ms -> recovered.
//
// A policy is breached while any objective it watches is (`slo: any`: every objective set).
// Entering applies its action, unless cooldown_s has not passed since its last action: it then
// waits, breached, until it has (and acts if still breached). Recovery reverts the action at
// once (restoring configured behaviour is never delayed). recycle_rss_growth flags a worker
// whose slope exceeds the bound and unflags it below recover_ratio x the bound; a flagged
// worker is recycled once, at most one worker per cooldown.
//
// dry_run: the same decisions, logged as "would ...", counted with mode="dry_run", and shown in
// slo.status, but the actuator is never called. Every action and reversal is logged with its
// figures and counted (drover_slo_actions_total{policy,action,mode}).
//
// configure() at start and on reload: a policy whose spec is unchanged keeps its state; a
// changed or removed one is reverted first (a changed one then starts afresh). An objective
// keeps its state while its value is unchanged. Supervisor thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/async_util.hpp"
#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/slo_config.hpp"
#include "supervisor/admin/rss_growth.hpp"
#include "supervisor/admin/slo_window.hpp"
#include "supervisor/pipeline/cohort_metrics.hpp"

namespace drover::supervisor {

// What the policies act on (droverd: SloEffectors; tests: a recorder). Each level action is set
// to "in force" or back to the configured behaviour; calls only come on a change.
class SloActuator {
 public:
  virtual ~SloActuator() = default;
  // nullopt: stop shedding.
  virtual void shed_low_priority(std::optional<std::int64_t> retry_after_ms) = 0;
  // factor 1.0 restores the configured value.
  virtual void tighten_admission(double factor) = 0;
  virtual void lower_batch_target(double factor) = 0;
  // Spares on top of workers.warm_spares; 0 restores.
  virtual void set_extra_spares(int extra) = 0;
  // Drain worker `id` and replace it (workers.drain); an error text, empty on success.
  virtual std::string recycle_worker(int id) = 0;
};

class SloEngine {
 public:
  static constexpr double kZ = 3.09;
  static constexpr double kQuantile = 0.95;

  using TotalsSource = std::function<const CohortStats&()>;
  using RssSource = std::function<std::vector<WorkerRss>()>;

  // `actuator` and `clock` must outlive the engine.
  SloEngine(SloActuator& actuator, TotalsSource totals, RssSource rss,
            const Clock& clock = real_clock());
  SloEngine(const SloEngine&) = delete;
  SloEngine& operator=(const SloEngine&) = delete;

  void configure(const SloConfig& config);
  // Judges the objectives and policies now.
  void tick();
  // Ticks every slo.eval_interval_ms on `io` until destroyed.
  void start(asio::io_context& io);

  // slo.status: the window, each objective, each policy with its last decision.
  nlohmann::json status() const;
  void register_metrics(metrics::Registry& registry);

  // For tests.
  bool breached(SloTarget t) const { return objectives_[static_cast<std::size_t>(t)].breached; }
  // Whether a policy's action is in force (or would be, in dry run).
  bool active(SloAction a) const;
  // Actions counted for a policy: `action` apply, revert or recycle; mode applied or dry_run.
  std::uint64_t count(SloAction a, const std::string& action, const std::string& mode) const;

 private:
  // One objective's figures over the current window.
  struct Evidence {
    std::uint64_t samples = 0;
    double figure = 0;       // p95 seconds or error ratio; 0 without samples
    double lower_bound = 0;  // of the figure
  };
  struct Objective {
    double target = 0;  // 0: not set
    bool breached = false;
    Evidence evidence;
  };
  struct Policy {
    SloPolicySpec spec;
    bool active = false;  // action in force (or would be: dry run)
    int level = 0;        // add_warm_spare: extra spares in force
    std::optional<Clock::time_point> last_action;
    bool waiting_logged = false;  // a cooldown wait is logged once
    std::set<int> flagged;        // recycle_rss_growth: pids over the bound
    std::set<int> recycled;       // ... of which acted on
    nlohmann::json last_decision;
    std::optional<Clock::time_point> decided_at;
  };

  Evidence evidence_of(SloTarget t, const CohortStats& window) const;
  void judge_objective(SloTarget t, Objective& o, const CohortStats& window);
  bool watched_breached(const Policy& p) const;
  void judge_level_policy(Policy& p, Clock::time_point now);
  void judge_recycle(Policy& p, Clock::time_point now);
  bool cooling(const Policy& p, Clock::time_point now) const;
  // Applies (level > 0) or reverts (level 0) a level policy's action, or only says it would.
  void actuate(Policy& p, int level);
  void record(Policy& p, const std::string& action, nlohmann::json figures, Clock::time_point now);
  nlohmann::json figures_of(const Policy& p) const;
  void arm();

  SloActuator& actuator_;
  TotalsSource totals_;
  RssSource rss_source_;
  const Clock& clock_;
  SloConfig config_;
  SloWindow window_;
  RssGrowth rss_;
  std::array<Objective, kSloTargetNames.size()> objectives_{};
  std::map<SloAction, Policy> policies_;
  // Actions by (policy, action, mode); kept across reloads, as Prometheus counters must be.
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> counts_;
  std::unique_ptr<asio::steady_timer> timer_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
