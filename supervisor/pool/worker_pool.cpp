#include "supervisor/pool/worker_pool.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "common/log.hpp"

namespace drover::supervisor {
namespace {

constexpr std::array<std::string_view, 7> kFaults = {"crash", "hang",  "stall",
                                                     "garbage", "slow", "ring_garbage",
                                                     "exit_after_reply"};

}  // namespace

WorkerPool::WorkerPool(asio::io_context& io, const WorkersConfig& workers,
                       const CircuitBreakerConfig& breaker, const RetryConfig& retry,
                       std::string run_dir, RoutingStrategy strategy, const Clock& clock)
    : io_(io),
      clock_(clock),
      config_(workers),
      breaker_config_(breaker),
      retry_(retry),
      run_dir_(std::move(run_dir)),
      strategy_(strategy),
      router_(make_router(strategy)),
      stream_sample_timer_(io),
      spare_policy_(workers),
      breaker_timer_(io),
      log_(component_logger("pool")) {
  for (int i = 0; i < config_.count; ++i) {
    slots_.push_back(std::unique_ptr<Slot>(new Slot{i, nullptr, 0, false, RestartPolicy(config_), nullptr, {}}));
  }
  next_spare_id_ = 1000;  // spares' worker ids stay clear of slot ids when the pool scales up
}

WorkerPool::~WorkerPool() = default;

double WorkerPool::uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

void WorkerPool::start() {
  log_->info("starting {} workers and {} warm spares: {}", slots_.size(), config_.warm_spares,
             fmt::join(config_.command, " "));
  for (auto& slot : slots_) fill_slot(*slot);
  for (int i = 0; i < config_.warm_spares; ++i) spawn_spare();
  arm_stream_sampling();
}

void WorkerPool::set_streaming(const StreamingConfig& streaming) {
  stream_limiter_->reconfigure({streaming.max_concurrent_per_worker, streaming.max_concurrent_total,
                                config_.max_inflight});
  pump();
}

StreamCounts WorkerPool::stream_counts() const {
  StreamCounts c;
  c.active = stream_limiter_->active_total();
  c.waiting = held_streams_.size();
  c.limit_total = stream_limiter_->total_limit();
  c.limits = stream_limiter_->limits();
  for (const auto& [slot, limit] : c.limits) c.active_by_worker[slot] = stream_limiter_->active(slot);
  c.waited_total = streams_waited_;
  c.peak_active = streams_peak_;
  c.adaptive = stream_limiter_->adaptive();
  return c;
}

void WorkerPool::start_stream(const std::shared_ptr<Call>& call, int slot) {
  if (!stream_limiter_->holds(call.get())) {
    // The clock is read only while the limiter, which only the pool owns, is alive.
    call->on_finish([limiter = std::weak_ptr<StreamLimiter>(stream_limiter_), key = call.get(),
                     &clock = clock_] {
      if (auto l = limiter.lock()) l->end(key, clock.now());
    });
  }
  stream_limiter_->start(call.get(), slot, clock_.now());
  streams_peak_ = std::max(streams_peak_, stream_limiter_->active_total());
}

void WorkerPool::arm_stream_sampling() {
  stream_sample_timer_.expires_after(std::max(config_.heartbeat_interval, Millis(10)));
  stream_sample_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || shutting_down_) return;
    sample_streams();
    arm_stream_sampling();
  });
}

void WorkerPool::sample_streams() {
  for (const auto& s : slots_) {
    if (!s->link || s->link->state() != WorkerLink::State::ready) continue;
    const auto& report = s->link->report();
    if (!report.last_heartbeat) continue;
    auto& seen = stream_sampled_[s->id];
    if (seen == *report.last_heartbeat) continue;  // one sample per heartbeat
    seen = *report.last_heartbeat;
    stream_limiter_->on_sample(s->id, report.tokens_per_s, report.inflight, clock_.now());
  }
  // A limit that grew may let waiting streams start.
  if (!held_streams_.empty()) pump();
}

