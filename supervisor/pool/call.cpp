#include "supervisor/pool/call.hpp"

#include "proto/worker_codec.hpp"

namespace drover::supervisor {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

Call::Call(std::string request_id, proto::RpcId client_id, bool notification,
           WorkerRequest request, CallSink sink)
    : kind_(static_cast<CallKind>(request.index())),
      request_id_(std::move(request_id)),
      client_id_(std::move(client_id)),
      notification_(notification),
      request_(std::move(request)),
      sink_(std::move(sink)) {
  deadline_.call = this;
}

std::string_view Call::worker_method() const {
  namespace wm = proto::worker::method;
  switch (kind_) {
    case CallKind::generate: return wm::kGenerate;
    case CallKind::tokenize: return wm::kBatchTokenize;
    case CallKind::detokenize: return wm::kDetokenize;
  }
  return wm::kGenerate;
}

void Call::encode_request(std::string& out, std::uint64_t id) const {
  namespace w = proto::worker;
  if (const auto* g = std::get_if<w::GenerateRequest>(&request_)) return w::encode_generate(out, id, *g);
  if (const auto* d = std::get_if<w::DetokenizeRequest>(&request_)) {
    return w::encode_detokenize(out, id, *d);
  }
  const auto& t = std::get<w::BatchTokenizeRequest>(request_);
  w::encode_batch_tokenize(out, id, t.model,
                           std::vector<std::string_view>(t.texts.begin(), t.texts.end()));
}

void Call::mark_dispatched(const Assignment& a) {
  state_ = State::dispatched;
  ++attempts_;
  last_worker_ = a.slot;
  assignment_ = a;
  tried_slots_.push_back(a.slot);
  if (!dispatched_at_) {
    dispatched_at_ = std::chrono::steady_clock::now();
    if (auto relay = relay_.lock()) relay->on_dispatched();
  }
}

Call::ChunkResult Call::deliver_chunk(const std::string& text, std::uint64_t worker_index) {
  if (done()) return ChunkResult::skipped;
  // Unary calls and notifications show nothing until the end, so they stay retryable.
  if (!stream_ || notification_) {
    if (!first_output_at_) first_output_at_ = std::chrono::steady_clock::now();
    return ChunkResult::skipped;
  }
  if (worker_index < chunks_sent_) {
    // A failover replay of a chunk the client already has: it must be the same text.
    return sent_chunks_[worker_index] == text ? ChunkResult::skipped : ChunkResult::diverged;
  }
  if (worker_index != chunks_sent_) return ChunkResult::diverged;  // a gap in the stream
  if (!first_output_at_) first_output_at_ = std::chrono::steady_clock::now();
  const std::uint64_t index = chunks_sent_++;
  sent_chunks_.push_back(text);
  if (auto relay = relay_.lock()) relay->on_chunk(text, index);
  if (!sink_.chunk) return ChunkResult::delivered;
  return sink_.chunk(StreamChunk{this, request_id_, client_id_, index, text})
             ? ChunkResult::delivered
             : ChunkResult::slow_consumer;
}

std::string StreamChunk::notification() const {
  std::string out;
  out.reserve(80 + client_id.size() + text.size());
  proto::encode_chunk_notification(out, client_id, index, text);
  return out;
}

void Call::finish_generate(const proto::worker::GenerateResult& result, int worker_slot) {
  if (done()) return;
  const auto now = std::chrono::steady_clock::now();
  if (!first_output_at_) first_output_at_ = now;
  if (auto relay = relay_.lock()) relay->on_result(result, worker_slot);
  outcome_.cancelled = result.finish_reason == "cancelled";
  if (notification_) return complete({});
  const auto dispatched = dispatched_at_.value_or(now);
  const proto::GenerateTiming timing{ms_between(accepted_at_, dispatched),
                                     ms_between(accepted_at_, *first_output_at_),
                                     ms_between(accepted_at_, now)};
  std::string reply;
  reply.reserve(200 + client_id_.size() + result.text.size());
  proto::open_result(reply, client_id_);
  proto::encode_generate_result(reply, result, worker_slot, cache_status_, timing);
  reply += '}';
  complete(std::move(reply));
}

void Call::finish_tokens(const std::vector<std::int64_t>& tokens) {
  if (done()) return;
  if (!first_output_at_) first_output_at_ = std::chrono::steady_clock::now();
  std::string result;
  proto::encode_tokens_result(result, tokens);
  finish_result_text(result);
}

void Call::finish_text(std::string_view text) {
  if (done()) return;
  if (!first_output_at_) first_output_at_ = std::chrono::steady_clock::now();
  std::string result;
  proto::encode_text_result(result, text);
  finish_result_text(result);
}

void Call::finish_result_text(std::string_view result) {
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
  proto::worker::GenerateResult result{std::move(text), "cancelled",
                                       {0, static_cast<std::int64_t>(chunks_sent_)}};
  finish_generate(result, last_worker_);
}

void Call::finish_error(RpcError code, std::string_view message, const json& data) {
  if (done()) return;
  finish_error_text(code, message, data.is_null() ? std::string() : proto::dump(data));
}

void Call::finish_error_text(RpcError code, std::string_view message, std::string_view data) {
  if (done()) return;
  if (auto relay = relay_.lock()) relay->on_error(code, message, data);
  outcome_.code = code_of(code);
  outcome_.cancelled = code == RpcError::cancelled;
  complete(notification_ ? std::string() : proto::make_error(client_id_, code, message, data));
}

void Call::complete(std::string&& reply) {
  state_ = State::done;
  outcome_.total = std::chrono::steady_clock::now() - accepted_at_;
  if (first_output_at_) outcome_.ttft = *first_output_at_ - accepted_at_;
  deadline_.cancel();
  relay_.reset();
  if (!reply.empty() && sink_.reply) sink_.reply(std::move(reply));
  sink_ = {};
  auto hooks = std::move(finish_hooks_);
  for (auto& hook : hooks) hook();
}

}  // namespace drover::supervisor
