#include "supervisor/supervisor.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <fmt/ranges.h>
#include <stdexcept>

#include "common/log.hpp"
#include "common/run_paths.hpp"
#include "common/tls_context.hpp"
#include "supervisor/admin/privileges.hpp"
#include "supervisor/admin/rollout_methods.hpp"
#include "supervisor/admin/run_dir.hpp"
#include "supervisor/admin/stale_state.hpp"
#include "supervisor/version.hpp"

namespace drover::supervisor {
namespace {

// droverd's resident set size from /proc/self/statm (the rollout RSS trigger); 0 if unreadable.
std::uint64_t own_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace

Supervisor::Supervisor(Config config, std::string config_path, ConfigOverrides flags)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      flags_(std::move(flags)),
      admission_(config_.server.max_queue),
      signals_(io_, SIGTERM, SIGINT, SIGHUP),
      drain_timer_(io_),
      log_(component_logger("supervisor")) {
  // A client that vanishes mid-write must not kill droverd.
  ::signal(SIGPIPE, SIG_IGN);
  // Names resolve before anything is created, so a typo leaves no socket or directory behind.
  const RunAs run_as = resolve_run_as(config_.server.user, config_.server.group);
  const auto socket_gid = resolve_group("server.socket_group", config_.server.socket_group);
  const auto workers_as = resolve_workers_as(config_.workers.user, config_.workers.group, run_as,
                                             config_.server.admin_uids);
  // The private run directory holds the default sockets and run directories; workers running
  // as another user may search it (0710, their group) to reach their own control socket.
  run_base_ = default_run_base(current_environment(), ::geteuid());
  RunDirAccess access{run_as.owner_uid(), run_as.owner_gid(), 0700};
  if (workers_as) {
    access.group = workers_as->gid;
    access.mode = 0710;
  }
  const auto in_base = [this](const std::string& path) {
    return std::filesystem::path(path).parent_path() == std::filesystem::path(run_base_);
  };
  if (config_.server.run_dir.empty() || in_base(config_.server.socket) ||
      in_base(config_.server.admin_socket)) {
    ensure_private_dir(run_base_, "default run directory", access.mode, access.owner, access.group);
  }
  run_dir_ = make_run_dir(config_.server.run_dir, run_base_, access);
  own_run_dir_ = config_.server.run_dir.empty();
  if (own_run_dir_) run_dir_cleanup_.own(run_dir_);
  pool_ = std::make_unique<WorkerPool>(io_, config_.workers, config_.circuit_breaker, config_.retry,
                                       run_dir_, config_.routing.strategy);
  pool_->set_transport(config_.transport);
  pool_->set_worker_credentials(workers_as);
  pool_->set_models(config_.model_preload, config_.models, config_.routing.model_affinity,
                    config_.memory_policy.idle_unload);
  pool_->set_streaming(config_.streaming);
  pool_->set_batching(config_.batch_queue);
  handler_ = std::make_unique<RequestHandler>(io_, config_, *pool_, admission_);
  admin_methods_ = std::make_unique<AdminMethods>(*pool_, admission_, *this, handler_->pipeline(),
                                                  stream_totals_);
  admin_methods_->register_with(*handler_);
  rollouts_ = std::make_unique<RolloutController>(handler_->pipeline().cohorts(), config_.feature_flags,
                                                  own_rss_bytes);
  rollouts_->configure(config_.rollouts);
  register_rollout_methods(*handler_, *rollouts_);
  Listener::Options client;
  client.path = config_.server.socket;
  client.mode = config_.server.socket_mode;
  client.max_connections = config_.server.max_connections;
  client.session.max_message_bytes = config_.server.max_message_bytes;
  client.session.write_buffer_bytes = config_.server.write_buffer_bytes;
  client.session.idle_timeout = config_.server.idle_timeout;
  client.session.partial_message_timeout = config_.server.partial_message_timeout;
  client.session.stream = {config_.streaming.high_watermark_bytes, config_.streaming.low_watermark_bytes,
                           config_.server.write_buffer_bytes, config_.streaming.coalesce_max_bytes,
                           config_.streaming.coalesce_interval};
  client.session.stream_coalescing_percent = config_.feature_flags.stream_coalescing;
  client.session.stream_totals = &stream_totals_;
  Listener::Options admin = client;
  admin.path = config_.server.admin_socket;
  admin.mode = 0600;
  admin.admin = true;
  admin.allowed_uids = config_.server.admin_uids;
  // After a drop the socket files belong to droverd's new user (so it can unlink them at exit,
  // also in a sticky directory such as /tmp); the client socket's group is server.socket_group.
  client.owner = admin.owner = run_as.owner_uid();
  client.group = socket_gid.value_or(run_as.owner_gid());
  admin.group = run_as.owner_gid();
  client_listener_ = std::make_unique<Listener>(io_, client, *handler_);
  admin_listener_ = std::make_unique<Listener>(io_, admin, *handler_);
  if (!config_.server.tcp_listen.empty()) {
    TcpListener::Options tcp;
    tcp.listen = config_.server.tcp_listen;
    if (config_.server.tls.enabled()) {
      tcp.tls = make_tls_server_context(config_.server.tls, "server.tls");
      tcp.mutual_tls = !config_.server.tls.client_ca_file.empty();
    }
    tcp.max_connections = config_.server.max_connections;
    tcp.session = client.session;
    tcp_listener_ = std::make_unique<TcpListener>(io_, std::move(tcp), *handler_);
  }
  // A client frontend like the sockets: a listen address that cannot be bound fails the start.
  if (config_.openai.enabled) {
    openai_ = std::make_unique<OpenAiServer>(io_, config_, *handler_, *pool_, &stream_totals_);
  }
  collector_ = std::make_unique<MetricsCollector>(metrics_, *pool_, admission_);
  handler_->pipeline().register_metrics(metrics_);
  rollouts_->register_metrics(metrics_);
  pool_->batcher().set_histograms(&collector_->batch_size(), &collector_->batch_time());
  handler_->set_observer(
      [c = collector_.get()](CallKind kind, const CallOutcome& o) { c->on_request(kind, o); });
  stream_metrics_ = std::make_unique<StreamMetrics>(metrics_, *pool_, stream_totals_, [this] {
    auto b = client_listener_->buffered();
    const auto add = [&b](const Listener::Buffered& a) {
      b.total += a.total;
      b.max = std::max(b.max, a.max);
      b.coalescing += a.coalescing;
    };
    add(admin_listener_->buffered());
    if (tcp_listener_) add(tcp_listener_->buffered());
    return b;
  });
  if (config_.metrics.enabled && !config_.metrics.listen.empty()) {
    HttpServer::Endpoints endpoints;
    endpoints.metrics = [this] { return metrics_.expose(); };
    endpoints.ready = [this] {
      const auto c = pool_->counts();
      if (shutting_down_) return HttpServer::Readiness{false, "draining"};
      return HttpServer::Readiness{c.ready > 0, fmt::format("{}/{} workers ready", c.ready, c.total)};
    };
    try {
      http_ = std::make_unique<HttpServer>(io_, config_.metrics.listen, std::move(endpoints));
    } catch (const std::runtime_error& e) {
      // Observability must not take the service down: clients are still served.
      log_->error("metrics.listen: {}; /metrics, /healthz and /readyz are disabled", e.what());
    }
  }
  systemd_ = std::make_unique<SystemdNotifier>(
      io_, take_notify_environment(),
      [this] {
        const auto c = pool_->counts();
        return SystemdNotifier::Workers{c.ready, c.total};
      },
      config_.workers.start_timeout);
  // Everything privileged (binding, chown) is done; workers spawn in run(), after this.
  if (run_as.drop) {
    drop_privileges(run_as);
  } else if (workers_as) {
    log_->info("workers run as uid {} gid {} (workers.user '{}'); droverd stays root to start them",
               workers_as->uid, workers_as->gid, config_.workers.user);
  } else if (::geteuid() == 0) {
    log_->warn("running as root: set server.user to drop privileges once the sockets are bound, "
               "or workers.user to run the workers as another user");
  }
  // As the final user, and before any worker or segment of ours exists.
  remove_stale_state(run_base_, "/dev/shm", ::geteuid(), own_run_dir_ ? run_dir_ : std::string());
}

Supervisor::~Supervisor() {
  openai_.reset();
  http_.reset();
  client_listener_.reset();
  admin_listener_.reset();
  tcp_listener_.reset();
  handler_.reset();
  pool_.reset();  // kills and reaps any worker still running
  // run_dir_cleanup_ removes the run directory as the members go.
}

int Supervisor::run() {
  wait_signal();
  pool_->start();
  client_listener_->start();
  admin_listener_->start();
  if (tcp_listener_) tcp_listener_->start();
  if (openai_) openai_->start();
  if (http_) http_->start();
  systemd_->start();
  rollouts_->start(io_);
  log_->info("droverd {} serving on {} (admin {}), {} workers, routing {}", kVersion,
             config_.server.socket, config_.server.admin_socket, config_.workers.count,
             to_string(config_.routing.strategy));
  io_.run();
  return 0;
}

void Supervisor::wait_signal() {
  signals_.async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      std::string error;
      const auto result = reload(error);
      if (!error.empty()) log_->error("SIGHUP: {}", error);
      wait_signal();
      return;
    }
    log_->info("signal {} received; shutting down", sig);
    shutdown();
  });
}

