#include "supervisor/admin/metrics_collector.hpp"

#include <algorithm>
#include <string>

#include "supervisor/version.hpp"

namespace drover::supervisor {
namespace {

using metrics::Counter;
using metrics::Gauge;

// Request latency: sub-millisecond local answers up to five-minute generations
// (server.request_timeout_ms defaults to 300 s).
const std::vector<double> kDurationBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
// Time to first token: from queueing plus prefill; beyond 10 s it is an outage, not a latency.
const std::vector<double> kTtftBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2.5,  5,     10};
// Batch sizes run 1..100 (BatchController bounds); batch times centre on the 10 ms default
// target_batch_time_ms.
const std::vector<double> kBatchSizeBuckets = {1, 2, 4, 8, 16, 32, 64, 100};
const std::vector<double> kBatchTimeBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015,
                                               0.025,  0.05,  0.1,    0.25,  0.5,  1};

// The states a slot can be in, each exported (1 for the current one, 0 for the others) so a
// dashboard can sum by state. "vacant": between a worker's death and its replacement.
constexpr std::array<std::string_view, 6> kSlotStates = {"starting", "ready",  "draining",
                                                         "stopping", "parked", "vacant"};

constexpr std::array<CallKind, 3> kKinds = {CallKind::generate, CallKind::tokenize,
                                            CallKind::detokenize};