std::shared_ptr<WorkerLink> WorkerPool::make_link(int slot, int worker_id) {
  WorkerLinkOptions opt;
  opt.slot = slot;
  opt.worker_id = worker_id;
  opt.generation = ++next_generation_;
  opt.socket_path = fmt::format("{}/w{}.{}.sock", run_dir_, worker_id, opt.generation);
  opt.command = config_.command;
  opt.backend = config_.backend;
  opt.start_timeout = config_.start_timeout;
  opt.heartbeat_interval = config_.heartbeat_interval;
  opt.heartbeat_timeout = config_.heartbeat_timeout;
  opt.stall_timeout = config_.stall_timeout;
  opt.breaker = breaker_config_;
  opt.preload = preload_;
  opt.max_message_bytes = config_.max_message_bytes;
  opt.max_notifications_per_s = config_.max_notifications_per_s;
  opt.shm = transport_.shm;
  opt.ring_bytes = transport_.ring_bytes;
  opt.batcher = batcher_;
  opt.run_as = worker_credentials_;
  auto link = std::make_shared<WorkerLink>(io_, std::move(opt), *this, clock_);
  link->start();
  return link;
}

void WorkerPool::fill_slot(Slot& slot) {
  if (slot.parked || shutting_down_ || slot.link) return;
  if (slot.respawn_timer) slot.respawn_timer->cancel();
  const auto spare = std::find_if(spares_.begin(), spares_.end(), [](const auto& l) {
    return l->state() == WorkerLink::State::ready;
  });
  if (spare != spares_.end()) {
    slot.link = std::move(*spare);
    spares_.erase(spare);
    const int spare_id = slot.link->id();
    slot.link->set_slot(slot.id);
    ++stats_.promotions;
    const auto waited = slot.vacant_since
                            ? std::chrono::duration<double, std::milli>(clock_.now() - *slot.vacant_since).count()
                            : 0.0;
    // The one line that names both ids: from here on the process is worker_id=<slot>.
    log_->info("worker_id={} pid={} promoted warm spare worker_id={} ({:.2f} ms after the vacancy)",
               slot.id, slot.link->pid(), spare_id, waited);
    slot.vacant_since.reset();
    spawn_spare();
    pump();
    return;
  }
  slot.link = make_link(slot.id, slot.id);
  slot.vacant_since.reset();
}

void WorkerPool::spawn_spare() {
  if (shutting_down_ || static_cast<int>(spares_.size()) >= spares_wanted()) return;
  spares_.push_back(make_link(-1, next_spare_id_++));
}

WorkerPool::Slot* WorkerPool::slot_of(const WorkerLink& link) {
  for (auto& s : slots_) {
    if (s->link.get() == &link) return s.get();
  }
  return nullptr;
}

WorkerPool::Slot* WorkerPool::slot_by_id(int id) {
  for (auto& s : slots_) {
    if (s->id == id) return s.get();
  }
  return nullptr;
}

std::shared_ptr<WorkerLink> WorkerPool::find_link(int id) {
  if (Slot* s = slot_by_id(id); s && s->link) return s->link;
  for (auto& l : spares_) {
    if (l->id() == id) return l;
  }
  return nullptr;
}

void WorkerPool::retire(const std::shared_ptr<WorkerLink>& link) { retired_.push_back(link); }

std::uint64_t WorkerPool::fingerprint(const Call& call) const {
  // The seed is left out: a request that kills workers does so whatever its seed.
  std::string text;
  if (const auto* g = std::get_if<proto::worker::GenerateRequest>(&call.request())) {
    auto unseeded = *g;
    unseeded.seed = 0;
    proto::worker::encode_generate(text, 0, unseeded);
  } else {
    call.encode_request(text, 0);
  }
  return std::hash<std::string>{}(text);
}

