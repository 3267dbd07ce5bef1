// MetricsCollector: droverd's metric families (shared/DESIGN.md section 8) and where their
// values come from. Owned by the Supervisor; registers its families in the Supervisor's
// metrics::Registry.
//
// Two sources:
//  - events: on_request() is RequestHandler's observer, called once per generate, tokenize or
//    detokenize request when it is answered (refusals included). It feeds
//    drover_requests_total{method,outcome}, drover_request_duration_seconds{method} and
//    drover_ttft_seconds. This is the only metric code on the request path.
//  - snapshots: everything the pool and admission already count (PoolStats, PoolCounts,
//    WorkerPool::snapshot(), Admission) is read at scrape time by a collect hook, so the data
//    plane keeps no second copy. Per-worker families are rebuilt on every scrape, so a slot
//    that is scaled away disappears from /metrics.
//
// Worker label = slot id (0..workers-1, stable across restarts). Warm spares are not given
// per-worker series (their ids change with every incarnation, which would leak series); they
// are counted in drover_spares_ready. A slot whose worker is being replaced shows state
// "vacant"; a draining predecessor's in-flight requests are added to its slot's
// drover_worker_inflight.
//
// drover_breaker_transitions_total{worker} adds up the transitions of every incarnation the
// collector has seen in the slot (each WorkerLink has its own breaker). Transitions of an
// incarnation after the last scrape before it died are not counted (they are rare: a worker
// whose breaker moves is usually still alive at the next scrape). The same holds for
// drover_worker_transport_{messages,bytes}_total{worker,path,direction}, summed per slot.
//
// Supervisor thread only: the hook runs inside Registry::expose(), which the HTTP handler
// calls on the same io_context.
#pragma once

#include <array>
#include <map>

#include "common/metrics.hpp"
#include "supervisor/pipeline/admission.hpp"
#include "supervisor/pool/call.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {

class MetricsCollector {
 public:
  // Declares the families in `registry` and adds the scrape-time hook. REQUIRES: pool and
  // admission outlive the registry's use of the hook (the Supervisor owns all three).
  MetricsCollector(metrics::Registry& registry, const WorkerPool& pool, const Admission& admission);

  // A request ended (RequestHandler's observer).
  void on_request(CallKind kind, const CallOutcome& outcome);

  // The `outcome` label of a request: ok, cancelled, or the error's name (overloaded,
  // timed_out, worker_failed, ...); "error" for a code drover does not define.
  static std::string_view outcome_label(const CallOutcome& outcome);
  static std::string_view method_label(CallKind kind);

  // The batch queue's histograms (the pool's Batcher observes into them).
  metrics::Histogram& batch_size() { return batch_size_; }
  metrics::Histogram& batch_time() { return batch_time_; }

 private:
  void collect();

  const WorkerPool& pool_;
  const Admission& admission_;

  metrics::Family<metrics::Counter>& requests_;
  // The same requests counted by the frontend they came through.
  metrics::Family<metrics::Counter>& by_frontend_;
  metrics::Family<metrics::Histogram>& duration_;
  metrics::Histogram& ttft_;
  // Looked up once: the hot children, indexed by CallKind.
  std::array<metrics::Counter*, 3> requests_ok_{};
  std::array<metrics::Histogram*, 3> duration_by_kind_{};
  std::array<metrics::Counter*, 2> by_frontend_ok_{};  // by Frontend

  metrics::Gauge& queue_depth_;
  metrics::Histogram& batch_size_;
  metrics::Histogram& batch_time_;
  metrics::Gauge& admission_outstanding_;
  metrics::Gauge& admission_limit_;
  metrics::Counter& admission_rejected_;

  metrics::Family<metrics::Gauge>& worker_inflight_;
  metrics::Family<metrics::Gauge>& worker_state_;
  metrics::Family<metrics::Counter>& worker_restarts_;
  metrics::Family<metrics::Gauge>& worker_heartbeat_age_;
  metrics::Family<metrics::Gauge>& worker_rss_;
  metrics::Family<metrics::Gauge>& breaker_state_;
  metrics::Family<metrics::Counter>& breaker_transitions_;
  metrics::Family<metrics::Counter>& transport_messages_;
  metrics::Family<metrics::Counter>& transport_bytes_;
  metrics::Family<metrics::Gauge>& worker_shm_;

  metrics::Counter& pool_restarts_;
  metrics::Counter& pool_crashes_;
  metrics::Counter& pool_promotions_;
  metrics::Counter& retries_;
  metrics::Counter& failovers_;
  metrics::Counter& retry_budget_exhausted_;
  metrics::Counter& poisoned_;
  metrics::Counter& recycled_;

  metrics::Gauge& workers_ready_;
  metrics::Gauge& workers_total_;
  metrics::Gauge& workers_parked_;
  metrics::Gauge& spares_ready_;

  // Per slot, what survives the slot's incarnations.
  struct SlotHistory {
    int pid = -1;                          // the incarnation last seen
    std::uint64_t transitions_seen = 0;    // its breaker's transitions at the last scrape
    std::uint64_t transitions_before = 0;  // sum over earlier incarnations
    int restarts = 0;
    TransportCounters transport_seen;    // the incarnation's transport counters at the last scrape
    TransportCounters transport_before;  // sum over earlier incarnations
  };
  std::map<int, SlotHistory> slots_;
};

}  // namespace drover::supervisor
