// RequestPipeline: the stages between the frontend and the pool (shared/DESIGN.md section 1:
// cache -> dedup/coalesce -> pool). The RequestHandler hands it every Call it admitted; it
// answers what it can without a worker and passes the rest on to the WorkerPool:
//
//   0. fault injection (fault_injection, for drills): a request in the stage's rollout may be
//      failed with fault_injection.abort_code or held for delay_ms first (FaultInjection).
//   1. prompt cache (prompt_cache): a deterministic request whose result is cached is answered
//      at once, without a worker; a streaming one gets the cached chunks, then the result.
//   2. deduplication (request_deduplication, unary requests) and coalescing
//      (request_coalescing, streaming requests): a request identical to a run in progress
//      subscribes to that run instead of starting one; a unary request identical to one that
//      finished within request_deduplication.ttl gets that result.
//   3. otherwise a new run (SharedExecution) goes to the pool; its result is stored in the
//      cache and, for deduplication, remembered for ttl.
// Each stage applies when its block says `enabled` and the request is in the stage's rollout
// (FeatureFlags). Requests that are not deterministic, `cache: "bypass"` for stage 1, and
// tokenize / detokenize go straight on.
//
// The result's `cache` field says which way a generate was answered:
//   hit        from the prompt cache (no worker was involved; `worker` is null)
//   coalesced  from a run another request started (dedup follower, stream joiner, or a
//              remembered result)
//   miss       its own run on a worker, after a cache lookup that missed
//   bypass     its own run on a worker without a cache lookup: `cache: "bypass"`, the cache
//              stage off or the request outside its rollout, or not deterministic
//
// Owned by the RequestHandler; reads the live Config on every request, so a reload applies
// to the next request. Supervisor thread only.
//
// Time: the prompt cache's ttl and the deduplication's remembered-result ttl are judged by the
// Clock given at construction; the pool is reached through the Pool interface (WorkerPool in
// droverd). Unit tests give a fake clock and a pool that answers calls by hand.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/async_util.hpp"
#include "common/clock.hpp"
#include "common/config.hpp"
#include "common/metrics.hpp"
#include "supervisor/pool/call.hpp"
#include "supervisor/pipeline/cohort_metrics.hpp"
#include "supervisor/pipeline/fault_injection.hpp"
#include "supervisor/pipeline/feature_flags.hpp"
#include "supervisor/pipeline/in_flight_table.hpp"
#include "supervisor/pipeline/prompt_cache.hpp"
#include "supervisor/pool/pool.hpp"

namespace drover::supervisor {

// What the pipeline needs to know about a request besides its Call.
struct PipelineRequest {
  // deterministic_key() of a generate; nullopt: not deterministic, or not a generate.
  std::optional<std::string> key;
  proto::CacheMode cache = proto::CacheMode::use;
  // Feature-flag hash input: the client's id as JSON text (as sent), or the internal request id.
  std::string rollout_id;
};

struct PipelineStats {
  std::uint64_t executions = 0;    // runs started for deterministic requests
  std::uint64_t dedup_shared = 0;  // unary requests answered by another request's run
  std::uint64_t dedup_recent = 0;  //   of which from a remembered (finished) result
  std::uint64_t coalesced = 0;     // streaming requests that joined a stream in progress
  std::uint64_t cache_stored = 0;  // results put into the prompt cache
  std::uint64_t abandoned = 0;     // runs cancelled because every subscriber left
  // Generates sent straight to the pool: not deterministic, or no stage applied.
  std::uint64_t bypassed = 0;
  // invalidate_results() calls: model loads/unloads and config reloads.
  std::uint64_t invalidations = 0;
};

class RequestPipeline {
 public:
  // `config`, `pool` and `clock` must outlive the pipeline.
  RequestPipeline(asio::io_context& io, const Config& config, Pool& pool,
                  const Clock& clock = real_clock());
  ~RequestPipeline();
  RequestPipeline(const RequestPipeline&) = delete;
  RequestPipeline& operator=(const RequestPipeline&) = delete;

  // REQUIRES: call->state() == queued, not yet submitted anywhere; call->cohorts() set.
  void submit(std::shared_ptr<Call> call, PipelineRequest request);
  // How a submitted call ended, into the cohort metrics (its cohorts, the live percentages)
  // and the totals.
  void record_outcome(const Call& call);
  // Cancels a call wherever it is (RequestHandler::cancel: `cancel`, disconnects). The only
  // subscriber of a run cancels the run itself, so its answer is the worker's (the text so
  // far); a subscriber among others is detached and the run goes on for them.
  void cancel(const std::shared_ptr<Call>& call);
  // What the workers compute may have changed (a model loaded or unloaded, the configuration
  // reloaded: the catalog's paths, workers.command): results stored before are not served
  // again, and runs in progress are not joined. Keys carry a generation that this advances,
  // so a run that finishes later stores its result where no lookup finds it.
  void invalidate_results(std::string_view why);

  // The `pipeline` object of telemetry.metrics.
  json telemetry() const;
  // Declares the pipeline's Prometheus families in `registry` and a hook that fills them at
  // scrape time. REQUIRES: this pipeline outlives the registry's use of the hook.
  void register_metrics(metrics::Registry& registry);

  const PromptCache& cache() const { return cache_; }
  const PipelineStats& stats() const { return stats_; }
  const FeatureFlags& flags() const { return flags_; }
  // Every request the pipeline was given, as it ended (lifetime counts; the SLO engine takes
  // its sliding window from them).
  const CohortStats& totals() const { return totals_; }
  CohortMetrics& cohorts() { return cohorts_; }
  const CohortMetrics& cohorts() const { return cohorts_; }
  const FaultInjection& faults() const { return faults_; }
  // Whether a stage applied after the pipeline (batch_queue, stream_coalescing) takes this
  // request: its block's `enabled` and its rollout; counted with the pipeline's own stages.
  bool admits(Stage stage, bool enabled, std::string_view rollout_id) {
    return flags_.admits(stage, enabled, config_.feature_flags, rollout_id);
  }

 private:
  // Answers `call` from a stored result: streams `chunks` first (or the text as one chunk when
  // the result was not produced streamed), then the result with `cache` = status.
  static void serve_stored(Call& call, const proto::worker::GenerateResult& result,
                           const std::vector<std::string>& chunks, int worker_slot,
                           std::string_view status);
  void subscribe(const std::shared_ptr<SharedExecution>& run, const std::shared_ptr<Call>& call,
                 std::string_view cache_status);
  // Stages 1-3 (everything after fault injection).
  void route(std::shared_ptr<Call> call, PipelineRequest request);
  PromptCache::Limits cache_limits() const;
  InFlightTable::Limits table_limits() const;

  asio::io_context& io_;
  const Config& config_;
  Pool& pool_;
  const Clock& clock_;
  FeatureFlags flags_;
  CohortMetrics cohorts_;
  CohortStats totals_;
  FaultInjection faults_;
  PromptCache cache_;
  InFlightTable table_;
  // Every run in progress, so it lives until it ends; the calls hold it only weakly.
  std::unordered_map<const SharedExecution*, std::shared_ptr<SharedExecution>> live_;
  // The run each unfinished subscriber waits on, for cancel.
  std::unordered_map<const Call*, std::weak_ptr<SharedExecution>> run_of_;
  PipelineStats stats_;
  std::uint64_t generation_ = 0;  // see invalidate_results()
};

}  // namespace drover::supervisor
