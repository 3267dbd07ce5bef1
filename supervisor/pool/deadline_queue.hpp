// DeadlineQueue: the deadlines of every Call in one structure behind one timer, so admitting a
// request allocates no timer and makes no timerfd syscall (a steady_timer per call did both).
// Owned by the RequestHandler; supervisor thread only.
//
// Calls with the same timeout are admitted in deadline order, so each distinct timeout keeps an
// intrusive FIFO list: insert at the back and removal (when the call finishes, via the hook's
// auto-unlink) are O(1) and allocate nothing. The timer is armed for the earliest head; a head
// that finishes early is not re-armed for (the timer then fires once for nothing and re-arms).
// Example: 10,000 calls in flight with the default 30 s timeout and 3 with timeout_ms 500 are
// two lists; the timer waits for the nearer of the two heads.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>

namespace drover::supervisor {

class Call;

using DeadlineHook =
    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// What a queue entry is: the Call embeds one; the queue never owns it.
struct Deadline {
  DeadlineHook hook;
  std::chrono::steady_clock::time_point at;
  Call* call = nullptr;  // the Call this deadline is of
  // Unlinks from the queue (also done by the hook's destructor).
  void cancel() { hook.unlink(); }
  bool armed() const { return hook.is_linked(); }
};

class DeadlineQueue {
 public:
  using Clock = std::chrono::steady_clock;
  // Called for each entry whose deadline passed, after it was unlinked. It may add or cancel
  // entries (the queue is consistent when it runs).
  using OnExpired = std::function<void(Deadline& entry)>;

  DeadlineQueue(boost::asio::io_context& io, OnExpired on_expired);
  ~DeadlineQueue();
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;

  // Arms `entry` to expire `timeout` from now. REQUIRES: !entry.armed().
  void add(Deadline& entry, std::chrono::milliseconds timeout);
  std::size_t size() const;

 private:
  using List = boost::intrusive::list<
      Deadline, boost::intrusive::member_hook<Deadline, DeadlineHook, &Deadline::hook>,
      boost::intrusive::constant_time_size<false>>;

  void arm();
  void expire();

  boost::asio::steady_timer timer_;
  OnExpired on_expired_;
  std::map<std::chrono::milliseconds, List> lists_;
  std::optional<Clock::time_point> armed_for_;
};

}  // namespace drover::supervisor
