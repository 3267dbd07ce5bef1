#include "supervisor/pipeline/in_flight_table.hpp"

namespace drover::supervisor {

std::shared_ptr<SharedExecution> InFlightTable::find_running(const std::string& key,
                                                             bool stream) const {
  const auto it = running_.find({key, stream});
  return it == running_.end() ? nullptr : it->second;
}

bool InFlightTable::add_running(const std::string& key, bool stream,
                                std::shared_ptr<SharedExecution> run, const Limits& limits,
                                Clock::time_point now) {
  if (size() >= limits.max_entries) purge(now);
  if (size() >= limits.max_entries) return false;
  running_[{key, stream}] = std::move(run);
  return true;
}

void InFlightTable::remove_running(const std::string& key, bool stream,
                                   const SharedExecution* run) {
  const auto it = running_.find({key, stream});
  if (it != running_.end() && it->second.get() == run) running_.erase(it);
}

void InFlightTable::remember(const std::string& key, proto::worker::GenerateResult result,
                             int worker_slot,
                             const Limits& limits, Clock::time_point now) {
  if (limits.ttl <= Clock::duration::zero()) return;
  if (size() >= limits.max_entries) purge(now);
  if (size() >= limits.max_entries && !recent_.contains(key)) return;
  recent_[key] = Recent{std::move(result), worker_slot, now + limits.ttl};
}

const InFlightTable::Recent* InFlightTable::find_recent(const std::string& key,
                                                        Clock::time_point now) {
  const auto it = recent_.find(key);
  if (it == recent_.end()) return nullptr;
  if (it->second.expires <= now) {
    recent_.erase(it);
    return nullptr;
  }
  return &it->second;
}

void InFlightTable::purge(Clock::time_point now) {
  std::erase_if(recent_, [now](const auto& kv) { return kv.second.expires <= now; });
}

}  // namespace drover::supervisor