void WorkerPool::submit(std::shared_ptr<Call> call) {
  if (shutting_down_) return call->finish_error(RpcError::shutting_down);
  const auto now = clock_.now();
  if (!poison_.empty()) {
    const auto it = poison_.find(fingerprint(*call));
    if (it != poison_.end()) {
      if (it->second > now) {
        return call->finish_error(
            RpcError::worker_failed, "Worker failed: this request crashed workers before",
            json{{"attempts", 0}, {"worker", nullptr}, {"poison", true}});
      }
      poison_.erase(it);
    }
  }
  bool any_alive = false, any_ready = false, any_accepting = false;
  for (const auto& s : slots_) {
    if (!s->link || s->link->state() == WorkerLink::State::dead) continue;
    any_alive = true;
    if (s->link->state() == WorkerLink::State::ready) {
      any_ready = true;
      any_accepting = any_accepting || s->link->can_take(SIZE_MAX, now);
    } else if (s->link->state() == WorkerLink::State::starting) {
      any_accepting = true;  // will take work soon
    }
  }
  if (!any_alive) {
    return call->finish_error(RpcError::no_healthy_worker, {}, json{{"retry_after_ms", 500}});
  }
  if (any_ready && !any_accepting) {
    // Every worker's circuit is open.
    return call->finish_error(RpcError::no_healthy_worker, {},
                              json{{"retry_after_ms", retry_after_ms()}, {"reason", "all circuits open"}});
  }
  ++counters_->active;
  call->on_finish([counters = counters_] { --counters->active; });
  const auto priority = call->priority();
  const auto since = call->accepted_at();
  queue_.push_back(std::move(call), priority, since);
  pump();
}

void WorkerPool::set_batching(const BatchQueueConfig& config) {
  batcher_->reconfigure(config);
  queue_.set_enabled(config.priority_queue);
  queue_.set_aging_step(config.priority_aging);
}

json WorkerPool::batch_stats() const {
  return batcher_->stats({queue_.depth(Priority::high), queue_.depth(Priority::normal),
                          queue_.depth(Priority::low)},
                         clock_.now());
}

void WorkerPool::pump() {
  if (!awaiting_.empty()) release_awaiting();
  std::vector<RouteCandidate> candidates;
  std::vector<RouteCandidate> untried;
  const auto now = clock_.now();
  // Streams held back by the stream limit go first, in arrival order, while places free up;
  // once the oldest cannot start, the queue proceeds (unary requests are never held).
  bool held_blocked = false;
  while (true) {
    const bool from_held = !held_blocked && !held_streams_.empty();
    if (!from_held && queue_.empty()) break;
    if (from_held ? held_streams_.front()->done() : queue_.front(now)->done()) {
      if (from_held) {
        held_streams_.pop_front();
      } else {
        queue_.pop(now);
      }
      continue;
    }
    candidates.clear();
    for (const auto& s : slots_) {
      if (s->link && s->link->can_take(static_cast<std::size_t>(config_.max_inflight), now)) {
        // Load = what we hold there plus what the worker says it has queued inside (its
        // heartbeat's queue_depth), so least_busy sees backlog a backend keeps to itself.
        const auto load = s->link->inflight() + static_cast<std::size_t>(std::max<std::int64_t>(
                                                    s->link->report().queue_depth, 0));
        candidates.push_back({s->id, static_cast<int>(load)});
        stream_limiter_->add_worker(s->id, static_cast<int>(s->link->max_batch()));
      }
    }
    if (candidates.empty()) {
      arm_breaker_pump();
      return;
    }
    std::shared_ptr<Call> call;
    if (from_held) {
      call = std::move(held_streams_.front());
      held_streams_.pop_front();
    } else {
      call = queue_.pop(now);
    }
    if (!call->model().empty() && !route_by_model(call, candidates)) continue;
    // A stream needs a place under the stream limit (one failing over keeps its own).
    if (call->streaming() && !stream_limiter_->holds(call.get())) {
      std::erase_if(candidates, [this](const RouteCandidate& c) { return !stream_limiter_->can_start(c.slot); });
      if (candidates.empty()) {
        if (from_held) {
          held_streams_.push_front(std::move(call));
          held_blocked = true;
        } else {
          ++streams_waited_;
          held_streams_.push_back(std::move(call));
        }
        continue;
      }
    }
    // A retry goes to a worker it has not tried, when there is one.
    std::span<const RouteCandidate> choice = candidates;
    if (!call->tried_slots().empty()) {
      untried.clear();
      for (const auto& c : candidates) {
        const auto& tried = call->tried_slots();
        if (std::find(tried.begin(), tried.end(), c.slot) == tried.end()) untried.push_back(c);
      }
      if (!untried.empty()) choice = untried;
    }
    const auto chosen = router_->pick(choice);
    const int slot = choice[*chosen].slot;
    if (call->streaming()) start_stream(call, slot);
    slot_by_id(slot)->link->dispatch(std::move(call));
  }
}

