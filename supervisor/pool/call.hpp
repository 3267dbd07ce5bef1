// Call: one client request on its way through the supervisor (admission -> queue -> worker ->
// reply). Created by the frontend, owned by shared_ptr among the pool's queue, the worker link
// that runs it and the session's cancel index (weakly). Lives on the supervisor's single
// io_context thread; no locking.
//
// Exactly-once: every Call ends in exactly one of finish_result / finish_error (or is dropped
// silently for a notification); later attempts to finish are ignored, so a late worker reply
// after a timeout or cancel cannot produce a second answer.
//
// Time: a Call stamps when it was accepted, dispatched, first answered and finished with
// std::chrono::steady_clock itself (the reply's `timing` and the latency metrics); those are
// observations, not decisions, so they do not go through a Clock (common/clock.hpp). The
// components that decide by time (pool, links, pipeline) read their own Clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "common/clock.hpp"
#include "common/error_codes.hpp"
#include "proto/client_params.hpp"
#include "proto/jsonrpc.hpp"
#include "proto/worker_codec.hpp"
#include "supervisor/pool/deadline_queue.hpp"

namespace drover::supervisor {

using json = proto::json;

enum class CallKind { generate, tokenize, detokenize };

// What a Call asks a worker to do, typed; written into the outgoing buffer at dispatch. A
// tokenize call is a batch_tokenize of its one text (several may be merged into one request).
using WorkerRequest = std::variant<proto::worker::GenerateRequest, proto::worker::BatchTokenizeRequest,
                                   proto::worker::DetokenizeRequest>;

// One chunk of a streamed generate on its way to the client. The references live as long as
// the sink call.
struct StreamChunk {
  const void* stream;  // the Call: tells the streams of one connection apart (flow control)
  const std::string& request_id;
  std::string_view client_id;  // JSON text of the client's request id
  std::uint64_t index;         // contiguous within the stream, from 0
  const std::string& text;
  // The generate.chunk notification carrying this chunk alone.
  std::string notification() const;
};

// Where a Call's output goes. The frontend supplies it; the session may be gone by the time a
// worker answers, in which case the sink drops the output (the Call is then cancelled).
struct CallSink {
  // Writes (or holds, to coalesce) a stream chunk; returns false when the client is not
  // reading (its write buffer is full), which fails the call with -32010.
  std::function<bool(const StreamChunk& chunk)> chunk;
  // Delivers the final reply (already serialised, or empty for notifications).
  std::function<void(std::string&& reply)> reply;
};

// Receives a call's output as the pool produces it, instead of (or besides) a client: the
// request pipeline's shared executions (pipeline/shared_execution.hpp) fan one worker run out
// to every client request that asked for the same thing. Called on the supervisor thread from
// inside the Call's own methods; an implementation must not finish this Call from a callback.
class CallRelay {
 public:
  virtual ~CallRelay() = default;
  // The first attempt went to a worker.
  virtual void on_dispatched() = 0;
  // A new chunk of the stream, in order (index 0, 1, ...; failover replays are not repeated).
  virtual void on_chunk(const std::string& text, std::uint64_t index) = 0;
  // The worker's result, before the client-facing fields (worker, cache, timing) are added.
  virtual void on_result(const proto::worker::GenerateResult& result, int worker_slot) = 0;
  // `data`: JSON text, or empty.
  virtual void on_error(RpcError code, std::string_view message, std::string_view data) = 0;
};

// Which frontend a call came through (the `frontend` label of the request metrics).
enum class Frontend { jsonrpc, openai };

// How a call ended, for metrics; filled in when it finishes.
struct CallOutcome {
  int code = 0;            // 0: answered with a result; else the JSON-RPC error code sent
  bool cancelled = false;  // ended as cancelled (-32005, or a generate with finish_reason cancelled)
  Clock::duration total{};              // accepted -> answered
  std::optional<Clock::duration> ttft;  // accepted -> first output from a worker
  Frontend frontend = Frontend::jsonrpc;
};

class Call : public std::enable_shared_from_this<Call> {
 public:
  enum class State { queued, dispatched, done };

  // `client_id`: the JSON text of the client's id ("null" for a notification or a call no client
  // owns). The kind follows from `request`.
  Call(std::string request_id, proto::RpcId client_id, bool notification, WorkerRequest request,
       CallSink sink);

  CallKind kind() const { return kind_; }
  const std::string& request_id() const { return request_id_; }
  const proto::RpcId& client_id() const { return client_id_; }
  bool is_notification() const { return notification_; }
  std::string_view worker_method() const;
  const WorkerRequest& request() const { return request_; }
  // Appends the worker request for this call alone, under the worker-side id `id`.
  void encode_request(std::string& out, std::uint64_t id) const;
  State state() const { return state_; }
  bool done() const { return state_ == State::done; }
  bool streaming() const { return stream_; }

  // Attempts made so far (a retry on another worker counts as a second attempt).
  int attempts() const { return attempts_; }
  // The worker slot of the most recent attempt, or -1.
  int last_worker() const { return last_worker_; }
  // Chunks already delivered to the client; a call that has sent any cannot simply be retried.
  std::uint64_t chunks_sent() const { return chunks_sent_; }

  // Workers that died while holding this call through their own fault (crash, hang,
  // garbage); used for poison-request detection.
  int blamed_losses() const { return blamed_losses_; }
  void note_loss(bool worker_at_fault) { blamed_losses_ += worker_at_fault ? 1 : 0; }
  // Slots of the workers tried so far, so a retry prefers a different one.
  const std::vector<int>& tried_slots() const { return tried_slots_; }
  // A retry is in progress (counts against the retry budget until the call finishes).
  bool retrying() const { return retrying_; }
  void set_retrying() { retrying_ = true; }