double breaker_value(const std::string& state) {
  if (state == "open") return 2;
  if (state == "half_open") return 1;
  return 0;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::string_view MetricsCollector::method_label(CallKind kind) {
  switch (kind) {
    case CallKind::generate:
      return "generate";
    case CallKind::tokenize:
      return "tokenize";
    case CallKind::detokenize:
      return "detokenize";
  }
  return "generate";
}

std::string_view MetricsCollector::outcome_label(const CallOutcome& o) {
  if (o.cancelled) return "cancelled";
  if (o.code == 0) return "ok";
  switch (static_cast<RpcError>(o.code)) {
    case RpcError::parse_error:
      return "parse_error";
    case RpcError::invalid_request:
      return "invalid_request";
    case RpcError::method_not_found:
      return "method_not_found";
    case RpcError::invalid_params:
      return "invalid_params";
    case RpcError::internal_error:
      return "internal_error";
    case RpcError::overloaded:
      return "overloaded";
    case RpcError::no_healthy_worker:
      return "no_healthy_worker";
    case RpcError::worker_failed:
      return "worker_failed";
    case RpcError::timed_out:
      return "timed_out";
    case RpcError::cancelled:
      return "cancelled";
    case RpcError::unknown_model:
      return "unknown_model";
    case RpcError::message_too_large:
      return "message_too_large";
    case RpcError::not_permitted:
      return "not_permitted";
    case RpcError::shutting_down:
      return "shutting_down";
    case RpcError::slow_consumer:
      return "slow_consumer";
  }
  // A worker's own error code: a bounded set, but not ours to enumerate.
  return "error";
}

MetricsCollector::MetricsCollector(metrics::Registry& r, const WorkerPool& pool,
                                   const Admission& admission)
    : pool_(pool),
      admission_(admission),
      requests_(r.counter("drover_requests_total",
                          "Requests answered (generate, tokenize, detokenize), by method and "
                          "outcome (ok, cancelled or the JSON-RPC error's name).",
                          {"method", "outcome"})),
      by_frontend_(r.counter("drover_frontend_requests_total",
                             "Requests answered (generate, tokenize, detokenize), by the frontend "
                             "they came through (jsonrpc: the client socket; openai: the "
                             "OpenAI-compatible HTTP API) and outcome, as drover_requests_total.",
                             {"frontend", "outcome"})),
      duration_(r.histogram("drover_request_duration_seconds",
                            "Time from accepting a request to answering it, by method.", {"method"},
                            kDurationBuckets)),
      ttft_(r.histogram("drover_ttft_seconds",
                        "Time from accepting a generate request to its first token (successful "
                        "requests).",
                        {}, kTtftBuckets)
                .with({})),
      queue_depth_(r.gauge("drover_queue_depth", "Requests waiting in the pool queue for a worker.")
                       .with({})),
      batch_size_(r.histogram("drover_batch_size",
                              "Requests sent to a worker in one write by the batch queue (tokenize "
                              "texts counted one by one).",
                              {}, kBatchSizeBuckets)
                      .with({})),
      batch_time_(r.histogram("drover_batch_time_seconds",
                              "Time from a batch queue flush to the last reply of its requests "
                              "(the adaptive sizing input).",
                              {}, kBatchTimeBuckets)
                      .with({})),
      admission_outstanding_(r.gauge("drover_admission_outstanding",
                                     "Requests admitted and not yet answered (queued and in "
                                     "flight).")
                                 .with({})),
      admission_limit_(r.gauge("drover_admission_limit",
                               "Bound on outstanding requests (server.max_queue); beyond it "
                               "requests are refused with -32001.")
                           .with({})),
      admission_rejected_(r.counter("drover_admission_rejected_total",
                                    "Requests refused by admission control (-32001).")
                              .with({})),
      worker_inflight_(r.gauge("drover_worker_inflight",
                               "Requests a worker slot holds (including a draining "
                               "predecessor's).",
                               {"worker"})),
      worker_state_(r.gauge("drover_worker_state",
                            "1 for the state a worker slot is in (starting, ready, draining, "
                            "stopping, parked, vacant), 0 for the others.",
                            {"worker", "state"})),
      worker_restarts_(r.counter("drover_worker_restarts_total",
                                 "Times a worker slot's process was replaced after it died or was "
                                 "killed (crash, kill, hang, garbage, injected fault); drains, "
                                 "restarts and recycling are planned and not counted.",
                                 {"worker"})),
      worker_heartbeat_age_(r.gauge("drover_worker_heartbeat_age_seconds",
                                    "Seconds since the worker's last heartbeat (absent until "
                                    "its first).",
                                    {"worker"})),
      worker_rss_(r.gauge("drover_worker_rss_bytes",
                          "Resident memory the worker reported in its last heartbeat.",
                          {"worker"})),
      breaker_state_(r.gauge("drover_breaker_state",
                             "Circuit breaker of a worker: 0 closed, 1 half-open, 2 open.",
                             {"worker"})),
      breaker_transitions_(r.counter("drover_breaker_transitions_total",
                                     "Circuit breaker state changes of a worker slot, over "
                                     "its incarnations.",
                                     {"worker"})),
      transport_messages_(r.counter("drover_worker_transport_messages_total",
                                    "Messages between droverd and a worker slot, by path (ring: "
                                    "the shared-memory rings; socket: the control socket) and "
                                    "direction, over every incarnation of the slot.",
                                    {"worker", "path", "direction"})),
      transport_bytes_(r.counter("drover_worker_transport_bytes_total",
                                 "Message bytes between droverd and a worker slot, by path and "
                                 "direction, over every incarnation of the slot.",
                                 {"worker", "path", "direction"})),
      worker_shm_(r.gauge("drover_worker_shm",
                          "1 when the slot's worker negotiated the shared-memory rings, 0 "
                          "when it talks over the control socket.",
                          {"worker"})),
      pool_restarts_(r.counter("drover_pool_restarts_total",
                               "Workers replaced after dying (crashes, kills, hangs).")
                         .with({})),
      pool_crashes_(r.counter("drover_pool_crashes_total",
                              "Worker deaths counted as crash loops (the worker's fault, before "
                              "or soon after becoming ready).")
                        .with({})),
      pool_promotions_(
          r.counter("drover_pool_promotions_total", "Warm spares promoted into a vacant slot.")
              .with({})),
      retries_(r.counter("drover_retries_total",
                         "Requests re-queued after the worker holding them died.")
                   .with({})),
      failovers_(r.counter("drover_failovers_total",
                           "Retries of streams that had already sent chunks (transparent "
                           "failover).")
                     .with({})),
      retry_budget_exhausted_(r.counter("drover_retry_budget_exhausted_total",
                                        "Requests failed with -32003 because the retry budget "
                                        "was exhausted.")
                                  .with({})),
      poisoned_(r.counter("drover_poisoned_total",
                          "Requests declared poison (they took down several workers).")
                    .with({})),
      recycled_(
          r.counter("drover_recycled_total", "Workers recycled for max_requests or max_rss_mb.")
              .with({})),
      workers_ready_(
          r.gauge("drover_workers_ready", "Worker slots whose worker is ready.").with({})),
      // Not drover_workers_total: a gauge named *_total reads as a counter (promtool rejects it).
      workers_total_(
          r.gauge("drover_workers_configured", "Configured worker slots (workers.count).")
              .with({})),
      workers_parked_(r.gauge("drover_workers_parked",
                              "Worker slots parked after a crash loop (until droverctl "
                              "restart).")
                          .with({})),
      spares_ready_(
          r.gauge("drover_spares_ready", "Warm spares ready to take over a slot.").with({})) {
  r.gauge("drover_build_info", "droverd's version; the value is always 1.", {"version"})
      .with({kVersion})
      .set(1);
  for (const CallKind k : kKinds) {
    const auto i = static_cast<std::size_t>(k);
    const std::string method(method_label(k));
    requests_ok_[i] = &requests_.with({method, "ok"});
    duration_by_kind_[i] = &duration_.with({method});
  }
  by_frontend_ok_[static_cast<std::size_t>(Frontend::jsonrpc)] = &by_frontend_.with({"jsonrpc", "ok"});
  by_frontend_ok_[static_cast<std::size_t>(Frontend::openai)] = &by_frontend_.with({"openai", "ok"});
  r.add_collect_hook([this] { collect(); });
}

void MetricsCollector::on_request(CallKind kind, const CallOutcome& o) {
  const auto i = static_cast<std::size_t>(kind);
  const bool ok = o.code == 0 && !o.cancelled;
  const auto f = static_cast<std::size_t>(o.frontend);
  if (ok) {
    requests_ok_[i]->inc();
    by_frontend_ok_[f]->inc();
  } else {
    requests_.with({method_label(kind), outcome_label(o)}).inc();
    by_frontend_.with({f == 0 ? "jsonrpc" : "openai", outcome_label(o)}).inc();
  }
  // Refusals (nothing was admitted, total == 0) would only pile up in the first bucket.
  if (o.total > Clock::duration::zero()) duration_by_kind_[i]->observe(seconds(o.total));
  if (ok && kind == CallKind::generate && o.ttft) ttft_.observe(seconds(*o.ttft));
}

namespace {

void add_to(TransportCounters& sum, const TransportCounters& c) {
  sum.ring_messages_out += c.ring_messages_out;
  sum.ring_bytes_out += c.ring_bytes_out;
  sum.ring_messages_in += c.ring_messages_in;
  sum.ring_bytes_in += c.ring_bytes_in;
  sum.socket_messages_out += c.socket_messages_out;
  sum.socket_bytes_out += c.socket_bytes_out;
  sum.socket_messages_in += c.socket_messages_in;
  sum.socket_bytes_in += c.socket_bytes_in;
}

}  // namespace

void MetricsCollector::collect() {
  queue_depth_.set(static_cast<double>(pool_.queued()));
  admission_outstanding_.set(static_cast<double>(admission_.outstanding()));
  admission_limit_.set(static_cast<double>(admission_.limit()));
  admission_rejected_.set_total(static_cast<double>(admission_.rejected()));

  const PoolStats& s = pool_.stats();
  pool_restarts_.set_total(static_cast<double>(s.restarts));
  pool_crashes_.set_total(static_cast<double>(s.crashes));
  pool_promotions_.set_total(static_cast<double>(s.promotions));
  retries_.set_total(static_cast<double>(s.retries));
  failovers_.set_total(static_cast<double>(s.failovers));
  retry_budget_exhausted_.set_total(static_cast<double>(s.retry_budget_exhausted));
  poisoned_.set_total(static_cast<double>(s.poisoned));
  recycled_.set_total(static_cast<double>(s.recycled));

  const PoolCounts c = pool_.counts();
  workers_ready_.set(c.ready);
  workers_total_.set(c.total);
  workers_parked_.set(c.parked);
  spares_ready_.set(c.spares_ready);

  // Slot ids are 0..total-1: WorkerPool::scale() fills the lowest free ids and removes the
  // highest. The snapshot lists each slot's current worker (or its parked state) first, then
  // spares (ids from 1000), then retired links still alive under their old slot id.
  const int total = c.total;
  std::vector<const WorkerSnapshot*> current(static_cast<std::size_t>(std::max(total, 0)), nullptr);
  std::vector<std::size_t> inflight(current.size(), 0);
  const auto snapshot = pool_.snapshot();
  for (const auto& w : snapshot) {
    if (w.id < 0 || w.id >= total || w.state == "spare") continue;
    const auto i = static_cast<std::size_t>(w.id);
    if (!current[i]) current[i] = &w;
    inflight[i] += w.inflight;
  }
  std::erase_if(slots_, [total](const auto& kv) { return kv.first >= total; });

  worker_inflight_.clear();
  worker_state_.clear();
  worker_restarts_.clear();
  worker_heartbeat_age_.clear();
  worker_rss_.clear();
  breaker_state_.clear();
  breaker_transitions_.clear();
  transport_messages_.clear();
  transport_bytes_.clear();
  worker_shm_.clear();
  for (int id = 0; id < total; ++id) {
    const auto i = static_cast<std::size_t>(id);
    const std::string worker = std::to_string(id);
    const WorkerSnapshot* w = current[i];
    SlotHistory& h = slots_[id];
    const std::string_view state = w ? std::string_view(w->state) : std::string_view("vacant");
    for (const auto st : kSlotStates)
      worker_state_.with({worker, std::string(st)}).set(st == state ? 1 : 0);
    worker_inflight_.with({worker}).set(static_cast<double>(inflight[i]));
    if (w) h.restarts = w->restarts;
    worker_restarts_.with({worker}).set_total(h.restarts);
    if (w && w->state != "parked") {
      if (w->pid != h.pid) {
        h.transitions_before += h.transitions_seen;
        add_to(h.transport_before, h.transport_seen);
        h.pid = w->pid;
      }
      h.transitions_seen = w->breaker_transitions;
      h.transport_seen = w->transport_counters;
      worker_shm_.with({worker}).set(w->transport == "shm" ? 1 : 0);
      breaker_state_.with({worker}).set(breaker_value(w->breaker));
      if (w->heartbeat_age_ms) {
        worker_heartbeat_age_.with({worker}).set(static_cast<double>(*w->heartbeat_age_ms) /
                                                 1000.0);
      }
      if (w->rss_bytes > 0) worker_rss_.with({worker}).set(static_cast<double>(w->rss_bytes));
    }
    breaker_transitions_.with({worker}).set_total(
        static_cast<double>(h.transitions_before + h.transitions_seen));
    TransportCounters t = h.transport_before;
    add_to(t, h.transport_seen);
    const auto total = [](std::uint64_t v) { return static_cast<double>(v); };
    transport_messages_.with({worker, "ring", "to_worker"}).set_total(total(t.ring_messages_out));
    transport_messages_.with({worker, "ring", "from_worker"}).set_total(total(t.ring_messages_in));
    transport_messages_.with({worker, "socket", "to_worker"}).set_total(total(t.socket_messages_out));
    transport_messages_.with({worker, "socket", "from_worker"}).set_total(total(t.socket_messages_in));
    transport_bytes_.with({worker, "ring", "to_worker"}).set_total(total(t.ring_bytes_out));
    transport_bytes_.with({worker, "ring", "from_worker"}).set_total(total(t.ring_bytes_in));
    transport_bytes_.with({worker, "socket", "to_worker"}).set_total(total(t.socket_bytes_out));
    transport_bytes_.with({worker, "socket", "from_worker"}).set_total(total(t.socket_bytes_in));
  }
}

}  // namespace drover::supervisor