void WorkerPool::arm_breaker_pump() {
  // Queued calls wait for capacity; if the only obstacle is open breakers, nothing else will
  // wake the queue when they turn half-open, so a timer does.
  if (breaker_timer_armed_ || queue_.empty()) return;
  bool open = false;
  for (const auto& s : slots_) {
    open = open || (s->link && s->link->state() == WorkerLink::State::ready &&
                    s->link->breaker().state() == CircuitBreaker::State::open);
  }
  if (!open) return;
  breaker_timer_armed_ = true;
  breaker_timer_.expires_after(Millis(retry_after_ms()));
  breaker_timer_.async_wait([this](boost::system::error_code ec) {
    breaker_timer_armed_ = false;
    if (!ec) pump();
  });
}

std::int64_t WorkerPool::retry_after_ms() const {
  const auto now = clock_.now();
  std::optional<std::int64_t> soonest;
  for (const auto& s : slots_) {
    if (!s->link || s->link->breaker().state() != CircuitBreaker::State::open) continue;
    const auto left = std::chrono::duration_cast<Millis>(s->link->breaker().open_until() - now).count();
    soonest = std::min(soonest.value_or(left), left);
  }
  return std::max<std::int64_t>(soonest.value_or(100), 1);
}

void WorkerPool::cancel(const std::shared_ptr<Call>& call) {
  if (const auto& a = call->assignment()) {
    call->request_cancel();  // remembered in case the worker dies before it answers
    // A worker holds it: ask it to stop; its answer (finish_reason "cancelled") ends the call,
    // unless the call already ended (timeout, client gone) and only the worker's work remains.
    auto holds = [&a](const std::shared_ptr<WorkerLink>& l) { return l && l->generation() == a->generation; };
    for (const auto& s : slots_) {
      if (holds(s->link)) return s->link->cancel(a->worker_request_id);
    }
    for (const auto& l : retired_) {
      if (holds(l)) return l->cancel(a->worker_request_id);
    }
    return;
  }
  queue_.erase(call);
  std::erase(held_streams_, call);
  if (auto w = awaiting_.find(call->model()); w != awaiting_.end()) {
    std::erase(w->second, call);
    if (w->second.empty()) awaiting_.erase(w);
  }
  call->finish_cancelled();
}

void WorkerPool::on_timeout(const std::shared_ptr<Call>& call) {
  if (const auto& a = call->assignment()) {
    for (const auto& s : slots_) {
      if (s->link && s->link->generation() == a->generation) s->link->record_timeout(a->worker_request_id);
    }
  }
  cancel(call);
}

void WorkerPool::on_ready(WorkerLink& link) {
  if (!slot_of(link)) {
    log_->info("worker_id={} pid={} warm spare ready", link.id(), link.pid());
    // A slot may be waiting for a spare (vacated while none was ready).
    for (auto& s : slots_) {
      if (!s->link && !s->parked) {
        fill_slot(*s);
        break;
      }
    }
  }
  pump();
}

void WorkerPool::on_capacity(WorkerLink& link) {
  maybe_recycle(link);
  pump();
}

