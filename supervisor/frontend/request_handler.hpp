// RequestHandler: turns decoded JSON-RPC messages into work (Asio's `request_handler`: logic,
// no I/O). Validates params into typed structs, applies admission control, answers local
// methods (health, models.list, cancel, admin methods) itself and hands worker methods as Calls
// to its RequestPipeline (prompt cache, deduplication, coalescing), which passes what it cannot
// answer to the pool. Assembles batch replies. One instance serves every session; supervisor
// thread only.
#pragma once

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>

#include "common/config.hpp"
#include "common/ids.hpp"
#include "proto/jsonrpc.hpp"
#include "supervisor/admin/control.hpp"
#include "supervisor/frontend/stream_flow.hpp"
#include "supervisor/pipeline/admission.hpp"
#include "supervisor/pipeline/call.hpp"
#include "supervisor/pipeline/request_pipeline.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {

class ClientSession;

class RequestHandler {
 public:
  // Receives the serialised reply to one request (never called for notifications).
  using Reply = std::function<void(std::string&&)>;

  // `config` is the supervisor's live configuration (it changes on reload).
  RequestHandler(asio::io_context& io, const Config& config, WorkerPool& pool,
                 Admission& admission, AdminControl& control);

  void handle(ClientSession& session, proto::ParsedMessage message);
  // Cancels a call wherever it is (used for `cancel`, timeouts and disconnects).
  void cancel(const std::shared_ptr<Call>& call);
  // From now on new work is refused with -32009.
  void set_draining() { draining_ = true; }
  // Told how every generate/tokenize/detokenize request ended, refusals before a worker was
  // involved included (-32009, -32001: zero durations). The metrics hook.
  using Observer = std::function<void(CallKind kind, const CallOutcome& outcome)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }
  // Stream flow counters of every connection, for telemetry.metrics (the Supervisor's).
  void set_stream_totals(const StreamFlow::Counters* totals) { stream_totals_ = totals; }
  // The stages between this handler and the pool (cache, dedup, coalescing).
  RequestPipeline& pipeline() { return pipeline_; }

 private:
  void handle_request(ClientSession& session, proto::RpcRequest& req, Reply reply);
  void answer_admin(proto::RpcRequest& req, Reply& reply);
  void start_call(ClientSession& session, proto::RpcRequest& req, Reply reply, CallKind kind,
                  proto::json worker_params, bool stream, std::optional<std::int64_t> timeout_ms,
                  std::string model, PipelineRequest pipeline_request = {},
                  proto::Priority priority = proto::Priority::normal);
  proto::json health() const;
  proto::json workers_list() const;
  proto::json telemetry() const;

  asio::io_context& io_;
  const Config& config_;
  WorkerPool& pool_;
  Admission& admission_;
  AdminControl& control_;
  IdSource ids_;
  Clock::time_point started_ = Clock::now();
  bool draining_ = false;
  Observer observer_;
  const StreamFlow::Counters* stream_totals_ = nullptr;
  RequestPipeline pipeline_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
