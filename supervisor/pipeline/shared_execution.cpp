#include "supervisor/pipeline/shared_execution.hpp"

#include <algorithm>

namespace drover::supervisor {

std::shared_ptr<SharedExecution> SharedExecution::create(std::shared_ptr<Call> execution,
                                                         std::size_t max_replay_bytes) {
  std::shared_ptr<SharedExecution> self(
      new SharedExecution(std::move(execution), max_replay_bytes));
  self->execution_->set_relay(self);
  return self;
}

void SharedExecution::subscribe(const std::shared_ptr<Call>& call, std::string_view cache_status) {
  subscribers_.push_back(Subscriber{call, std::string(cache_status)});
  // Whichever way the client's call ends (answered, cancelled, timed out, client gone), it
  // leaves the run; weak, because the run may be over and gone first.
  call->on_finish([weak = weak_from_this(), raw = call.get()] {
    if (auto self = weak.lock()) self->unsubscribe(*raw);
  });
  if (dispatched_) call->note_dispatched();
  for (std::size_t i = 0; i < chunks_.size() && !call->done(); ++i) forward(*call, chunks_[i], i);
}

void SharedExecution::unsubscribe(const Call& call) {
  std::erase_if(subscribers_, [&call](const Subscriber& s) { return s.call.get() == &call; });
  if (subscribers_.empty() && !finished_ && !abandoned_) {
    abandoned_ = true;
    if (on_abandoned_) std::exchange(on_abandoned_, {})(call.outcome());
  }
}

void SharedExecution::forward(Call& call, const std::string& text, std::uint64_t index) {
  switch (call.deliver_chunk(text, index)) {
    case Call::ChunkResult::delivered:
    case Call::ChunkResult::skipped:
      return;
    case Call::ChunkResult::slow_consumer:
      return call.finish_error(RpcError::slow_consumer);
    case Call::ChunkResult::diverged:
      // Cannot happen with chunks forwarded in order; fail loudly rather than send a gap.
      return call.finish_error(RpcError::internal_error,
                               "Internal error: shared stream out of order");
  }
}

void SharedExecution::on_dispatched() {
  dispatched_ = true;
  for (auto& s : subscribers_) s.call->note_dispatched();
}

void SharedExecution::on_chunk(const std::string& text, std::uint64_t index) {
  auto self = shared_from_this();
  if (!replay_overflowed_) {
    chunk_bytes_ += text.size();
    if (chunk_bytes_ > max_replay_bytes_) {
      replay_overflowed_ = true;
      chunks_ = {};
    } else {
      chunks_.push_back(text);
    }
  }
  // A copy: a subscriber that fails here leaves the list while we walk it.
  const auto subscribers = subscribers_;
  for (const auto& s : subscribers) forward(*s.call, text, index);
}

void SharedExecution::on_result(const proto::worker::GenerateResult& worker_result,
                                int worker_slot) {
  auto self = shared_from_this();
  if (finished_) return;
  finished_ = true;
  if (on_finished_) std::exchange(on_finished_, {})(&worker_result, worker_slot);
  const auto subscribers = std::exchange(subscribers_, {});
  for (const auto& s : subscribers) {
    s.call->set_cache_status(s.cache_status);
    s.call->finish_generate(worker_result, worker_slot);
  }
}

void SharedExecution::on_error(RpcError code, std::string_view message, std::string_view data) {
  auto self = shared_from_this();
  if (finished_) return;
  finished_ = true;
  if (on_finished_) std::exchange(on_finished_, {})(nullptr, -1);
  const auto subscribers = std::exchange(subscribers_, {});
  for (const auto& s : subscribers) s.call->finish_error_text(code, message, data);
}

}  // namespace drover::supervisor