void WorkerPool::maybe_recycle(WorkerLink& link) {
  Slot* slot = slot_of(link);
  if (!slot || shutting_down_ || link.state() != WorkerLink::State::ready) return;
  bool due = false;
  std::string why;
  if (config_.max_requests > 0) {
    // Per-worker jitter, so a pool started together is not recycled together.
    const auto jitter = config_.max_requests_jitter > 0
                            ? static_cast<std::int64_t>((link.generation() * 2654435761ULL) %
                                                        static_cast<std::uint64_t>(config_.max_requests_jitter + 1))
                            : 0;
    if (static_cast<std::int64_t>(link.completed()) >= config_.max_requests + jitter) {
      due = true;
      why = fmt::format("served {} requests", link.completed());
    }
  }
  if (!due && config_.max_rss_mb > 0 && link.report().rss_bytes > config_.max_rss_mb * 1024 * 1024) {
    due = true;
    why = fmt::format("rss {} MiB above max_rss_mb={}", link.report().rss_bytes >> 20, config_.max_rss_mb);
  }
  if (!due) return;
  log_->info("worker_id={} pid={} recycled: {}", slot->id, link.pid(), why);
  ++stats_.recycled;
  auto old = std::move(slot->link);
  retire(old);
  old->drain(config_.drain_timeout);
  slot->vacant_since = clock_.now();
  fill_slot(*slot);
}

void WorkerPool::vacate(Slot& slot, const LinkLoss* loss) {
  retire(slot.link);
  slot.link.reset();
  slot.vacant_since = clock_.now();
  if (shutting_down_) return;
  ++slot.restarts;
  ++stats_.restarts;
  const auto now = clock_.now();
  const bool crash = loss && loss->worker_at_fault &&
                     (!loss->was_ready || (loss->ready_at && now - *loss->ready_at < config_.crash_loop_window));
  if (!crash) {
    slot.policy.on_clean_death();
    return fill_slot(slot);
  }
  ++stats_.crashes;
  const auto delay = slot.policy.on_crash(now, uniform());
  if (!delay) {
    slot.parked = true;
    log_->error("worker_id={} PARKED: more than {} crashes within {} s (last: {}); the pool is "
                "degraded until `droverctl restart {}`",
                slot.id, config_.max_restarts, config_.restart_window.count(), loss->reason, slot.id);
    return;
  }
  // A ready spare is proven to work: promote it now; only fresh spawns wait out the backoff.
  if (std::any_of(spares_.begin(), spares_.end(),
                  [](const auto& l) { return l->state() == WorkerLink::State::ready; })) {
    return fill_slot(slot);
  }
  log_->warn("worker_id={} crash loop ({} in a row); respawning in {} ms", slot.id, slot.policy.streak(),
             delay->count());
  slot.respawn_timer = std::make_unique<asio::steady_timer>(io_, *delay);
  slot.respawn_timer->async_wait([this, id = slot.id](boost::system::error_code ec) {
    if (ec || shutting_down_) return;
    if (Slot* s = slot_by_id(id)) fill_slot(*s);
  });
}

void WorkerPool::on_lost(WorkerLink& link, const LinkLoss& loss,
                         std::vector<std::shared_ptr<Call>> orphans) {
  if (Slot* s = slot_of(link)) {
    vacate(*s, &loss);
  } else if (const auto it = std::find_if(spares_.begin(), spares_.end(),
                                          [&link](const auto& l) { return l.get() == &link; });
             it != spares_.end()) {
    retire(*it);
    spares_.erase(it);
    const bool crash = loss.worker_at_fault && !loss.was_ready;
    const auto delay = crash ? spare_policy_.on_crash(clock_.now(), uniform()) : std::optional<Millis>(Millis(0));
    if (!crash) spare_policy_.on_clean_death();
    if (!delay) {
      log_->error("warm spares keep crashing before becoming ready; not starting more");
    } else if (!shutting_down_) {
      spare_respawn_timer_ = std::make_unique<asio::steady_timer>(io_, *delay);
      spare_respawn_timer_->async_wait([this](boost::system::error_code ec) {
        if (!ec) spawn_spare();
      });
    }
  }
  for (auto it = orphans.rbegin(); it != orphans.rend(); ++it) {
    retry_or_fail(std::move(*it), loss, link.slot());
  }
  pump();
}

