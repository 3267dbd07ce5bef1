#include "supervisor/supervisor.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <stdexcept>

#include "common/log.hpp"
#include "supervisor/version.hpp"

namespace drover::supervisor {
namespace {

std::string make_run_dir(const std::string& configured) {
  if (!configured.empty()) {
    std::filesystem::create_directories(configured);
    ::chmod(configured.c_str(), 0700);
    return configured;
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = fmt::format("{}/drover-{}-XXXXXX", tmp && *tmp ? tmp : "/tmp", ::getpid());
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::runtime_error(fmt::format("cannot create run directory {}", templ));
  }
  return templ;
}

}  // namespace

Supervisor::Supervisor(Config config)
    : config_(std::move(config)),
      admission_(config_.server.max_queue),
      signals_(io_, SIGTERM, SIGINT),
      drain_timer_(io_),
      log_(component_logger("supervisor")) {
  // A client that vanishes mid-write must not kill droverd.
  ::signal(SIGPIPE, SIG_IGN);
  run_dir_ = make_run_dir(config_.server.run_dir);
  own_run_dir_ = config_.server.run_dir.empty();
  pool_ = std::make_unique<WorkerPool>(io_, config_.workers, config_.circuit_breaker, config_.retry,
                                       run_dir_, config_.routing.strategy);
  handler_ = std::make_unique<RequestHandler>(io_, config_, *pool_, admission_);
  Listener::Options client;
  client.path = config_.server.socket;
  client.mode = config_.server.socket_mode;
  client.max_connections = config_.server.max_connections;
  client.max_message_bytes = config_.server.max_message_bytes;
  client.write_buffer_bytes = config_.server.write_buffer_bytes;
  Listener::Options admin = client;
  admin.path = config_.server.admin_socket;
  admin.mode = 0600;
  admin.admin = true;
  admin.allowed_uids = config_.server.admin_uids;
  client_listener_ = std::make_unique<Listener>(io_, client, *handler_);
  admin_listener_ = std::make_unique<Listener>(io_, admin, *handler_);
}

Supervisor::~Supervisor() {
  client_listener_.reset();
  admin_listener_.reset();
  handler_.reset();
  pool_.reset();  // kills and reaps any worker still running
  if (own_run_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(run_dir_, ec);
  }
}

int Supervisor::run() {
  signals_.async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    log_->info("signal {} received; shutting down", sig);
    shutdown();
  });
  pool_->start();
  client_listener_->start();
  admin_listener_->start();
  log_->info("droverd {} serving on {} (admin {}), {} workers, routing {}", kVersion,
             config_.server.socket, config_.server.admin_socket, config_.workers.count,
             to_string(config_.routing.strategy));
  io_.run();
  return 0;
}

void Supervisor::shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  client_listener_->stop_accepting();
  admin_listener_->stop_accepting();
  handler_->set_draining();
  drain_then_stop();
}

void Supervisor::drain_then_stop() {
  const auto deadline = Clock::now() + config_.workers.drain_timeout;
  // Poll the outstanding count at a coarse interval: shutdown is rare and this keeps the
  // request path free of shutdown hooks.
  auto check = std::make_shared<std::function<void()>>();
  *check = [this, deadline, check] {
    if (admission_.outstanding() == 0 || Clock::now() >= deadline) {
      if (admission_.outstanding() > 0) {
        log_->warn("drain timeout: {} requests still in flight are answered -32009",
                   admission_.outstanding());
      }
      client_listener_->end_sessions(RpcError::shutting_down);
      admin_listener_->end_sessions(RpcError::shutting_down);
      pool_->shutdown([this] { finish(); });
      // Workers that ignore shutdown are killed when the pool is destroyed.
      drain_timer_.expires_after(Millis(5000));
      drain_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) finish();
      });
      return;
    }
    drain_timer_.expires_after(Millis(20));
    drain_timer_.async_wait([check](boost::system::error_code ec) {
      if (!ec) (*check)();
    });
  };
  (*check)();
}

void Supervisor::finish() {
  drain_timer_.cancel();
  signals_.cancel();
  io_.stop();
}

}  // namespace drover::supervisor
