// Supervisor: droverd's top object. Wires config, the worker pool, the request handler, the
// client and admin listeners and the signals, then runs the io_context.
//
// Threading model: one io_context run by one thread. Sessions, routing, pool and worker links
// all live on it, so pool and routing state need no locks. CPU-heavy work never runs here
// (inference is in the worker processes). When one thread stops being enough, the plan is
// N frontend threads (each with its own io_context for framing and envelope parsing) that
// post parsed calls to this one "pool" executor; the pool interface already takes whole Calls.
//
// Shutdown (SIGTERM/SIGINT): stop accepting, refuse new work with -32009, let calls in flight
// finish within workers.drain_timeout_ms, stop the workers, remove the sockets, return 0.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <string>

#include "common/config.hpp"
#include "supervisor/frontend/listener.hpp"
#include "supervisor/frontend/request_handler.hpp"
#include "supervisor/pipeline/admission.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {

class Supervisor {
 public:
  // Binds the sockets (throws std::runtime_error when it cannot) but starts nothing yet.
  explicit Supervisor(Config config);
  ~Supervisor();

  // Runs until shut down; returns the process exit code.
  int run();
  // Begins a graceful shutdown (what SIGTERM does).
  void shutdown();

 private:
  void drain_then_stop();
  void finish();

  Config config_;
  asio::io_context io_;
  std::string run_dir_;
  bool own_run_dir_ = false;
  Admission admission_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<RequestHandler> handler_;
  std::unique_ptr<Listener> client_listener_;
  std::unique_ptr<Listener> admin_listener_;
  asio::signal_set signals_;
  asio::steady_timer drain_timer_;
  bool shutting_down_ = false;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
