#include "supervisor/pipeline/request_pipeline.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/log.hpp"
#include "proto/worker_codec.hpp"

namespace drover::supervisor {
namespace {

// Results worth keeping: a run that was cancelled (its last subscriber left) or failed is
// not the request's answer.
bool complete_result(const proto::worker::GenerateResult& r) {
  return r.finish_reason == "stop" || r.finish_reason == "length";
}

}  // namespace

RequestPipeline::RequestPipeline(asio::io_context& io, const Config& config, Pool& pool,
                                 const Clock& clock)
    : io_(io), config_(config), pool_(pool), clock_(clock), cache_(cache_limits()) {}

RequestPipeline::~RequestPipeline() {
  // Runs still in the pool must not call back into a pipeline that is gone: dropping them
  // here expires the relays their calls hold weakly.
  for (auto& [raw, run] : live_) {
    run->on_finished({});
    run->on_abandoned({});
  }
}

PromptCache::Limits RequestPipeline::cache_limits() const {
  const auto& c = config_.prompt_cache;
  return {c.max_entries, c.max_bytes, c.ttl};
}

InFlightTable::Limits RequestPipeline::table_limits() const {
  const auto& d = config_.request_deduplication;
  return {d.max_entries, d.ttl};
}

void RequestPipeline::submit(std::shared_ptr<Call> call, PipelineRequest req) {
  if ((call->cohorts() & cohort_bit(Stage::fault_injection)) == 0) {
    return route(std::move(call), std::move(req));
  }
  const auto fault = faults_.decide(config_.fault_injection);
  if (fault.abort) {
    return call->finish_error(static_cast<RpcError>(config_.fault_injection.abort_code),
                              "Injected fault", json{{"fault_injection", "abort"}});
  }
  if (fault.delay.count() == 0) return route(std::move(call), std::move(req));
  // Held on a timer of its own; a cancel or timeout meanwhile finishes the call (the pool
  // cancels a call it does not hold), and the timer then lets it go.
  auto timer = std::make_shared<asio::steady_timer>(io_, fault.delay);
  timer->async_wait([this, timer, call = std::move(call), req = std::move(req)](
                        boost::system::error_code ec) mutable {
    if (ec || call->done()) return;
    route(std::move(call), std::move(req));
  });
}

void RequestPipeline::record_outcome(const Call& call) {
  std::array<int, kStageCount> percents{};
  for (std::size_t s = 0; s < kStageCount; ++s) {
    percents[s] = FeatureFlags::rollout_percent(static_cast<Stage>(s), config_.feature_flags);
  }
  cohorts_.record(call.cohorts(), percents, call.outcome());
  totals_.add(call.outcome());
}

void RequestPipeline::route(std::shared_ptr<Call> call, PipelineRequest req) {
  if (call->kind() != CallKind::generate) return pool_.submit(std::move(call));
  if (!req.key) {
    ++stats_.bypassed;
    call->set_cache_status("bypass");
    return pool_.submit(std::move(call));
  }
  // The generation first: results of an earlier one are never found (invalidate_results).
  const std::string key = std::to_string(generation_) + ':' + *req.key;
  const bool stream = call->streaming();
  const auto now = clock_.now();

  // 1. Prompt cache.
  const bool use_cache = req.cache == proto::CacheMode::use &&
                         flags_.admits(Stage::prompt_cache, config_.prompt_cache.enabled,
                                       config_.feature_flags, req.rollout_id);
  if (use_cache) {
    if (const auto limits = cache_limits(); limits.max_entries != cache_.limits().max_entries ||
                                            limits.max_bytes != cache_.limits().max_bytes ||
                                            limits.ttl != cache_.limits().ttl) {
      cache_.set_limits(limits, now);  // reloaded
    }
    if (const CachedResult* hit = cache_.find(key, now)) {
      return serve_stored(*call, hit->result, hit->chunks, -1, "hit");
    }
  }

  // 2. A run of the same request in progress (or just finished).
  const Stage share_stage = stream ? Stage::request_coalescing : Stage::request_deduplication;
  const bool share_enabled =
      stream ? config_.request_coalescing.enabled : config_.request_deduplication.enabled;
  const bool share =
      flags_.admits(share_stage, share_enabled, config_.feature_flags, req.rollout_id);
  if (share) {
    if (auto run = table_.find_running(key, stream); run && run->joinable()) {
      ++(stream ? stats_.coalesced : stats_.dedup_shared);
      return subscribe(run, call, "coalesced");
    }
    // A remembered result is a cached answer too: `cache: "bypass"` asked for a fresh run.
    if (!stream && req.cache == proto::CacheMode::use) {
      if (const auto* recent = table_.find_recent(key, now)) {
        ++stats_.dedup_shared;
        ++stats_.dedup_recent;
        return serve_stored(*call, recent->result, {}, recent->worker_slot, "coalesced");
      }
    }
  }

  // 3. A new run; through a SharedExecution only when a stage wants its output.
  if (!use_cache && !share) {
    ++stats_.bypassed;
    call->set_cache_status("bypass");
    return pool_.submit(std::move(call));
  }
  auto execution = std::make_shared<Call>(call->request_id(), proto::RpcId(proto::kNullId), false,
                                          call->request(), CallSink{});
  execution->set_streaming(stream);
  execution->set_model(call->model());
  execution->set_priority(call->priority());
  execution->set_batchable(call->batchable());
  // Chunks are kept for joiners (bounded by max_replay_bytes) and for the cache entry.
  const std::size_t replay_bytes = !stream ? 0
                                   : share ? config_.request_coalescing.max_replay_bytes
                                           : config_.prompt_cache.max_bytes;
  auto run = SharedExecution::create(execution, replay_bytes);
  live_.emplace(run.get(), run);
  // A full table only means this run is not shared.
  if (share) table_.add_running(key, stream, run, table_limits(), now);
  run->on_finished(
      [this, key, stream, use_cache, share, raw = run.get()](
          const proto::worker::GenerateResult* result, int slot) {
        table_.remove_running(key, stream, raw);
        if (result && complete_result(*result)) {
          const auto t = clock_.now();
          if (use_cache) {
            // A stream whose replay buffer overflowed is stored without its chunks (a hit then
            // streams the text as one chunk).
            CachedResult entry{*result,
                               raw->replay_complete() ? raw->chunks() : std::vector<std::string>{}};
            if (cache_.insert(key, std::move(entry), t)) ++stats_.cache_stored;
          }
          if (share && !stream) table_.remember(key, *result, slot, table_limits(), t);
        }
        live_.erase(raw);  // last: may destroy the run (the relay call holds a reference meanwhile)
      });
  run->on_abandoned([this, key, stream, raw = run.get(),
                     weak = std::weak_ptr<Call>(execution)](const CallOutcome& last) {
    ++stats_.abandoned;
    table_.remove_running(key, stream, raw);
    // A run abandoned because its client's deadline passed is a timeout at the worker, as
    // it was before the run was shared: the worker's breaker counts it.
    const bool timed_out = last.code == code_of(RpcError::timed_out);
    // Posted: this runs inside a subscriber's finish, possibly inside a worker link's chunk
    // handler; the cancel must not re-enter either.
    asio::post(io_, [&pool = pool_, weak, timed_out] {
      auto c = weak.lock();
      if (!c || c->done()) return;
      if (timed_out) return pool.on_timeout(c);
      pool.cancel(c);
    });
  });
  ++stats_.executions;
  subscribe(run, call, use_cache ? "miss" : "bypass");
  pool_.submit(std::move(execution));
}

void RequestPipeline::subscribe(const std::shared_ptr<SharedExecution>& run,
                                const std::shared_ptr<Call>& call, std::string_view status) {
  run_of_[call.get()] = run;
  call->on_finish([this, raw = call.get()] { run_of_.erase(raw); });
  run->subscribe(call, status);
}

void RequestPipeline::cancel(const std::shared_ptr<Call>& call) {
  if (const auto it = run_of_.find(call.get()); it != run_of_.end()) {
    if (auto run = it->second.lock(); run && run->subscribers() == 1 && !run->finished()) {
      run->cancel_requested();  // before the worker answers, nobody may join a dying run
      return pool_.cancel(run->execution());
    }
  }
  pool_.cancel(call);
}

void RequestPipeline::invalidate_results(std::string_view why) {
  ++generation_;
  cache_.clear();  // its entries can never be found again: give their memory back now
  ++stats_.invalidations;
  component_logger("pipeline")->info("stored results and runs in progress are not shared from now on: {}", why);
}

void RequestPipeline::serve_stored(Call& call, const proto::worker::GenerateResult& result,
                                   const std::vector<std::string>& chunks, int worker_slot,
                                   std::string_view status) {
  if (call.streaming()) {
    const std::string& text = result.text;
    const std::vector<std::string> whole =
        text.empty() ? std::vector<std::string>{} : std::vector<std::string>{text};
    const auto& replay = chunks.empty() ? whole : chunks;
    for (std::size_t i = 0; i < replay.size(); ++i) {
      if (call.deliver_chunk(replay[i], i) == Call::ChunkResult::slow_consumer) {
        return call.finish_error(RpcError::slow_consumer);
      }
    }
  }
  call.set_cache_status(status);
  call.finish_generate(result, worker_slot);
}

json RequestPipeline::telemetry() const {
  const auto& ff = config_.feature_flags;
  auto stage = [&](Stage s, bool enabled) {
    const auto& c = flags_.counts(s);
    return json{{"enabled", enabled},
                {"rollout_percent", FeatureFlags::rollout_percent(s, ff)},
                {"requests_in", c.in},
                {"requests_out", c.out}};
  };
  json cache = stage(Stage::prompt_cache, config_.prompt_cache.enabled);
  const auto& cs = cache_.stats();
  cache.update(
      {{"hits_total", cs.hits},
       {"misses_total", cs.misses},
       {"stored_total", cs.inserts},
       {"evictions_total",
        {{"entries", cs.evicted_entries}, {"bytes", cs.evicted_bytes}, {"ttl", cs.expired}}},
       {"too_large_total", cs.too_large},
       {"entries", cache_.entries()},
       {"bytes", cache_.bytes()},
       {"max_entries", cache_.limits().max_entries},
       {"max_bytes", cache_.limits().max_bytes}});
  json dedup = stage(Stage::request_deduplication, config_.request_deduplication.enabled);
  dedup.update({{"shared_total", stats_.dedup_shared},
                {"shared_recent_total", stats_.dedup_recent},
                {"in_flight", table_.running()},
                {"remembered", table_.recent()}});
  json coalescing = stage(Stage::request_coalescing, config_.request_coalescing.enabled);
  coalescing.update({{"coalesced_total", stats_.coalesced}});
  return {{"prompt_cache", std::move(cache)},
          {"request_deduplication", std::move(dedup)},
          {"request_coalescing", std::move(coalescing)},
          {"batch_queue", stage(Stage::batch_queue, config_.batch_queue.enabled)},
          {"fault_injection",
           {{"enabled", config_.fault_injection.enabled},
            {"rollout_percent", config_.feature_flags.fault_injection},
            {"aborted_total", faults_.aborted()},
            {"delayed_total", faults_.delayed()}}},
          {"cohorts", cohorts_.telemetry()},
          {"executions_total", stats_.executions},
          {"abandoned_total", stats_.abandoned},
          {"bypassed_total", stats_.bypassed},
          {"invalidations_total", stats_.invalidations},
          {"runs_in_progress", live_.size()}};
}

void RequestPipeline::register_metrics(metrics::Registry& r) {
  auto& hits = r.counter("drover_prompt_cache_hits_total",
                         "Generate requests answered from the prompt cache (no worker involved).")
                   .with({});
  auto& misses = r.counter("drover_prompt_cache_misses_total",
                           "Prompt cache lookups that found nothing (or an expired entry).")
                     .with({});
  auto& evictions = r.counter("drover_prompt_cache_evictions_total",
                              "Entries removed from the prompt cache, by reason: entries "
                              "(max_entries), bytes (max_bytes), ttl (expired).",
                              {"reason"});
  auto& entries = r.gauge("drover_prompt_cache_entries", "Entries in the prompt cache.").with({});
  auto& bytes = r.gauge("drover_prompt_cache_bytes",
                        "Size of the prompt cache's entries (key, result, stream chunks).")
                    .with({});
  auto& shared = r.counter("drover_dedup_shared_total",
                           "Unary generate requests answered by an identical request's run "
                           "(in flight, or finished within request_deduplication.ttl_ms).")
                     .with({});
  auto& coalesced = r.counter("drover_coalesced_streams_total",
                              "Streaming generate requests that joined an identical stream in "
                              "progress (buffered replay, then live chunks).")
                        .with({});
  auto& executions = r.counter("drover_pipeline_executions_total",
                               "Worker runs the pipeline started for deterministic generate "
                               "requests (the rest were answered by the cache or a shared run).")
                         .with({});
  auto& decisions = r.counter("drover_feature_flag_decisions_total",
                              "Requests a pipeline stage was considered for, by stage and "
                              "decision (in: the stage applied; out: disabled or outside the "
                              "rollout percentage).",
                              {"stage", "decision"});
  auto& faults = r.counter("drover_fault_injection_total",
                           "Requests the fault_injection stage failed (abort) or held (delay).",
                           {"fault"});
  cohorts_.register_metrics(r);
  r.add_collect_hook([this, &faults] {
    faults.with({"abort"}).set_total(static_cast<double>(faults_.aborted()));
    faults.with({"delay"}).set_total(static_cast<double>(faults_.delayed()));
  });
  r.add_collect_hook([this, &hits, &misses, &evictions, &entries, &bytes, &shared, &coalesced,
                      &executions, &decisions] {
    const auto& cs = cache_.stats();
    hits.set_total(static_cast<double>(cs.hits));
    misses.set_total(static_cast<double>(cs.misses));
    evictions.with({"entries"}).set_total(static_cast<double>(cs.evicted_entries));
    evictions.with({"bytes"}).set_total(static_cast<double>(cs.evicted_bytes));
    evictions.with({"ttl"}).set_total(static_cast<double>(cs.expired));
    entries.set(static_cast<double>(cache_.entries()));
    bytes.set(static_cast<double>(cache_.bytes()));
    shared.set_total(static_cast<double>(stats_.dedup_shared));
    coalesced.set_total(static_cast<double>(stats_.coalesced));
    executions.set_total(static_cast<double>(stats_.executions));
    for (Stage s : {Stage::prompt_cache, Stage::request_deduplication, Stage::request_coalescing}) {
      const auto& c = flags_.counts(s);
      const std::string name(stage_name(s));
      decisions.with({name, "in"}).set_total(static_cast<double>(c.in));
      decisions.with({name, "out"}).set_total(static_cast<double>(c.out));
    }
  });
}

}  // namespace drover::supervisor
