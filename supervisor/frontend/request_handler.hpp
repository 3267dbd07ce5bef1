// RequestHandler: turns decoded JSON-RPC messages into work (Asio's `request_handler`: logic,
// no I/O). Dispatches on a method table: the worker methods (generate, tokenize, detokenize)
// and cancel are its own; every other method (health, telemetry, admin) is a LocalMethod that
// another component registers (supervisor/admin/admin_methods.hpp), so the frontend knows
// nothing of the admin API. Worker methods get typed params read from the params' bytes,
// admission control, and go as Calls to the RequestPipeline (prompt cache, deduplication,
// coalescing), which passes what it cannot answer to the pool. Assembles batch replies.
// One instance serves every session; supervisor thread only.
#pragma once

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/ids.hpp"
#include "proto/jsonrpc.hpp"
#include "supervisor/frontend/stream_flow.hpp"
#include "supervisor/pipeline/admission.hpp"
#include "supervisor/pipeline/request_pipeline.hpp"
#include "supervisor/pool/call.hpp"
#include "supervisor/pool/deadline_queue.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {

class ClientSession;

class RequestHandler {
 public:
  // Receives the serialised reply to one request (never called for notifications).
  using Reply = std::function<void(std::string&&)>;

  // One call of a LocalMethod. It answers exactly once through result()/error(), at once or
  // later from a copy of this object; a notification's answers are dropped. `request` is valid
  // only while the method runs (a copy kept for later must not read it).
  struct LocalCall {
    const proto::RpcRequest& request;
    proto::RpcId id;  // the JSON text of the request's id, "null" for a notification
    bool admin_socket;
    Reply reply;

    // The params as a tree (control plane); null when absent.
    proto::json params() const { return request.params_tree(); }
    void result(const proto::json& value) const;
    void error(RpcError code, std::string_view message = {},
               const proto::json& data = nullptr) const;
    // -32602 with data.detail = why.
    void invalid_params(const std::string& why) const;
  };
  using LocalMethod = std::function<void(LocalCall&)>;

  // `config` is the supervisor's live configuration (it changes on reload).
  RequestHandler(asio::io_context& io, const Config& config, WorkerPool& pool, Admission& admission);

  // Adds a method answered in droverd. Methods proto::is_admin_method() names are refused on
  // the client socket with -32008 before `method` runs.
  void add_method(std::string name, LocalMethod method);

  void handle(ClientSession& session, proto::ParsedMessage message);

  // A generate from a frontend other than the JSON-RPC sessions (the OpenAI HTTP API): the
  // same admission, deadline, pipeline and pool as a `generate` request. Its answer is a
  // JSON-RPC reply text with id `client_id` through `sink.reply`, chunks through `sink.chunk`.
  // `attach` runs once the call exists and before it is submitted (so a hook it adds with
  // Call::on_finish sees even a call the cache answers at once). Returns the call, or null
  // when it was refused before admission (draining, overloaded): `sink.reply` then already
  // has the error.
  std::shared_ptr<Call> submit_generate(const proto::GenerateParams& params,
                                        std::string_view client_id, CallSink sink,
                                        const std::function<void(Call&)>& attach = {});
  // The longest client batch accepted (server.max_batch_length), for parse_message.
  std::size_t max_batch_length() const { return config_.server.max_batch_length; }
  // Cancels a call wherever it is (used for `cancel`, timeouts and disconnects).
  void cancel(const std::shared_ptr<Call>& call);
  // From now on new work is refused with -32009.
  void set_draining() { draining_ = true; }
  // Told how every generate/tokenize/detokenize request ended, refusals before a worker was
  // involved included (-32009, -32001: zero durations). The metrics hook.
  using Observer = std::function<void(CallKind kind, const CallOutcome& outcome)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }
  // The stages between this handler and the pool (cache, dedup, coalescing).
  RequestPipeline& pipeline() { return pipeline_; }

 private:
  enum class Builtin { generate, tokenize, detokenize, cancel, local };
  struct Method {
    std::string name;
    Builtin builtin;
    LocalMethod local;
  };

  void handle_request(ClientSession& session, proto::RpcRequest& req, Reply reply);
  void start_call(ClientSession& session, const proto::RpcRequest& req, Reply reply,
                  WorkerRequest request, bool stream, std::optional<std::int64_t> timeout_ms,
                  std::string model, PipelineRequest pipeline_request = {},
                  proto::Priority priority = proto::Priority::normal);
  // What every frontend's call goes through: drain and admission checks, the Call, its
  // deadline, the pipeline. Null when refused (`sink.reply` got the error).
  struct Admit {
    std::string_view client_id;  // JSON text
    bool notification = false;
    bool stream = false;
    std::optional<std::int64_t> timeout_ms;
    std::string model;
    PipelineRequest pipeline;
    proto::Priority priority = proto::Priority::normal;
    Frontend frontend = Frontend::jsonrpc;
  };
  std::shared_ptr<Call> admit(Admit a, WorkerRequest request, CallSink sink,
                              const std::function<void(Call&)>& attach);
  const Method* find(std::string_view name) const;
  void on_deadline(Deadline& deadline);

  asio::io_context& io_;
  const Config& config_;
  WorkerPool& pool_;
  Admission& admission_;
  IdSource ids_;
  bool draining_ = false;
  Observer observer_;
  RequestPipeline pipeline_;
  DeadlineQueue deadlines_;  // every admitted call's timeout, behind one timer
  // The worker methods first: a linear scan of a few names beats hashing them.
  std::vector<Method> methods_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
