// WorkerLink: the supervisor's end of one worker incarnation — its process, its control
// socket, the hello/init handshake, liveness checks and the requests it holds. Owned (shared,
// for the coroutines that serve it) by WorkerPool; reports to the pool through LinkObserver.
// Runs on the supervisor's io_context thread only.
//
// Life: starting (spawned; waiting for connect, hello and the init reply) -> ready (takes
// traffic) -> draining (finishes what it holds, takes nothing new) -> stopping (told to exit)
// -> dead. A link dies exactly once, on: process exit; control-socket EOF or error (then the
// exit status is awaited briefly so the loss can be classified); garbage from the worker; no
// heartbeat within heartbeat_timeout; no progress on held work within stall_timeout; the start
// or drain timeout. On death it kills the process, hands every unfinished request back to the
// pool (LinkObserver::on_lost) and, once the process is reaped, reports on_reaped.
//
// Transport: the control socket with NDJSON framing, and, when the worker's hello offers shm and
// transport.shm is on, a proto::shm::ShmChannel negotiated in init (proto/README.md
// "Negotiation"). Once the init reply accepts it, every message send() is given and every
// message the worker sends goes through the channel, which keeps one order across ring and
// socket; handle_message() sees the same bytes either way. A failed negotiation leaves this
// worker on the socket (one warn log); a broken ring fails the worker like garbage.
//
// Batching (batch_queue, supervisor/pool/batcher.hpp): with a Batcher and a worker whose
// hello says `capabilities.batch`, dispatched calls wait in the link's outbox until the
// Batcher says flush (fast path, batch full, or as many as the worker's init reply says it
// computes together: `max_batch`) or the link's one flush timer ends the window;
// a flush sends every outbox call in one JSON-RPC batch array, one send(), with the tokenize
// calls for one model merged into a single batch_tokenize whose reply is split back per call.
// Calls in the outbox count as held: a cancel takes them out, a death orphans them.
//
// Time: every decision by time (heartbeat timeout and stall detection in check_liveness, the
// notification rate window, breaker records, batch and model-use times) reads the Clock given
// at construction (common/clock.hpp). The timers that trigger the checks stay real asio timers;
// unit tests advance a fake clock and call the check through WorkerLinkTestPeer.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/async_util.hpp"
#include "common/clock.hpp"
#include "common/config.hpp"
#include "proto/framing.hpp"
#include "proto/shm_channel.hpp"
#include "proto/worker_codec.hpp"
#include "supervisor/pool/batcher.hpp"
#include "supervisor/pool/call.hpp"
#include "supervisor/pool/circuit_breaker.hpp"
#include "supervisor/pool/worker_process.hpp"

