// Supervisor: droverd's top object. Wires config, the worker pool, the request handler, the
// client and admin listeners and the signals, then runs the io_context.
//
// Threading model: one io_context run by one thread. Sessions, routing, pool and worker links
// all live on it, so pool and routing state need no locks. CPU-heavy work never runs here
// (inference is in the worker processes). When one thread stops being enough, the plan is
// N frontend threads (each with its own io_context for framing and envelope parsing) that
// post parsed calls to this one "pool" executor; the pool interface already takes whole Calls.
//
// Start-up (the constructor): resolve server.user/group/socket_group, create the run dir,
// bind the sockets (owned by the final user), drop root (admin/privileges.hpp), then remove
// what a crashed droverd left behind (admin/stale_state.hpp); run() then spawns the workers,
// so they never run privileged.
//
// Shutdown (SIGTERM/SIGINT): stop accepting, refuse new work with -32009, let calls in flight
// finish within workers.drain_timeout_ms, stop the workers, remove the sockets, return 0.
// Reload (SIGHUP, config.reload): re-read the file; a bad file is rejected and the old config
// stays; live settings apply at once, the others are reported as needing a restart.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <string>

#include "common/config.hpp"
#include "common/metrics.hpp"
#include "supervisor/admin/admin_methods.hpp"
#include "supervisor/admin/control.hpp"
#include "supervisor/admin/http_server.hpp"
#include "supervisor/admin/rollout_controller.hpp"
#include "supervisor/admin/run_dir.hpp"
#include "supervisor/admin/metrics_collector.hpp"
#include "supervisor/admin/stream_metrics.hpp"
#include "supervisor/admin/systemd_notify.hpp"
#include "supervisor/frontend/listener.hpp"
#include "supervisor/frontend/openai_server.hpp"
#include "supervisor/frontend/request_handler.hpp"
#include "supervisor/frontend/tcp_listener.hpp"
#include "supervisor/pipeline/admission.hpp"
#include "supervisor/pool/worker_pool.hpp"

namespace drover::supervisor {

class Supervisor final : public AdminControl {
 public:
  // Binds the sockets (throws std::runtime_error when it cannot) but starts nothing yet.
  // `config_path` (empty: built-in defaults) and `flags` are kept for reloads.
  Supervisor(Config config, std::string config_path = {}, ConfigOverrides flags = {});
  ~Supervisor() override;

  // Runs until shut down; returns the process exit code.
  int run();
  // Begins a graceful shutdown (what SIGTERM does).
  void shutdown();

  // AdminControl (SIGHUP and config.reload use reload()).
  // The configuration plus `rollout_state`: the canary controller's state per stage.
  nlohmann::json effective_config() const override;
  nlohmann::json reload(std::string& error) override;

 private:
  void wait_signal();
  void drain_then_stop();
  void finish();

  Config config_;
  std::string config_path_;
  ConfigOverrides flags_;
  asio::io_context io_;
  std::string run_base_;  // the private run directory (common/run_paths.hpp)
  std::string run_dir_;
  bool own_run_dir_ = false;
  RunDirCleanup run_dir_cleanup_;  // before pool_: removed after the workers' sockets
  Admission admission_;
  // Stream flow counters of every client connection (sessions add to them).
  StreamFlow::Counters stream_totals_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<RequestHandler> handler_;
  // Ramps the stages the rollouts block names, writing into config_.feature_flags.
  std::unique_ptr<RolloutController> rollouts_;
  std::unique_ptr<AdminMethods> admin_methods_;  // registered into handler_; destroyed first
  std::unique_ptr<Listener> client_listener_;
  std::unique_ptr<Listener> admin_listener_;
  std::unique_ptr<TcpListener> tcp_listener_;  // server.tcp_listen; null when off
  std::unique_ptr<OpenAiServer> openai_;  // null unless openai.enabled
  metrics::Registry metrics_;
  std::unique_ptr<MetricsCollector> collector_;
  std::unique_ptr<StreamMetrics> stream_metrics_;
  std::unique_ptr<HttpServer> http_;  // null when metrics are off or metrics.listen failed
  std::unique_ptr<SystemdNotifier> systemd_;
  asio::signal_set signals_;
  asio::steady_timer drain_timer_;
  bool shutting_down_ = false;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
