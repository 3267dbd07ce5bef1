// AdminMethods: the methods droverd answers itself, beside the worker methods: health and
// models.list, telemetry (workerStatus, batchStats, metrics) and the admin API of the admin
// socket (workers.*, models.load/unload, config.*; shared/DESIGN.md section 4). Registered into
// the frontend's method table (RequestHandler::add_method), so the frontend depends on nothing
// here. Control plane: params and results are trees. Supervisor thread only.
#pragma once

#include <chrono>

#include "supervisor/admin/control.hpp"
#include "supervisor/frontend/request_handler.hpp"
#include "supervisor/frontend/stream_flow.hpp"

namespace drover::supervisor {

class AdminMethods {
 public:
  // `stream_totals`: every connection's stream flow counters (the Supervisor's).
  AdminMethods(WorkerPool& pool, Admission& admission, AdminControl& control,
               RequestPipeline& pipeline, const StreamFlow::Counters& stream_totals);

  // Adds every method to `handler`'s table.
  void register_with(RequestHandler& handler);

 private:
  using LocalCall = RequestHandler::LocalCall;
  void workers_admin(LocalCall& call);
  void models_admin(LocalCall& call);
  proto::json health() const;
  proto::json workers_list() const;
  proto::json telemetry() const;

  WorkerPool& pool_;
  Admission& admission_;
  AdminControl& control_;
  RequestPipeline& pipeline_;
  const StreamFlow::Counters& stream_totals_;
  Clock::time_point started_ = std::chrono::steady_clock::now();
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