  // Which worker incarnation holds the call, under which worker-side request id.
  struct Assignment {
    int slot = -1;
    std::uint64_t generation = 0;
    std::uint64_t worker_request_id = 0;
  };
  const std::optional<Assignment>& assignment() const { return assignment_; }

  void set_streaming(bool s) { stream_ = s; }
  void set_frontend(Frontend f) { outcome_.frontend = f; }
  // The output also goes to `relay` (held weakly: a relay that is gone is skipped).
  void set_relay(std::weak_ptr<CallRelay> relay) { relay_ = std::move(relay); }
  // The result's `cache` field (DESIGN.md section 4): how the pipeline answered this call.
  void set_cache_status(std::string_view status) { cache_status_ = status; }
  // A call answered from a shared execution: when that execution reached a worker.
  void note_dispatched() {
    if (!dispatched_at_) dispatched_at_ = std::chrono::steady_clock::now();
  }
  // The client's priority (generate, tokenize); the pool queue orders by it.
  proto::Priority priority() const { return priority_; }
  void set_priority(proto::Priority p) { priority_ = p; }
  // In the batch queue's rollout (feature_flags.batch_queue): it may wait in a link's outbox
  // to travel with others; out of it, it is sent on its own.
  bool batchable() const { return batchable_; }
  void set_batchable(bool b) { batchable_ = b; }
  // The request's rollout cohorts (supervisor/pipeline/feature_flags.hpp CohortMask: bit
  // 1 << stage), decided once when it is admitted.
  std::uint8_t cohorts() const { return cohorts_; }
  void set_cohorts(std::uint8_t mask) { cohorts_ = mask; }
  // The model the request names; empty: the worker's default model.
  const std::string& model() const { return model_; }
  void set_model(std::string model) { model_ = std::move(model); }
  void mark_dispatched(const Assignment& a);
  // Back in the queue after its worker died (before it produced output).
  void mark_requeued() {
    state_ = State::queued;
    assignment_.reset();
  }

  enum class ChunkResult { delivered, skipped, slow_consumer, diverged };
  // Forwards one generate chunk to the client with the next contiguous index. `worker_index`
  // is the chunk's index within the current attempt: after a failover the new worker replays
  // the stream from the start (same seed), and chunks the client already has are checked
  // against what was sent and skipped. slow_consumer: the client is not reading (fail the call
  // with -32010); diverged: the replay differs, so the stream cannot continue seamlessly.
  ChunkResult deliver_chunk(const std::string& text, std::uint64_t worker_index);

  // The worker's result for this call, turned into the client's result (generate: plus
  // worker, cache and timing; tokenize: the one token list of its text; detokenize: the text).
  void finish_generate(const proto::worker::GenerateResult& result, int worker_slot);
  void finish_tokens(const std::vector<std::int64_t>& tokens);
  void finish_text(std::string_view text);
  // Cancelled before any worker answered: generate gets a result with finish_reason
  // "cancelled" (what a worker answers for a cancel mid-run), other methods -32005.
  void finish_cancelled();
  void finish_error(RpcError code, std::string_view message = {}, const json& data = nullptr);
  // The same with `data` as JSON text (a worker's error data, passed on as received).
  void finish_error_text(RpcError code, std::string_view message, std::string_view data);

  // The client went away: output is dropped from now on.
  void detach_sink() { sink_ = {}; }

  // A cancel was asked for (by the client, by its disconnect, by a timeout, or because nobody
  // waits for a shared run any more) while a worker held the call. The worker's answer ends it;
  // if that worker dies first, the call ends as cancelled instead of being retried: a cancel is
  // never forgotten, and work nobody waits for never re-runs.
  bool cancel_requested() const { return cancel_requested_; }
  void request_cancel() { cancel_requested_ = true; }

  // The call's deadline, armed in a DeadlineQueue by whoever admits the call; cancelled when
  // the call finishes.
  Deadline& deadline() { return deadline_; }
  // The timeout the deadline was armed with (the -32004 error's timeout_ms).
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

  // Released when the call finishes (admission slot, cancel-index entry...).
  void on_finish(std::function<void()> hook) { finish_hooks_.push_back(std::move(hook)); }

  Clock::time_point accepted_at() const { return accepted_at_; }
  // Valid once done().
  const CallOutcome& outcome() const { return outcome_; }

 private:
  // Sends `result` (JSON text) as the client's result.
  void finish_result_text(std::string_view result);
  void complete(std::string&& reply);

  CallKind kind_;
  std::string request_id_;
  proto::RpcId client_id_;
  bool notification_;
  WorkerRequest request_;
  CallSink sink_;
  std::weak_ptr<CallRelay> relay_;
  std::string cache_status_ = "miss";
  State state_ = State::queued;
  bool stream_ = false;
  proto::Priority priority_ = proto::Priority::normal;
  bool batchable_ = true;
  std::uint8_t cohorts_ = 0;
  std::string model_;
  int attempts_ = 0;
  int last_worker_ = -1;
  std::optional<Assignment> assignment_;
  std::uint64_t chunks_sent_ = 0;
  std::vector<std::string> sent_chunks_;  // what the client has, for checking a replay
  int blamed_losses_ = 0;
  std::vector<int> tried_slots_;
  bool retrying_ = false;
  bool cancel_requested_ = false;
  Clock::time_point accepted_at_ = std::chrono::steady_clock::now();
  std::optional<Clock::time_point> dispatched_at_;
  std::optional<Clock::time_point> first_output_at_;
  Deadline deadline_;
  std::chrono::milliseconds timeout_{0};
  std::vector<std::function<void()>> finish_hooks_;
  CallOutcome outcome_;
};

}  // namespace drover::supervisor