void WorkerPool::retry_or_fail(std::shared_ptr<Call> call, const LinkLoss& loss, int worker_slot) {
  if (call->done()) return;
  // Cancelled (or its client gone) while the dead worker held it: it ends here, not elsewhere.
  if (call->cancel_requested()) return call->finish_cancelled();
  call->note_loss(loss.worker_at_fault);
  auto data = [&](const char* reason) {
    return json{{"attempts", call->attempts()}, {"worker", worker_slot}, {"reason", reason}};
  };
  if (shutting_down_) {
    return call->finish_error(RpcError::shutting_down, {}, data("worker stopped during shutdown"));
  }
  // A worker process that is gone held work nobody answered: that is failover, outside the
  // retry budget. A worker failed while alive (hung, stalled, garbage) is a retry (RetryPolicy).
  const auto decision = retry_.decide(
      {.cause = loss.process_exited ? RetryPolicy::Cause::failover : RetryPolicy::Cause::retry,
       .attempts_made = call->attempts(),
       .blamed_losses = call->blamed_losses(),
       .counted = call->retrying(),
       .retries_active = counters_->retrying,
       .requests_active = counters_->active},
      uniform());
  using Verdict = RetryPolicy::Decision::Verdict;
  if (decision.verdict == Verdict::poison) {
    ++stats_.poisoned;
    poison_[fingerprint(*call)] = clock_.now() + retry_.config().poison_ttl;
    log_->error("request_id={} is poison: {} workers failed while running it; not retrying",
                call->request_id(), call->blamed_losses());
    json d = data("request crashed or hung several workers");
    d["poison"] = true;
    return call->finish_error(RpcError::worker_failed, "Worker failed: poison request", d);
  }
  if (decision.verdict == Verdict::attempts_exhausted) {
    log_->warn("request_id={} worker_id={} failed after {} attempts: {}", call->request_id(),
               worker_slot, call->attempts(), loss.reason);
    return call->finish_error(RpcError::worker_failed, fmt::format("Worker failed: {}", loss.reason),
                              data("retries exhausted"));
  }
  if (decision.verdict == Verdict::budget_exhausted) {
    ++stats_.retry_budget_exhausted;
    log_->warn("request_id={} worker_id={} not retried: retry budget exhausted ({} retries in "
               "progress of {} requests): {}",
               call->request_id(), worker_slot, counters_->retrying, counters_->active, loss.reason);
    return call->finish_error(RpcError::worker_failed, fmt::format("Worker failed: {}", loss.reason),
                              data("retry budget exhausted"));
  }
  if (decision.count_against_budget) {
    call->set_retrying();
    ++counters_->retrying;
    call->on_finish([counters = counters_] { --counters->retrying; });
  }
  ++stats_.retries;
  if (call->chunks_sent() > 0) ++stats_.failovers;
  log_->info("request_id={} worker_id={} {} on another worker after: {}", call->request_id(),
             worker_slot, call->chunks_sent() > 0 ? "failing over" : "retrying", loss.reason);
  call->mark_requeued();
  const Millis delay = decision.delay;
  if (delay.count() == 0) {
    const auto priority = call->priority();
    const auto since = call->accepted_at();
    queue_.push_front(std::move(call), priority, since);
    return;
  }
  auto timer = std::make_shared<asio::steady_timer>(io_, delay);
  timer->async_wait([this, timer, call = std::move(call)](boost::system::error_code ec) mutable {
    if (ec || call->done()) return;
    if (shutting_down_) return call->finish_error(RpcError::shutting_down);
    const auto priority = call->priority();
    const auto since = call->accepted_at();
    queue_.push_front(std::move(call), priority, since);
    pump();
  });
}

void WorkerPool::on_reaped(WorkerLink& link, const ExitStatus& status) {
  log_->debug("worker_id={} generation={} reaped: {}", link.id(), link.generation(), status.describe());
  std::erase_if(retired_, [&link](const auto& l) { return l.get() == &link; });
  check_shutdown_done();
}

std::string WorkerPool::kill(int id, int sig) {
  auto link = find_link(id);
  if (!link || link->state() == WorkerLink::State::dead) return fmt::format("no live worker with id {}", id);
  log_->warn("worker_id={} pid={} signal {} sent by operator", id, link->pid(), sig);
  link->signal(sig, /*by_operator=*/true);
  return {};
}

