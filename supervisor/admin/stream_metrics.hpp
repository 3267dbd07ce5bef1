// StreamMetrics: the metric families of stream flow control — what clients leave unread
// (buffered bytes, coalescing, slow-consumer cancels; frontend/stream_flow.hpp) and the
// stream concurrency limit (pipeline/stream_limiter.hpp). Owned by the Supervisor beside the
// MetricsCollector; all values are read at scrape time by a collect hook, so the data plane
// keeps no second copy. Supervisor thread only (the hook runs inside Registry::expose()).
#pragma once

#include <functional>

#include "common/metrics.hpp"
#include "supervisor/frontend/listener.hpp"
#include "supervisor/frontend/stream_flow.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {

class StreamMetrics {
 public:
  // REQUIRES: pool, totals and whatever `buffered` reads outlive the registry's use of the hook.
  StreamMetrics(metrics::Registry& registry, const WorkerPool& pool,
                const StreamFlow::Counters& totals, std::function<Listener::Buffered()> buffered);

 private:
  void collect();

  const WorkerPool& pool_;
  const StreamFlow::Counters& totals_;
  std::function<Listener::Buffered()> buffered_;

  metrics::Gauge& buffered_bytes_;
  metrics::Gauge& buffered_bytes_max_;
  metrics::Gauge& connections_coalescing_;
  metrics::Counter& coalescing_episodes_;
  metrics::Counter& merged_frames_;
  metrics::Counter& merged_chunks_;
  metrics::Counter& slow_consumer_cancels_;
  metrics::Counter& reader_pauses_;
  metrics::Counter& backlog_closes_;
  metrics::Gauge& active_;
  metrics::Gauge& waiting_;
  metrics::Counter& waited_;
  metrics::Gauge& limit_total_;
  metrics::Family<metrics::Gauge>& limit_;
};

}  // namespace drover::supervisor
