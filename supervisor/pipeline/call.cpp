#include "supervisor/pipeline/call.hpp"

#include "proto/worker_messages.hpp"

namespace drover::supervisor {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

Call::Call(CallKind kind, std::string request_id, json client_id, bool notification,
           std::string worker_method, json worker_params, CallSink sink)
    : kind_(kind),
      request_id_(std::move(request_id)),
      client_id_(std::move(client_id)),
      notification_(notification),
      worker_method_(std::move(worker_method)),
      worker_params_(std::move(worker_params)),
      sink_(std::move(sink)) {}

void Call::mark_dispatched(const Assignment& a) {
  state_ = State::dispatched;
  ++attempts_;
  last_worker_ = a.slot;
  assignment_ = a;
  tried_slots_.push_back(a.slot);
  if (!dispatched_at_) {
    dispatched_at_ = Clock::now();
    if (auto relay = relay_.lock()) relay->on_dispatched();
  }
}

Call::ChunkResult Call::deliver_chunk(const std::string& text, std::uint64_t worker_index) {
  if (done()) return ChunkResult::skipped;
  // Unary calls and notifications show nothing until the end, so they stay retryable.
  if (!stream_ || notification_) {
    if (!first_output_at_) first_output_at_ = Clock::now();
    return ChunkResult::skipped;
  }
  if (worker_index < chunks_sent_) {
    // A failover replay of a chunk the client already has: it must be the same text.
    return sent_chunks_[worker_index] == text ? ChunkResult::skipped : ChunkResult::diverged;
  }
  if (worker_index != chunks_sent_) return ChunkResult::diverged;  // a gap in the stream
  if (!first_output_at_) first_output_at_ = Clock::now();
  const std::uint64_t index = chunks_sent_++;
  sent_chunks_.push_back(text);
  if (auto relay = relay_.lock()) relay->on_chunk(text, index);
  if (!sink_.chunk) return ChunkResult::delivered;
  return sink_.chunk(StreamChunk{this, request_id_, client_id_, index, text})
             ? ChunkResult::delivered
             : ChunkResult::slow_consumer;
}

std::string StreamChunk::notification() const {
  const json params = {{"id", client_id}, {"index", index}, {"text", text}};
  return proto::make_notification(proto::worker::method::kChunk, params);
}

void Call::finish_from_worker(const json& worker_result, int worker_slot) {
  if (done()) return;
  const auto now = Clock::now();
  if (!first_output_at_) first_output_at_ = now;
  if (auto relay = relay_.lock()) relay->on_result(worker_result, worker_slot);
  json result = worker_result.is_object() ? worker_result : json{{"value", worker_result}};
  if (const auto r = result.find("finish_reason"); r != result.end() && *r == "cancelled") {
    outcome_.cancelled = true;
  }
  if (kind_ == CallKind::generate) {
    result["worker"] = worker_slot >= 0 ? json(worker_slot) : json(nullptr);
    result["cache"] = cache_status_;
    const auto dispatched = dispatched_at_.value_or(now);
    result["timing"] = {{"queue_ms", ms_between(accepted_at_, dispatched)},
                        {"ttft_ms", ms_between(accepted_at_, *first_output_at_)},
                        {"total_ms", ms_between(accepted_at_, now)}};
  }
  if (kind_ == CallKind::tokenize) {
    // The worker answered batch_tokenize for a batch of this one text ({"tokens": [[...]]});
    // the client's tokenize result is that one list ({"tokens": [...]}, DESIGN.md section 4).
    if (const auto t = result.find("tokens");
        t != result.end() && t->is_array() && t->size() == 1 && (*t)[0].is_array()) {
      json tokens = std::move((*t)[0]);
      result["tokens"] = std::move(tokens);
    }
  }
  finish_result(result);
}

void Call::finish_result(const json& result) {
  if (done()) return;
  complete(notification_ ? std::string() : proto::make_result(client_id_, result));
}

void Call::finish_cancelled() {
  if (done()) return;
  if (kind_ != CallKind::generate) {
    finish_error(RpcError::cancelled);
    return;
  }
  // A stream detached from a shared run (pipeline/shared_execution.hpp) has chunks: its text
  // is what it received, one token per chunk as the workers send them.
  std::string text;
  for (const auto& c : sent_chunks_) text += c;
  finish_from_worker({{"text", std::move(text)},
                      {"finish_reason", "cancelled"},
                      {"usage", {{"prompt_tokens", 0}, {"completion_tokens", chunks_sent_}}}},
                     last_worker_);
}

void Call::finish_error(RpcError code, std::string_view message, const json& data) {
  if (done()) return;
  if (auto relay = relay_.lock()) relay->on_error(code, message, data);
  outcome_.code = code_of(code);
  outcome_.cancelled = code == RpcError::cancelled;
  complete(notification_ ? std::string() : proto::make_error(client_id_, code, message, data));
}

void Call::complete(std::string&& reply) {
  state_ = State::done;
  outcome_.total = Clock::now() - accepted_at_;
  if (first_output_at_) outcome_.ttft = *first_output_at_ - accepted_at_;
  if (deadline_) deadline_->cancel();
  relay_.reset();
  if (!reply.empty() && sink_.reply) sink_.reply(std::move(reply));
  sink_ = {};
  auto hooks = std::move(finish_hooks_);
  for (auto& hook : hooks) hook();
}

}  // namespace drover::supervisor
