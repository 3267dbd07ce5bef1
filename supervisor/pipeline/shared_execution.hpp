// SharedExecution: one worker run of a generate request whose output goes to every client
// request that asked for the same thing (request deduplication for unary requests, stream
// coalescing for streams). Owned by the RequestPipeline from submission until the run ends.
// Supervisor thread only.
//
// Two kinds of Call meet here. The *execution* call is the one the pool runs; no client owns
// it and it has no sink: its output arrives through CallRelay. The *subscriber* calls are the
// clients' own calls (each with its client id, sink, deadline and cancel entry), which never
// enter the pool. So each client keeps exactly-once answers, its own timeout and its own
// cancel, and the leader is nobody special:
//  - a subscriber that is cancelled, times out or whose client disconnects is only detached;
//    the run continues for the others;
//  - when the last subscriber leaves before the end, the run is abandoned (on_abandoned: the
//    pipeline stops sharing it and cancels it at its worker, as a timeout when that last
//    subscriber timed out, so the worker's breaker hears of it as before);
//  - a cancel of the only subscriber is better sent to the run itself (RequestPipeline::
//    cancel): the worker then answers with the text generated so far, as without sharing.
//    From that moment the run is no longer joinable (cancel_requested()), so an identical
//    request arriving before the worker answers starts a fresh run instead of receiving
//    finish_reason "cancelled" or a cut stream;
//  - a result goes to every subscriber (each gets its own `cache` status and timing);
//  - an error goes to the subscribers waiting at that moment and to nobody after: the
//    pipeline forgets the run, so the next identical request runs afresh.
//
// Streams: chunks are forwarded to each streaming subscriber in order and kept for late
// joiners, who get the chunks they missed first (buffered replay), then the live ones, all
// under their own request id with indices from 0. Once the kept chunks exceed
// max_replay_bytes they are dropped and the run takes no more joiners.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/pool/call.hpp"

namespace drover::supervisor {

class SharedExecution final : public CallRelay,
                              public std::enable_shared_from_this<SharedExecution> {
 public:
  // `execution`: the call the pool will run (its relay is set to this by create()).
  static std::shared_ptr<SharedExecution> create(std::shared_ptr<Call> execution,
                                                 std::size_t max_replay_bytes);

  const std::shared_ptr<Call>& execution() const { return execution_; }

  // Adds a client's call, answered with result `cache` = `cache_status` when the run ends.
  // A streaming subscriber first gets the chunks produced so far. REQUIRES: joinable() or no
  // subscriber yet.
  void subscribe(const std::shared_ptr<Call>& call, std::string_view cache_status);
  // Still running, not abandoned, and its replay buffer complete.
  bool joinable() const {
    return !finished_ && !abandoned_ && !cancelling_ && !replay_overflowed_;
  }
  // The run itself is being cancelled at its worker: it takes no more subscribers.
  void cancel_requested() { cancelling_ = true; }
  bool finished() const { return finished_; }
  std::size_t subscribers() const { return subscribers_.size(); }
  // The chunks so far (all of them unless replay overflowed).
  const std::vector<std::string>& chunks() const { return chunks_; }
  bool replay_complete() const { return !replay_overflowed_; }

  // Run once when the run ends: the result on success (any finish_reason), nullptr on error.
  using Finished = std::function<void(const proto::worker::GenerateResult* result, int worker_slot)>;
  void on_finished(Finished f) {
    on_finished_ = std::move(f);
  }
  // Run once when the last subscriber left before the end, with how that subscriber ended.
  void on_abandoned(std::function<void(const CallOutcome& last)> f) {
    on_abandoned_ = std::move(f);
  }

  // CallRelay (the execution call's output).
  void on_dispatched() override;
  void on_chunk(const std::string& text, std::uint64_t index) override;
  void on_result(const proto::worker::GenerateResult& result, int worker_slot) override;
  void on_error(RpcError code, std::string_view message, std::string_view data) override;

 private:
  SharedExecution(std::shared_ptr<Call> execution, std::size_t max_replay_bytes)
      : execution_(std::move(execution)), max_replay_bytes_(max_replay_bytes) {}

  struct Subscriber {
    std::shared_ptr<Call> call;
    std::string cache_status;
  };
  void unsubscribe(const Call& call);
  // Forwards one chunk; a subscriber that cannot take it is failed (and so detached).
  static void forward(Call& call, const std::string& text, std::uint64_t index);

  std::shared_ptr<Call> execution_;
  std::size_t max_replay_bytes_;
  std::vector<Subscriber> subscribers_;
  std::vector<std::string> chunks_;
  std::size_t chunk_bytes_ = 0;
  bool replay_overflowed_ = false;
  bool dispatched_ = false;
  bool finished_ = false;
  bool abandoned_ = false;
  bool cancelling_ = false;
  Finished on_finished_;
  std::function<void(const CallOutcome&)> on_abandoned_;
};

}  // namespace drover::supervisor