std::string WorkerPool::inject(int id, const std::string& fault) {
  if (std::find(kFaults.begin(), kFaults.end(), fault) == kFaults.end()) {
    return fmt::format("unknown fault '{}' (allowed: {})", fault, fmt::join(kFaults, ", "));
  }
  auto link = find_link(id);
  if (!link || link->state() == WorkerLink::State::dead) return fmt::format("no live worker with id {}", id);
  // A fault the worker cannot enact would be logged by the worker and ignored while the
  // operator is told it was injected: refuse it here, naming what this worker can do. Workers
  // that have not said (not through init yet, or predating init `faults`) get the faults every
  // runtime enacts.
  static const std::vector<std::string> kEveryRuntime = {"crash", "hang", "garbage"};
  const auto& declared = link->faults();
  const auto& supported = declared ? *declared : kEveryRuntime;
  const bool lacks_shm = (fault == "ring_garbage" || fault == "exit_after_reply") &&
                         std::string_view(link->transport()) != "shm";
  if (lacks_shm || std::find(supported.begin(), supported.end(), fault) == supported.end()) {
    return fmt::format("worker {} cannot enact fault '{}' ({}: {}{})", id, fault,
                       declared ? "it supports" : "it has not reported its faults yet; allowed",
                       fmt::join(supported, ", "),
                       lacks_shm ? "; this fault needs the shm transport, the worker uses the socket" : "");
  }
  log_->warn("worker_id={} pid={} fault '{}' injected by operator", id, link->pid(), fault);
  link->inject(fault);
  return {};
}

std::string WorkerPool::restart(int id) {
  Slot* slot = slot_by_id(id);
  if (!slot) return fmt::format("no worker slot with id {}", id);
  if (slot->parked) {
    log_->warn("worker_id={} unparked by operator", id);
    slot->parked = false;
    slot->policy.reset();
  }
  if (slot->link) {
    log_->info("worker_id={} pid={} restarting gracefully (drain, then replace)", id, slot->link->pid());
    auto old = std::move(slot->link);
    retire(old);
    old->drain(config_.drain_timeout);
    slot->vacant_since = clock_.now();
  }
  fill_slot(*slot);
  pump();
  return {};
}

std::string WorkerPool::scale(int count) {
  if (count < 1 || count > 256) return fmt::format("count must be in 1..256, got {}", count);
  log_->info("scaling from {} to {} workers", slots_.size(), count);
  while (static_cast<int>(slots_.size()) < count) {
    int id = 0;
    while (slot_by_id(id)) ++id;
    slots_.push_back(std::unique_ptr<Slot>(new Slot{id, nullptr, 0, false, RestartPolicy(config_), nullptr, {}}));
    fill_slot(*slots_.back());
  }
  while (static_cast<int>(slots_.size()) > count) {
    auto& slot = slots_.back();
    if (slot->respawn_timer) slot->respawn_timer->cancel();
    if (slot->link) {
      auto old = std::move(slot->link);
      retire(old);
      old->drain(config_.drain_timeout);
    }
    stream_limiter_->remove_worker(slot->id);
    slots_.pop_back();
  }
  config_.count = count;
  pump();
  return {};
}

void WorkerPool::reconfigure(const WorkersConfig& workers, const CircuitBreakerConfig& breaker,
                             const RetryConfig& retry, RoutingStrategy strategy) {
  const int count = workers.count;
  const int live_count = config_.count;
  config_ = workers;
  config_.count = live_count;  // scale() below moves it
  breaker_config_ = breaker;
  for (auto& s : slots_) {
    if (s->link) s->link->reconfigure_breaker(breaker);
  }
  for (auto& l : spares_) l->reconfigure_breaker(breaker);
  retry_ = RetryPolicy(retry);
  if (strategy != strategy_) {
    strategy_ = strategy;
    router_ = make_router(strategy);
  }
  fit_spares();
  if (count != live_count) scale(count);
  pump();
}

void WorkerPool::fit_spares() {
  while (!shutting_down_ && static_cast<int>(spares_.size()) < spares_wanted()) spawn_spare();
  while (static_cast<int>(spares_.size()) > spares_wanted()) {
    auto extra = std::move(spares_.back());
    spares_.pop_back();
    retire(extra);
    extra->drain(config_.drain_timeout);
  }
}

