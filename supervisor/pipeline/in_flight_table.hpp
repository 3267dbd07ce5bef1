// InFlightTable: the request deduplication / stream coalescing index. Maps a deterministic
// request key (request_key.hpp) to
//  - the run of it in progress, per mode (unary runs are shared by unary requests, streamed
//    runs by streaming requests), and
//  - for request_deduplication.ttl after a unary run succeeded, its result, so an identical
//    request arriving just after is still answered without a run ("a result still answers
//    identical requests for ttl_ms after it"). Errors are never remembered.
// Both kinds count against max_entries; when the table is full a new run is simply not shared
// (it still runs). Time is passed in. Owned by the RequestPipeline; supervisor thread only.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "supervisor/pipeline/shared_execution.hpp"

namespace drover::supervisor {

class InFlightTable {
 public:
  using Clock = std::chrono::steady_clock;

  struct Limits {
    std::size_t max_entries = 10'000;
    Clock::duration ttl = std::chrono::milliseconds(1000);
  };

  struct Recent {
    proto::worker::GenerateResult result;
    int worker_slot = -1;
    Clock::time_point expires;
  };

  std::shared_ptr<SharedExecution> find_running(const std::string& key, bool stream) const;
  // false (and nothing stored) when the table holds max_entries already.
  bool add_running(const std::string& key, bool stream, std::shared_ptr<SharedExecution> run,
                   const Limits& limits, Clock::time_point now);
  // Removes `key`'s run if it is still `run` (a newer run under the same key stays).
  void remove_running(const std::string& key, bool stream, const SharedExecution* run);

  // Keeps a unary run's result for limits.ttl (not when ttl is 0 or the table is full).
  void remember(const std::string& key, proto::worker::GenerateResult result, int worker_slot, const Limits& limits,
                Clock::time_point now);
  // A remembered result younger than its ttl, or nullptr.
  const Recent* find_recent(const std::string& key, Clock::time_point now);

  std::size_t running() const { return running_.size(); }
  std::size_t recent() const { return recent_.size(); }

 private:
  std::size_t size() const { return running_.size() + recent_.size(); }
  // Drops expired results; when the table is full, first.
  void purge(Clock::time_point now);

  std::map<std::pair<std::string, bool>, std::shared_ptr<SharedExecution>> running_;
  std::unordered_map<std::string, Recent> recent_;
};

}  // namespace drover::supervisor
