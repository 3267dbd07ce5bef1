// systemd integration without libsystemd: the sd_notify datagram protocol
// (https://www.freedesktop.org/software/systemd/man/sd_notify.html).
//
// NotifySocket sends "KEY=VALUE\n..." datagrams to $NOTIFY_SOCKET: a filesystem path, or an
// abstract socket written with a leading '@'. Sends never block (MSG_DONTWAIT); a datagram the
// manager cannot take right now is reported as not sent.
//
// SystemdNotifier drives it for droverd (a unit with Type=notify, see deploy/systemd/):
//  - READY=1 once every configured worker is ready, or — so one crash-looping slot cannot keep
//    the unit "activating" until systemd's start timeout kills it — once at least one is ready
//    and `degraded_after` (workers.start_timeout_ms) has passed since start();
//  - STATUS=<ready>/<total> workers ready, whenever that changes;
//  - WATCHDOG=1 every WATCHDOG_USEC/2 when the unit sets WatchdogSec= (and WATCHDOG_PID, if
//    set, is ours). The ping comes from a timer on the io_context, so it proves the event loop
//    is turning, not merely that the process exists;
//  - STOPPING=1 when a shutdown begins.
// Without NOTIFY_SOCKET it does nothing and arms no timer. Supervisor thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/config.hpp"

namespace drover::supervisor {

class NotifySocket {
 public:
  // `address` as in $NOTIFY_SOCKET; empty gives a disabled socket. Throws std::runtime_error
  // when the address is unusable (too long, or not a path or @abstract name).
  explicit NotifySocket(std::string address);
  ~NotifySocket();
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool enabled() const { return fd_ >= 0; }
  const std::string& address() const { return address_; }
  // Sends one datagram; false when it could not be sent (errno describes why).
  bool send(std::string_view state);

 private:
  std::string address_;
  int fd_ = -1;
};

// What the service manager asked for, read from the environment.
struct NotifyEnvironment {
  std::string socket;                                 // $NOTIFY_SOCKET, empty when unset
  std::optional<std::chrono::microseconds> watchdog;  // $WATCHDOG_USEC, when meant for us
};
// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and removes them from the environment,
// so worker processes (which inherit it) cannot talk to the manager in droverd's name.
// REQUIRES: no other thread reads the environment meanwhile (call it at start-up).
NotifyEnvironment take_notify_environment();

class SystemdNotifier {
 public:
  struct Workers {
    int ready = 0;
    int total = 0;
  };

  SystemdNotifier(boost::asio::io_context& io, NotifyEnvironment env,
                  std::function<Workers()> workers, Millis degraded_after);

  bool enabled() const { return socket_.enabled(); }
  // Starts watching readiness and pinging the watchdog (when enabled).
  void start();
  // Sends STOPPING=1 and stops the readiness updates; the watchdog keeps pinging until
  // stop(), since a drain can outlast WatchdogSec.
  void stopping();
  // Cancels the timers (the io_context is about to stop).
  void stop();

 private:
  void poll();
  void ping();

  boost::asio::io_context& io_;
  NotifySocket socket_;
  std::optional<std::chrono::microseconds> watchdog_;
  std::function<Workers()> workers_;
  Millis degraded_after_;
  std::chrono::steady_clock::time_point started_{};
  boost::asio::steady_timer poll_timer_;
  boost::asio::steady_timer watchdog_timer_;
  bool ready_sent_ = false;
  bool stopping_ = false;
  std::string last_status_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace drover::supervisor
