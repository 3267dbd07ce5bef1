// RssGrowth: how fast each worker's resident set grows, for the SLO policy recycle_rss_growth
// (slo_engine.hpp). Per worker process (by pid, so a replaced worker starts afresh) it keeps the
// RSS samples of the last `span` and reports their least-squares slope in MiB per minute: one odd
// sample (a transient allocation) moves a fitted slope far less than a first-to-last difference.
//
// Minimum sample: a worker is judged only once it has been watched for a whole span and the span
// holds at least kMinSamples samples; a worker that just started (and is still loading and
// warming its model) is not judged on its start-up growth. Samples are kept at most one per
// span / kMaxSamples, so memory is bounded whatever the sampling rate.
// Pure: time is passed in. Supervisor thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "common/clock.hpp"

namespace drover::supervisor {

// One worker's RSS as the pool last heard it (heartbeats carry it).
struct WorkerRss {
  int id = 0;
  int pid = 0;
  std::int64_t rss_bytes = 0;  // <= 0: not reported yet
};

class RssGrowth {
 public:
  static constexpr int kMinSamples = 5;
  static constexpr int kMaxSamples = 120;

  explicit RssGrowth(Clock::duration span) : span_(span) {}
  void set_span(Clock::duration span) { span_ = span; }

  // Takes one reading of every worker; forgets processes no longer listed.
  void sample(const std::vector<WorkerRss>& workers, Clock::time_point now);

  struct Growth {
    int id = 0;
    int pid = 0;
    double mib_per_min = 0;
    std::int64_t rss_bytes = 0;  // the latest sample
    int samples = 0;
  };
  // The workers that can be judged now (see the minimum sample above), by pid.
  std::vector<Growth> judged(Clock::time_point now) const;

 private:
  struct Sample {
    Clock::time_point at;
    std::int64_t rss_bytes;
  };
  struct Track {
    int id = 0;
    Clock::time_point first_seen;
    std::deque<Sample> samples;
  };
  Clock::duration span_;
  std::map<int, Track> tracks_;  // by pid
};

}  // namespace drover::supervisor