namespace drover::supervisor {

class WorkerLink;

// Why a link died, as far as the pool's policies care.
struct LinkLoss {
  std::string reason;
  // The worker itself failed (crash, garbage, hang, stall, start failure) — as opposed to an
  // operator's kill or fault injection, an outside SIGKILL/SIGTERM, or a drain timeout.
  bool worker_at_fault = false;
  bool was_ready = false;
  std::optional<Clock::time_point> ready_at;
  // The loss is the process's exit (crash, kill, exit), not a failure droverd declared while it
  // ran (hang, stall, garbage, drain timeout): what it held is failover, not a retry.
  bool process_exited = false;
};

class LinkObserver {
 public:
  virtual ~LinkObserver() = default;
  virtual void on_ready(WorkerLink& link) = 0;
  // A request finished (or the worker freed capacity), so it may take another.
  virtual void on_capacity(WorkerLink& link) = 0;
  // The link died; `orphans` are the unfinished calls it held, in dispatch order.
  virtual void on_lost(WorkerLink& link, const LinkLoss& loss,
                       std::vector<std::shared_ptr<Call>> orphans) = 0;
  // The process has been reaped; the pool may now forget the link.
  virtual void on_reaped(WorkerLink& link, const ExitStatus& status) = 0;
};

struct WorkerLinkOptions {
  int slot = 0;                  // slot id; a warm spare gets a slot when promoted
  int worker_id = 0;             // DROVER_WORKER_ID given to the process
  std::uint64_t generation = 0;  // incarnation counter (unique per pool)
  std::string socket_path;       // control socket to create for this incarnation
  std::vector<std::string> command;
  std::string backend;
  Millis start_timeout{30'000};
  Millis heartbeat_interval{1000};
  Millis heartbeat_timeout{5000};
  Millis stall_timeout{30'000};
  CircuitBreakerConfig breaker;
  // init's `preload` object (model_preload config): models to load and warm before ready.
  proto::json preload = proto::json::object();
  std::size_t max_message_bytes = 64 * 1024 * 1024;
  // Notifications not tied to a request (heartbeat, model.loaded) allowed per second.
  int max_notifications_per_s = 1000;
  // The pool's batch queue state; null: every call is sent on its own.
  std::shared_ptr<Batcher> batcher;
  // transport.shm / transport.ring_bytes: offer the shared-memory rings to a worker that can.
  bool shm = true;
  std::size_t ring_bytes = 1024 * 1024;
  // workers.user / workers.group: the process runs as this identity, and its control socket is
  // handed to it (the shm segment travels as a descriptor and needs nothing).
  std::optional<WorkerCredentials> run_as;
};

// Messages and bytes this incarnation moved, per path (workers.list, Prometheus).
struct TransportCounters {
  std::uint64_t ring_messages_out = 0, ring_bytes_out = 0, ring_messages_in = 0, ring_bytes_in = 0;
  std::uint64_t socket_messages_out = 0, socket_bytes_out = 0;
  std::uint64_t socket_messages_in = 0, socket_bytes_in = 0;
};

// What the worker reported in its last heartbeat (or init reply).
struct WorkerReport {
  std::int64_t inflight = 0;
  std::int64_t queue_depth = 0;
  std::int64_t rss_bytes = 0;
  double tokens_per_s = 0;
  std::vector<std::string> models;
  std::optional<Clock::time_point> last_heartbeat;
};

class WorkerLink : public std::enable_shared_from_this<WorkerLink> {
 public:
  enum class State { starting, ready, draining, stopping, dead };

  // `clock` must outlive the link.
  WorkerLink(asio::io_context& io, WorkerLinkOptions options, LinkObserver& observer,
             const Clock& clock = real_clock());
  ~WorkerLink();

  // Creates the control socket, spawns the process and starts the handshake.
  // On failure the link reports on_lost (and on_reaped) asynchronously like any other death.
  void start();

  // Whether the router may send it a request now (ready, below max_inflight, breaker allows).
  bool can_take(std::size_t max_inflight, Clock::time_point now);
  // Sends a call to the worker. REQUIRES: state() == ready.
  void dispatch(std::shared_ptr<Call> call);
  // Asks the worker to stop a call it holds; the worker still answers it (finish_reason
  // "cancelled" or -32005), which is when the link forgets it.
  void cancel(std::uint64_t worker_request_id);
  // A call this worker holds ran out of time: counts against its breaker, and the worker's
  // answer to it (to the cancel that follows) is not counted again.
  void record_timeout(std::uint64_t worker_request_id);
  // Sends a signal to the process; `by_operator` keeps the death from counting as a crash.
  void signal(int sig, bool by_operator);
  // Asks the worker to enact a fault (chaos drills); the resulting death is not its fault.
  void inject(const std::string& fault);
  // No new work; once idle the worker is told to exit; after `timeout` it is killed and what
  // it still holds is handed back to the pool.
  void drain(Millis timeout);
  // Kills the process now and reports the loss.
  void fail(const std::string& reason, bool worker_at_fault);

  // Model management (load_model / unload_model requests). `done` runs exactly once: with the
  // worker's result, or with an error object (the worker's, or -32003 when the link dies first).
  using ControlDone = std::function<void(const json& result, const json& error)>;
  void load_model(const ModelSpec& spec, ControlDone done);
  void unload_model(const std::string& model, ControlDone done);
  bool has_model(const std::string& model) const;
  bool loading(const std::string& model) const { return loading_.contains(model); }
  // Models this link loaded on demand (not at start), with when a request last used each and
  // how many requests for each it holds: what idle unload may release.
  struct ModelUse {
    Clock::time_point last_used;
    std::size_t inflight = 0;
  };
  const std::map<std::string, ModelUse>& on_demand_models() const { return on_demand_; }

  int slot() const { return opt_.slot; }
  void set_slot(int slot) { opt_.slot = slot; }
  int worker_id() const { return opt_.worker_id; }
  // The one id this worker is known by (docs/OPERATIONS.md, "Worker ids"): its slot while it
  // serves one, else (a warm spare) the id it was started with, 1000 and up. Every log line,
  // workers.list entry, metric label and result `worker` field about it uses this.
  int id() const { return opt_.slot >= 0 ? opt_.slot : opt_.worker_id; }
  std::uint64_t generation() const { return opt_.generation; }
  int pid() const { return process_ ? process_->pid() : 0; }
  State state() const { return state_; }
  // Calls held: in the outbox or sent and not yet answered.
  std::size_t inflight() const { return held_calls_; }
  bool batch_capable() const { return batch_capable_; }
  // init reply: the most requests the worker computes together (0: it states none). A batch
  // queue flush never holds more calls than this, so a flushed batch starts together.
  std::size_t max_batch() const { return max_batch_; }
  // The faults the worker said in its init reply it can enact (workers.inject); empty until
  // then, and for workers that do not say.
  const std::optional<std::vector<std::string>>& faults() const { return faults_; }
  std::uint64_t completed() const { return completed_; }
  const WorkerReport& report() const { return report_; }
  const CircuitBreaker& breaker() const { return breaker_; }
  void reconfigure_breaker(const CircuitBreakerConfig& config) { breaker_.reconfigure(config); }
  Clock::time_point started_at() const { return started_at_; }
  // "shm" once init negotiated the rings, else "socket".
  const char* transport() const { return channel_ ? "shm" : "socket"; }
  TransportCounters transport_counters() const;
  std::optional<Clock::time_point> ready_at() const { return ready_at_; }

 private:
  // The unit tests' seam (tests/unit/supervisor/worker_link_test.cpp): feeds handle_message and
  // calls check_liveness directly, so a link is driven through hello, init and heartbeats with
  // a fake clock and no process (start(), which spawns, is never called there).
  friend struct WorkerLinkTestPeer;

  asio::awaitable<void> serve();
  asio::awaitable<void> write_loop();
  void arm_liveness_check();
  void check_liveness();
  void on_process_exit(const ExitStatus& status);
  void on_socket_closed(const std::string& why);
  void handle_message(std::string_view text);
  void dispatch_message(proto::worker::Message& m);
  void handle_hello(const proto::json& params);
  void handle_reply(proto::worker::Message& m);
  void handle_chunk(std::string_view params);
  void handle_heartbeat(std::string_view params);
  void read_models(const proto::json& list);
  void send(std::string json_text);
  void send_socket(std::string frame);
  // init's `transport` object; prepares shm_ when the worker offered it and it can be made.
  json offer_transport(const json& capabilities);
  void send_init(const json& init);
  void accept_transport(const json& result);
  // Sends the outbox as one write (batching); `cause` is for the statistics.
  void flush(Batcher::FlushCause cause);
  void arm_flush();
  // One reply of flush `flush` arrived; the last one reports the batch time.
  void note_flush_reply(std::uint64_t flush, Clock::time_point now);
  void maybe_stop();
  void cleanup_socket_file();
  void send_control(std::string_view method, json params, ControlDone done);
  void finish_controls(const std::string& reason);
  void count_model_use(const Call& call, int delta);
  bool within_notification_rate();

  asio::io_context& io_;
  WorkerLinkOptions opt_;
  LinkObserver& observer_;
  const Clock& clock_;  // before every member initialised from it
  State state_ = State::starting;
  std::unique_ptr<WorkerProcess> process_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::local::stream_protocol::socket socket_;
  WriteQueue<asio::local::stream_protocol::socket> writer_;
  asio::steady_timer start_timer_;
  asio::steady_timer liveness_timer_;
  asio::steady_timer exit_grace_timer_;
  asio::steady_timer drain_timer_;
  proto::FrameDecoder decoder_;
  proto::worker::Decoder codec_;  // what the worker sends, read without a tree
  CircuitBreaker breaker_;
  bool hello_seen_ = false;
  bool socket_closed_ = false;
  bool process_exited_ = false;  // on_process_exit ran: a loss from here on is failover
  bool operator_caused_ = false;  // an operator's kill or injected fault is coming
  std::uint64_t next_request_id_ = 1;
  std::uint64_t init_request_id_ = 0;
  // One worker request: a call, plus the tokenize calls merged into it (their texts follow
  // the call's own in the batch_tokenize it was sent as).
  struct Held {
    std::shared_ptr<Call> call;
    std::vector<std::shared_ptr<Call>> merged;
    bool sent = false;         // false: still in the outbox
    std::uint64_t flush = 0;   // the flush that sent it (0: sent on its own)
    bool timed_out = false;    // the breaker has judged it already (record_timeout)
  };
  // Calls in the outbox or sent to the worker and not yet answered by it (a call may already
  // be finished for the client, e.g. after a timeout, while the worker still holds it).
  std::unordered_map<std::uint64_t, Held> inflight_;
  std::size_t held_calls_ = 0;  // calls in inflight_, merged ones included
  std::vector<std::uint64_t> outbox_;  // request ids waiting for the flush, in dispatch order
  asio::steady_timer flush_timer_;
  bool flush_armed_ = false;
  bool batch_capable_ = false;  // hello: capabilities.batch
  std::size_t max_batch_ = 0;   // init reply: max_batch
  std::optional<std::vector<std::string>> faults_;  // init reply: faults
  struct FlushRecord {
    Clock::time_point sent_at;
    std::size_t outstanding = 0;  // worker requests of the flush not answered yet
  };
  std::unordered_map<std::uint64_t, FlushRecord> flushes_;
  std::uint64_t next_flush_ = 1;
  std::uint64_t completed_ = 0;
  std::unordered_map<std::uint64_t, ControlDone> controls_;  // load/unload requests pending
  std::set<std::string> loading_;
  std::map<std::string, ModelUse> on_demand_;
  Clock::time_point notification_window_{};
  int notifications_in_window_ = 0;
  std::int64_t last_progress_counter_ = -1;
  Clock::time_point last_progress_ = clock_.now();
  WorkerReport report_;
  Clock::time_point started_at_ = clock_.now();
  std::optional<Clock::time_point> ready_at_;
  std::shared_ptr<spdlog::logger> log_;
  // Offered in init, not yet accepted; then the live channel (closed when the link dies).
  std::optional<proto::shm::ChannelResources> offered_shm_;
  std::shared_ptr<proto::shm::ShmChannel> channel_;
  TransportCounters socket_counters_;
};

std::string to_string(WorkerLink::State s);

}  // namespace drover::supervisor
