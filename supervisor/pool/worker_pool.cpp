#include "supervisor/pool/worker_pool.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "common/log.hpp"

namespace drover::supervisor {
namespace {

// Backoff before respawning a slot whose worker died before becoming ready: 100 ms doubling
// to 10 s, so a broken worker command costs one spawn per 10 s instead of a busy loop. A
// worker that dies after becoming ready (a kill, a crash under load) is replaced at once.
Millis respawn_delay(int crash_streak) {
  if (crash_streak <= 0) return Millis(0);
  const int shift = std::min(crash_streak - 1, 7);
  return std::min(Millis(100) * (1 << shift), Millis(10'000));
}

}  // namespace

WorkerPool::WorkerPool(asio::io_context& io, const WorkersConfig& config, std::string run_dir,
                       RoutingStrategy strategy)
    : io_(io),
      config_(config),
      run_dir_(std::move(run_dir)),
      router_(make_router(strategy)),
      log_(component_logger("pool")) {
  slots_.resize(static_cast<std::size_t>(config_.count));
  for (int i = 0; i < config_.count; ++i) slots_[static_cast<std::size_t>(i)].id = i;
}

WorkerPool::~WorkerPool() = default;

void WorkerPool::start() {
  log_->info("starting {} workers: {}", slots_.size(), fmt::join(config_.command, " "));
  for (auto& slot : slots_) spawn_slot(slot);
}

void WorkerPool::spawn_slot(Slot& slot) {
  ++slot.generation;
  WorkerLinkOptions opt;
  opt.slot = slot.id;
  opt.generation = slot.generation;
  opt.socket_path = fmt::format("{}/w{}.{}.sock", run_dir_, slot.id, slot.generation);
  opt.command = config_.command;
  opt.backend = config_.backend;
  opt.start_timeout = config_.start_timeout;
  opt.heartbeat_interval = config_.heartbeat_interval;
  slot.link = std::make_shared<WorkerLink>(io_, std::move(opt), *this);
  slot.link->start();
}

void WorkerPool::schedule_respawn(Slot& slot) {
  const Millis delay = respawn_delay(slot.crash_streak);
  if (delay.count() == 0) {
    spawn_slot(slot);
    return;
  }
  log_->warn("worker_id={} died {} times before becoming ready; respawning in {} ms", slot.id,
             slot.crash_streak, delay.count());
  slot.respawn_timer = std::make_unique<asio::steady_timer>(io_, delay);
  slot.respawn_timer->async_wait([this, id = slot.id](boost::system::error_code ec) {
    if (ec || shutting_down_) return;
    Slot& s = slots_[static_cast<std::size_t>(id)];
    if (!s.link) spawn_slot(s);
  });
}

WorkerPool::Slot* WorkerPool::slot_of(const WorkerLink& link) {
  if (link.slot() < 0 || static_cast<std::size_t>(link.slot()) >= slots_.size()) return nullptr;
  Slot& s = slots_[static_cast<std::size_t>(link.slot())];
  return s.link.get() == &link ? &s : nullptr;
}

void WorkerPool::submit(std::shared_ptr<Call> call) {
  if (shutting_down_) {
    call->finish_error(RpcError::shutting_down);
    return;
  }
  const bool any_alive = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) {
    return s.link && s.link->state() != WorkerLink::State::dead;
  });
  if (!any_alive) {
    call->finish_error(RpcError::no_healthy_worker, {}, json{{"retry_after_ms", 500}});
    return;
  }
  queue_.push_back(std::move(call));
  pump();
}

void WorkerPool::pump() {
  std::vector<RouteCandidate> candidates;
  while (!queue_.empty()) {
    candidates.clear();
    for (const auto& s : slots_) {
      if (s.link && s.link->state() == WorkerLink::State::ready &&
          s.link->inflight() < static_cast<std::size_t>(config_.max_inflight)) {
        candidates.push_back({s.id, static_cast<int>(s.link->inflight())});
      }
    }
    if (candidates.empty()) return;
    std::shared_ptr<Call> call = std::move(queue_.front());
    queue_.pop_front();
    if (call->done()) continue;
    const auto chosen = router_->pick(candidates);
    slots_[static_cast<std::size_t>(candidates[*chosen].slot)].link->dispatch(std::move(call));
  }
}

void WorkerPool::cancel(const std::shared_ptr<Call>& call) {
  if (const auto& a = call->assignment()) {
    // A worker holds it: ask it to stop; its answer (finish_reason "cancelled") ends the call,
    // unless the call already ended (timeout, client gone) and only the worker's work remains.
    if (a->slot < 0 || static_cast<std::size_t>(a->slot) >= slots_.size()) return;
    const Slot& s = slots_[static_cast<std::size_t>(a->slot)];
    if (s.link && s.link->generation() == a->generation) s.link->cancel(a->worker_request_id);
    return;
  }
  const auto it = std::find(queue_.begin(), queue_.end(), call);
  if (it != queue_.end()) queue_.erase(it);
  call->finish_cancelled();
}

bool WorkerPool::kill(int slot, int sig) {
  if (slot < 0 || static_cast<std::size_t>(slot) >= slots_.size()) return false;
  const Slot& s = slots_[static_cast<std::size_t>(slot)];
  if (!s.link || s.link->state() == WorkerLink::State::dead) return false;
  log_->warn("worker_id={} pid={} signal {} sent by operator", slot, s.link->pid(), sig);
  s.link->signal(sig);
  return true;
}

void WorkerPool::on_ready(WorkerLink& link) {
  if (Slot* s = slot_of(link)) s->crash_streak = 0;
  pump();
}

void WorkerPool::on_capacity(WorkerLink&) { pump(); }

void WorkerPool::on_lost(WorkerLink& link, const std::string& reason,
                         std::vector<std::shared_ptr<Call>> orphans) {
  if (Slot* s = slot_of(link)) {
    retired_.push_back(std::move(s->link));
    if (!shutting_down_) {
      ++s->restarts;
      s->crash_streak = link.ready_at() ? 0 : s->crash_streak + 1;
      schedule_respawn(*s);
    }
  }
  // Retries go to the front, in their original order, ahead of requests that came later.
  for (auto it = orphans.rbegin(); it != orphans.rend(); ++it) {
    retry_or_fail(std::move(*it), link.slot(), reason);
  }
  pump();
}

void WorkerPool::retry_or_fail(std::shared_ptr<Call> call, int worker_slot,
                               const std::string& reason) {
  if (call->done()) return;
  // Safe to re-run only when the client has seen nothing of this attempt; once.
  if (!shutting_down_ && call->chunks_sent() == 0 && call->attempts() < 2) {
    log_->info("request_id={} worker_id={} retrying on another worker after: {}",
               call->request_id(), worker_slot, reason);
    call->mark_requeued();
    queue_.push_front(std::move(call));
    return;
  }
  log_->warn("request_id={} worker_id={} failed after {} attempts: {}", call->request_id(),
             worker_slot, call->attempts(), reason);
  call->finish_error(RpcError::worker_failed, fmt::format("Worker failed: {}", reason),
                     json{{"attempts", call->attempts()}, {"worker", worker_slot}});
}

void WorkerPool::on_reaped(WorkerLink& link, const ExitStatus& status) {
  log_->debug("worker_id={} generation={} reaped: {}", link.slot(), link.generation(),
              status.describe());
  std::erase_if(retired_, [&link](const auto& l) { return l.get() == &link; });
  if (shutting_down_ && retired_.empty() &&
      std::none_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.link != nullptr; })) {
    if (auto done = std::exchange(on_shutdown_done_, nullptr)) done();
  }
}

