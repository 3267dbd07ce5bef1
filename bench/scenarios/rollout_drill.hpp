// The `rollout-drill` scenario (docs/OPERATIONS.md "Canary rollouts", "Drill"): drives traffic
// through droverd while its canary controller ramps a stage, polls `rollouts.status` on the
// admin socket, and prints the timeline — time, percent, state, the current window's canary and
// baseline counts, the last decision — until the stage is rolled back or its ramp completes,
// then a summary line with the time it took. With a faulty stage (fault_injection aborting or
// delaying its cohort) it measures the time to rollback and checks that no request sent after
// the rollback got the injected error; with a healthy one, the time to ramp to 100 %.
//
// Threads: `connections` load threads, each with its own connection keeping `inflight`
// requests pipelined, and the caller's thread polling the admin socket. The load threads only
// count (under one mutex) and stop when the drill ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace drover::bench {

struct DrillOptions {
  std::string socket;        // droverd's client socket
  std::string admin_socket;  // droverd's admin socket
  std::string stage = "fault_injection";
  int connections = 2;
  int inflight = 8;
  std::string method = "generate";  // or tokenize
  int max_tokens = 8;
  std::chrono::milliseconds poll{250};
  std::chrono::milliseconds timeout{120'000};  // the drill fails when nothing happens by then
  // Traffic kept up after a rollback, to check that nobody gets the injected error any more.
  std::chrono::milliseconds after{1000};
  // Call rollouts.resume first (a rolled-back or paused stage starts again at its first step).
  bool restart = false;
};

// One line of the timeline: a poll whose percent, state or decision differed from the last
// printed one, or the first poll of a new second.
struct DrillPoint {
  double t_s = 0;
  int percent = 0;
  std::string state;
  std::uint64_t canary = 0, canary_errors = 0, baseline = 0, baseline_errors = 0;
  std::string decision;  // last decision's action (trigger)
};

struct DrillResult {
  std::string outcome;  // rolled_back, complete, paused, timeout
  double seconds = 0;   // from the drill's start to the poll that saw the outcome
  std::string trigger;  // rolled_back: the trigger that fired
  int from_percent = 0;
  double window_s = 0;  // rolled_back: the window the controller judged, from its figures
  nlohmann::json last_decision;
  std::vector<DrillPoint> timeline;
  std::uint64_t requests = 0, ok = 0, injected = 0;
  std::map<int, std::uint64_t> error_codes;
  // Requests sent after the rollback was seen that still got the injected fault: must be 0.
  std::uint64_t injected_after_rollback = 0;
  std::uint64_t client_failures = 0;
  std::string first_client_failure;

  bool failed() const;
};

// Runs the drill; `on_point` (optional) sees each timeline point as it is taken (text output
// prints them live). Throws std::runtime_error when the admin socket does not answer or the
// stage has no rollout.
DrillResult run_rollout_drill(const DrillOptions& options,
                              const std::function<void(const DrillPoint&)>& on_point = {});

// The timeline's header and one line of it; the summary after it.
std::string drill_header(const DrillOptions& options);
std::string format_drill_point(const DrillPoint& point);
std::string format_drill_summary(const DrillOptions& options, const DrillResult& result);
nlohmann::json drill_json(const DrillOptions& options, const DrillResult& result);

}  // namespace drover::bench