json Supervisor::effective_config() const {
  json c = to_json(config_);
  c["rollout_state"] = rollouts_->status();
  return c;
}

json Supervisor::reload(std::string& error) {
  Config next;
  try {
    next = config_path_.empty() ? parse_config("", current_environment(), flags_, "<defaults>")
                                : load_config_file(config_path_, current_environment(), flags_);
  } catch (const ConfigError& e) {
    error = fmt::format("reload rejected, keeping the running configuration: {}", e.what());
    return nullptr;
  }
  // Settings fixed at start: sockets and their limits. They keep their running values until
  // droverd restarts.
  static const std::set<std::string> kRestartOnly = {
      "server.socket",          "server.socket_mode",        "server.admin_socket",
      "server.admin_uids",      "server.max_connections",    "server.max_message_bytes",
      "server.write_buffer_bytes", "server.run_dir", "server.socket_group", "server.user",
      "server.group", "workers.user", "workers.group", "metrics.enabled", "metrics.listen",
      "server.tcp_listen", "server.tls", "server.allow_plaintext_tcp"};
  // Rollout state survives the reload: kept stages keep their percentages, so the new file's
  // feature_flags value for them is not a change.
  rollouts_->configure(next.rollouts);
  rollouts_->apply(next.feature_flags);
  json applied = json::array(), restart_required = json::array();
  for (const auto& key : changed_keys(config_, next)) {
    // The OpenAI listener, its keys and limits are bound at start like the sockets.
    const bool restart_only = kRestartOnly.contains(key) || key.starts_with("openai.");
    (restart_only ? restart_required : applied).push_back(key);
  }
  next.server = [&] {
    ServerConfig s = config_.server;  // start-time settings stay
    s.max_queue = next.server.max_queue;
    s.request_timeout = next.server.request_timeout;
    return s;
  }();
  next.metrics = config_.metrics;  // the HTTP endpoint is bound at start
  next.workers.user = config_.workers.user;  // resolved once, while droverd could check them
  next.workers.group = config_.workers.group;
  next.openai = config_.openai;
  config_ = std::move(next);
  configure_logging(config_.logging.level, config_.logging.format);
  admission_.set_limit(config_.server.max_queue);
  pool_->set_models(config_.model_preload, config_.models, config_.routing.model_affinity,
                    config_.memory_policy.idle_unload);
  pool_->set_transport(config_.transport);  // for workers started from now on
  pool_->reconfigure(config_.workers, config_.circuit_breaker, config_.retry, config_.routing.strategy);
  pool_->set_streaming(config_.streaming);
  pool_->set_batching(config_.batch_queue);
  log_->info("configuration reloaded from {}: applied [{}]{}", config_path_.empty() ? "<defaults>" : config_path_,
             fmt::join(applied, ", "),
             restart_required.empty() ? std::string()
                                      : fmt::format("; needs a restart: [{}]", fmt::join(restart_required, ", ")));
  return json{{"applied", applied}, {"restart_required", restart_required}};
}