void WorkerPool::shutdown(std::function<void()> done) {
  shutting_down_ = true;
  on_shutdown_done_ = std::move(done);
  for (auto& call : std::exchange(queue_, {})) call->finish_error(RpcError::shutting_down);
  bool any = !retired_.empty();
  for (auto& s : slots_) {
    if (s.respawn_timer) s.respawn_timer->cancel();
    if (s.link) {
      any = true;
      s.link->stop();
    }
  }
  if (!any) {
    if (auto cb = std::exchange(on_shutdown_done_, nullptr)) cb();
  }
}

PoolCounts WorkerPool::counts() const {
  PoolCounts c;
  c.total = static_cast<int>(slots_.size());
  for (const auto& s : slots_) {
    if (s.link && s.link->state() == WorkerLink::State::ready) ++c.ready;
  }
  return c;
}

std::vector<WorkerSnapshot> WorkerPool::snapshot() const {
  std::vector<WorkerSnapshot> out;
  const auto now = Clock::now();
  for (const auto& s : slots_) {
    if (!s.link || s.link->state() == WorkerLink::State::dead) continue;
    const WorkerLink& l = *s.link;
    WorkerSnapshot w;
    w.id = s.id;
    w.pid = l.pid();
    w.state = to_string(l.state());
    w.inflight = l.inflight();
    w.restarts = s.restarts;
    w.uptime_s = std::chrono::duration<double>(now - l.started_at()).count();
    if (l.report().last_heartbeat) {
      w.heartbeat_age_ms =
          std::chrono::duration_cast<Millis>(now - *l.report().last_heartbeat).count();
    }
    w.rss_bytes = l.report().rss_bytes;
    w.models = l.report().models;
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace drover::supervisor