void WorkerPool::set_extra_spares(int extra) {
  if (extra == extra_spares_) return;
  log_->info("warm spares {} -> {} (workers.warm_spares {} + {} extra)", spares_wanted(),
             config_.warm_spares + extra, config_.warm_spares, extra);
  extra_spares_ = extra;
  fit_spares();
}

void WorkerPool::shutdown(std::function<void()> done) {
  shutting_down_ = true;
  on_shutdown_done_ = std::move(done);
  queue_.drain([](std::shared_ptr<Call>& call) { call->finish_error(RpcError::shutting_down); });
  for (auto& call : std::exchange(held_streams_, {})) call->finish_error(RpcError::shutting_down);
  stream_sample_timer_.cancel();
  for (auto& [model, calls] : std::exchange(awaiting_, {})) {
    for (auto& call : calls) call->finish_error(RpcError::shutting_down);
  }
  if (idle_timer_) idle_timer_->cancel();
  breaker_timer_.cancel();
  if (spare_respawn_timer_) spare_respawn_timer_->cancel();
  for (auto& s : slots_) {
    if (s->respawn_timer) s->respawn_timer->cancel();
    if (s->link) {
      auto old = std::move(s->link);
      retire(old);
      old->drain(config_.drain_timeout);
    }
  }
  for (auto& l : std::exchange(spares_, {})) {
    retire(l);
    l->drain(config_.drain_timeout);
  }
  check_shutdown_done();
}

void WorkerPool::check_shutdown_done() {
  if (!shutting_down_ || !retired_.empty() || !spares_.empty()) return;
  for (const auto& s : slots_) {
    if (s->link) return;
  }
  if (auto done = std::exchange(on_shutdown_done_, nullptr)) done();
}

PoolCounts WorkerPool::counts() const {
  PoolCounts c;
  c.total = static_cast<int>(slots_.size());
  for (const auto& s : slots_) {
    if (s->parked) ++c.parked;
    if (!s->link || s->link->state() != WorkerLink::State::ready) continue;
    ++c.ready;
    if (s->link->breaker().state() != CircuitBreaker::State::closed) ++c.open_breakers;
  }
  for (const auto& l : spares_) {
    if (l->state() == WorkerLink::State::ready) ++c.spares_ready;
  }
  return c;
}

std::vector<WorkerSnapshot> WorkerPool::snapshot() const {
  std::vector<WorkerSnapshot> out;
  const auto now = clock_.now();
  auto describe = [&out, now](const WorkerLink& l, int id, int restarts, const char* state_override) {
    WorkerSnapshot w;
    w.id = id;
    w.pid = l.pid();
    w.state = state_override ? state_override : to_string(l.state());
    w.inflight = l.inflight();
    w.breaker = std::string(to_string(l.breaker().state()));
    w.breaker_transitions = l.breaker().transitions();
    w.restarts = restarts;
    w.uptime_s = std::chrono::duration<double>(now - l.started_at()).count();
    if (l.report().last_heartbeat) {
      w.heartbeat_age_ms = std::chrono::duration_cast<Millis>(now - *l.report().last_heartbeat).count();
    }
    w.rss_bytes = l.report().rss_bytes;
    w.models = l.report().models;
    w.transport = l.transport();
    w.transport_counters = l.transport_counters();
    out.push_back(std::move(w));
  };
  for (const auto& s : slots_) {
    if (s->link && s->link->state() != WorkerLink::State::dead) {
      describe(*s->link, s->id, s->restarts, nullptr);
    } else if (s->parked) {
      WorkerSnapshot w;
      w.id = s->id;
      w.state = "parked";
      w.restarts = s->restarts;
      out.push_back(std::move(w));
    }
  }
  for (const auto& l : spares_) {
    if (l->state() != WorkerLink::State::dead) {
      describe(*l, l->id(), 0, l->state() == WorkerLink::State::ready ? "spare" : nullptr);
    }
  }
  for (const auto& l : retired_) {
    if (l->state() != WorkerLink::State::dead) describe(*l, l->id(), 0, nullptr);
  }
  return out;
}

}  // namespace drover::supervisor