void Supervisor::shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  systemd_->stopping();
  client_listener_->stop_accepting();
  admin_listener_->stop_accepting();
  if (tcp_listener_) tcp_listener_->stop_accepting();
  if (openai_) openai_->stop_accepting();
  handler_->set_draining();
  drain_then_stop();
}

void Supervisor::drain_then_stop() {
  const auto deadline = std::chrono::steady_clock::now() + config_.workers.drain_timeout;
  // Poll the outstanding count at a coarse interval: shutdown is rare and this keeps the
  // request path free of shutdown hooks.
  auto check = std::make_shared<std::function<void()>>();
  // The function refers to itself weakly (a strong self-reference would never be freed); the
  // pending timer's handler is what keeps it alive between polls.
  *check = [this, deadline, weak = std::weak_ptr<std::function<void()>>(check)] {
    if (admission_.outstanding() == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (admission_.outstanding() > 0) {
        log_->warn("drain timeout: {} requests still in flight are answered -32009",
                   admission_.outstanding());
      }
      client_listener_->end_sessions(RpcError::shutting_down);
      admin_listener_->end_sessions(RpcError::shutting_down);
      if (tcp_listener_) tcp_listener_->end_sessions(RpcError::shutting_down);
      if (openai_) openai_->stop();
      pool_->shutdown([this] { finish(); });
      // Workers that ignore shutdown are killed when the pool is destroyed.
      drain_timer_.expires_after(Millis(5000));
      drain_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) finish();
      });
      return;
    }
    drain_timer_.expires_after(Millis(20));
    drain_timer_.async_wait([check = weak.lock()](boost::system::error_code ec) {
      if (!ec) (*check)();
    });
  };
  (*check)();
}

void Supervisor::finish() {
  if (http_) http_->stop();
  systemd_->stop();
  drain_timer_.cancel();
  signals_.cancel();
  io_.stop();
}

}  // namespace drover::supervisor
