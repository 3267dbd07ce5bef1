#include "supervisor/admin/rss_growth.hpp"

#include <set>

namespace drover::supervisor {

void RssGrowth::sample(const std::vector<WorkerRss>& workers, Clock::time_point now) {
  std::set<int> listed;
  for (const auto& w : workers) {
    if (w.pid <= 0 || w.rss_bytes <= 0) continue;
    listed.insert(w.pid);
    auto [it, added] = tracks_.try_emplace(w.pid);
    Track& t = it->second;
    if (added) t.first_seen = now;
    t.id = w.id;
    if (t.samples.empty() || now - t.samples.back().at >= span_ / kMaxSamples) {
      t.samples.push_back({now, w.rss_bytes});
    } else {
      t.samples.back().rss_bytes = w.rss_bytes;  // the latest value within the same spacing
    }
    while (!t.samples.empty() && now - t.samples.front().at > span_) t.samples.pop_front();
  }
  std::erase_if(tracks_, [&](const auto& kv) { return !listed.contains(kv.first); });
}

std::vector<RssGrowth::Growth> RssGrowth::judged(Clock::time_point now) const {
  std::vector<Growth> out;
  for (const auto& [pid, t] : tracks_) {
    if (now - t.first_seen < span_ || static_cast<int>(t.samples.size()) < kMinSamples) continue;
    // Least squares of rss (MiB) on time (minutes), centred on the first sample for precision.
    const double n = static_cast<double>(t.samples.size());
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (const auto& s : t.samples) {
      const double x = std::chrono::duration<double>(s.at - t.samples.front().at).count() / 60.0;
      const double y = static_cast<double>(s.rss_bytes) / (1024.0 * 1024.0);
      sx += x;
      sy += y;
      sxx += x * x;
      sxy += x * y;
    }
    const double denominator = n * sxx - sx * sx;
    if (denominator <= 0) continue;  // every sample at one instant
    out.push_back({t.id, pid, (n * sxy - sx * sy) / denominator, t.samples.back().rss_bytes,
                   static_cast<int>(t.samples.size())});
  }
  return out;
}

}  // namespace drover::supervisor
