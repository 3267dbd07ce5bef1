// The `chaos` scenario: what clients see while workers die. A fault-free phase first (the
// reference throughput), then the same closed-loop load while a chaos thread kills a random
// ready worker every interval (SIGKILL with kill(2), as an outside OOM killer or operator would;
// or `workers.kill` over the admin socket). Every request must get exactly one answer: a lost
// reply shows as a reply timeout and a duplicate as a reply to an id not outstanding, both
// client failures, which fail the run. Afterwards it waits for the pool to be back to the size
// it had before and reports how long that took. Runs on the caller's thread plus one chaos
// thread that only talks to the admin socket and sends signals.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "bench/scenarios/throughput.hpp"

namespace drover::bench {

struct ChaosOptions {
  std::string admin_socket;  // drover-bench's default: droverd's (common/run_paths.hpp)
  std::chrono::milliseconds interval{1000};  // between kills
  std::chrono::milliseconds steady{5000};    // fault-free phase before the chaos phase
  bool via_admin = false;                    // workers.kill instead of kill(2)
  std::chrono::milliseconds recovery_timeout{30'000};
  unsigned seed = 1;  // which worker each kill picks
};

struct ChaosResult {
  ThroughputResult steady;
  ThroughputResult chaos;
  int workers_before = 0;  // ready workers before the chaos phase
  int workers_after = 0;   // ready workers at the end of the recovery wait
  int kills = 0;
  int kill_failures = 0;  // no ready worker to kill, or the kill itself failed
  std::string first_kill_failure;
  // Last kill -> every slot ready again; nullopt when the pool did not recover in time.
  std::optional<std::chrono::milliseconds> recovery;

  // Lost or duplicated answers (client failures), or no recovery: the run failed.
  bool failed() const;
};

ChaosResult run_chaos(const ThroughputOptions& load, const ChaosOptions& chaos);

std::string format_chaos_text(const ThroughputOptions& load, const ChaosOptions& chaos,
                              const ChaosResult& result);
nlohmann::json chaos_json(const ThroughputOptions& load, const ChaosOptions& chaos,
                          const ChaosResult& result);

}  // namespace drover::bench
