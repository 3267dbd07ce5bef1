#include "supervisor/admin/systemd_notify.hpp"

#include <fmt/format.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"

namespace drover::supervisor {
namespace {

// Before READY=1: how often readiness is checked (workers.count() is a walk over the slots).
constexpr Millis kStartingPoll{50};
// After READY=1: how often STATUS= is refreshed.
constexpr Millis kStatusPoll{1000};

}  // namespace

NotifySocket::NotifySocket(std::string address) : address_(std::move(address)) {
  if (address_.empty()) return;
  if (address_.front() != '/' && address_.front() != '@') {
    throw std::runtime_error(
        fmt::format("NOTIFY_SOCKET '{}' is neither a path nor an @abstract socket name", address_));
  }
  if (address_.size() >= sizeof(sockaddr_un::sun_path)) {
    throw std::runtime_error(fmt::format("NOTIFY_SOCKET '{}' is too long", address_));
  }
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    throw std::runtime_error(
        fmt::format("cannot create a socket for NOTIFY_SOCKET: {}", std::strerror(errno)));
  }
}

NotifySocket::~NotifySocket() {
  if (fd_ >= 0) ::close(fd_);
}

bool NotifySocket::send(std::string_view state) {
  if (fd_ < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, address_.data(), address_.size());
  // An abstract name starts with a NUL byte and its length is exact (no terminator).
  if (address_.front() == '@') addr.sun_path[0] = '\0';
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size() +
                                          (address_.front() == '@' ? 0 : 1));
  const ssize_t n = ::sendto(fd_, state.data(), state.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&addr), len);
  return n == static_cast<ssize_t>(state.size());
}

NotifyEnvironment take_notify_environment() {
  NotifyEnvironment env;
  if (const char* s = std::getenv("NOTIFY_SOCKET")) env.socket = s;
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  if (usec && (!pid || std::strtoll(pid, nullptr, 10) == ::getpid())) {
    char* end = nullptr;
    const long long v = std::strtoll(usec, &end, 10);
    if (end != usec && *end == '\0' && v > 0) env.watchdog = std::chrono::microseconds(v);
  }
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  return env;
}

SystemdNotifier::SystemdNotifier(boost::asio::io_context& io, NotifyEnvironment env,
                                 std::function<Workers()> workers, Millis degraded_after)
    : io_(io),
      socket_(std::move(env.socket)),
      watchdog_(env.watchdog),
      workers_(std::move(workers)),
      degraded_after_(degraded_after),
      poll_timer_(io),
      watchdog_timer_(io),
      log_(component_logger("supervisor")) {}

void SystemdNotifier::start() {
  if (!enabled()) return;
  started_ = std::chrono::steady_clock::now();
  log_->info("systemd notification socket {}{}", socket_.address(),
             watchdog_ ? fmt::format(", watchdog every {} ms", watchdog_->count() / 2000) : "");
  poll();
  if (watchdog_) ping();
}

void SystemdNotifier::poll() {
  if (stopping_) return;
  const Workers w = workers_();
  const bool degraded_ok =
      w.ready > 0 && std::chrono::steady_clock::now() - started_ >= degraded_after_;
  std::string status = fmt::format("STATUS={}/{} workers ready", w.ready, w.total);
  if (!ready_sent_ && (w.ready >= w.total || degraded_ok) && w.ready > 0) {
    if (socket_.send("READY=1\n" + status)) {
      ready_sent_ = true;
      last_status_ = status;
      log_->info("told systemd READY=1 ({}/{} workers ready)", w.ready, w.total);
    } else {
      log_->warn("cannot notify systemd on {}: {}; retrying", socket_.address(),
                 std::strerror(errno));
    }
  } else if (status != last_status_ && socket_.send(status)) {
    last_status_ = std::move(status);
  }
  poll_timer_.expires_after(ready_sent_ ? kStatusPoll : kStartingPoll);
  poll_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) poll();
  });
}

void SystemdNotifier::ping() {
  if (!socket_.send("WATCHDOG=1")) {
    log_->warn("cannot send WATCHDOG=1 to {}: {}", socket_.address(), std::strerror(errno));
  }
  // Half the interval, as sd_watchdog_enabled(3) recommends: one late ping is not fatal.
  watchdog_timer_.expires_after(*watchdog_ / 2);
  watchdog_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) ping();
  });
}

void SystemdNotifier::stopping() {
  if (!enabled() || stopping_) return;
  stopping_ = true;
  poll_timer_.cancel();
  socket_.send("STOPPING=1\nSTATUS=draining");
}

void SystemdNotifier::stop() {
  poll_timer_.cancel();
  watchdog_timer_.cancel();
}

}  // namespace drover::supervisor
