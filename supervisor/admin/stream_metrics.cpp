#include "supervisor/admin/stream_metrics.hpp"

#include <string>

namespace drover::supervisor {

StreamMetrics::StreamMetrics(metrics::Registry& r, const WorkerPool& pool,
                             const StreamFlow::Counters& totals,
                             std::function<Listener::Buffered()> buffered)
    : pool_(pool),
      totals_(totals),
      buffered_(std::move(buffered)),
      buffered_bytes_(r.gauge("drover_client_buffered_bytes",
                              "Bytes accepted for clients and not yet written to their sockets "
                              "(held stream chunks included), all connections.")
                          .with({})),
      buffered_bytes_max_(r.gauge("drover_client_buffered_bytes_max",
                                  "The largest buffered_bytes of a single connection (one slow "
                                  "client).")
                              .with({})),
      connections_coalescing_(r.gauge("drover_stream_connections_coalescing",
                                      "Connections above streaming.high_watermark_bytes, whose "
                                      "stream chunks are being coalesced.")
                                  .with({})),
      coalescing_episodes_(r.counter("drover_stream_coalescing_episodes_total",
                                     "Times a connection crossed the high watermark and began "
                                     "coalescing.")
                               .with({})),
      merged_frames_(r.counter("drover_stream_coalesced_frames_total",
                               "generate.chunk frames that carried more than one worker chunk.")
                         .with({})),
      merged_chunks_(r.counter("drover_stream_coalesced_chunks_total",
                               "Worker chunks carried by coalesced frames.")
                         .with({})),
      slow_consumer_cancels_(r.counter("drover_stream_slow_consumer_cancels_total",
                                       "Streams failed with -32010 and cancelled at their worker "
                                       "because the client did not read (past "
                                       "server.write_buffer_bytes).")
                                 .with({})),
      reader_pauses_(r.counter("drover_client_reader_pauses_total",
                               "Times a client connection stopped being read because it left "
                               "more than server.write_buffer_bytes of replies unread.")
                         .with({})),
      backlog_closes_(r.counter("drover_client_backlog_closes_total",
                                "Client connections closed because their unread replies passed "
                                "2 x server.write_buffer_bytes or stayed unread for "
                                "server.idle_timeout_ms.")
                          .with({})),
      active_(r.gauge("drover_streams_active", "Streamed generates running on workers.").with({})),
      waiting_(r.gauge("drover_streams_waiting",
                       "Streamed generates queued because the stream concurrency limit is reached.")
                   .with({})),
      waited_(r.counter("drover_streams_waited_total",
                        "Streamed generates that waited in the queue for a place under the stream "
                        "concurrency limit.")
                  .with({})),
      limit_total_(r.gauge("drover_stream_total_limit",
                           "Streams allowed to run at once in total (streaming.max_concurrent_total, "
                           "or the sum of the workers' limits).")
                       .with({})),
      limit_(r.gauge("drover_stream_limit",
                     "Streams a worker may run at once (fixed, or adaptive from its throughput).",
                     {"worker"})) {
  r.add_collect_hook([this] { collect(); });
}

void StreamMetrics::collect() {
  const auto b = buffered_();
  buffered_bytes_.set(static_cast<double>(b.total));
  buffered_bytes_max_.set(static_cast<double>(b.max));
  connections_coalescing_.set(b.coalescing);
  coalescing_episodes_.set_total(static_cast<double>(totals_.coalescing_episodes));
  merged_frames_.set_total(static_cast<double>(totals_.merged_frames));
  merged_chunks_.set_total(static_cast<double>(totals_.merged_chunks));
  slow_consumer_cancels_.set_total(static_cast<double>(totals_.refused));
  reader_pauses_.set_total(static_cast<double>(totals_.reader_pauses));
  backlog_closes_.set_total(static_cast<double>(totals_.backlog_closes));
  const StreamCounts c = pool_.stream_counts();
  active_.set(c.active);
  waiting_.set(static_cast<double>(c.waiting));
  waited_.set_total(static_cast<double>(c.waited_total));
  limit_total_.set(c.limit_total);
  limit_.clear();  // a slot scaled away disappears
  for (const auto& [slot, limit] : c.limits) limit_.with({std::to_string(slot)}).set(limit);
}

}  // namespace drover::supervisor
