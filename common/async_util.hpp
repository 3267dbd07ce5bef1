// Small Boost.Asio helpers shared by droverd, drover-worker and the tests.
//  - spawn(): co_spawn whose failure is never silent: an exception escaping a coroutine is a
//    broken invariant and is rethrown from io_context::run() (crashing the process), instead of
//    being dropped as asio::detached would.
//  - WriteQueue: an ordered, coalescing writer for one stream socket; producers push whole
//    messages from the owning thread, one writer coroutine drains them with gathered writes.
// Everything here runs on the io_context thread that owns the socket.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <deque>
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace drover {

namespace asio = boost::asio;

inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

template <typename Executor, typename Awaitable>
void spawn(Executor&& ex, Awaitable&& a) {
  asio::co_spawn(std::forward<Executor>(ex), std::forward<Awaitable>(a), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
}

template <typename Stream>
class WriteQueue {
 public:
  explicit WriteQueue(Stream& stream)
      : stream_(stream), wake_(stream.get_executor(), asio::steady_timer::time_point::max()) {}

  // Queues bytes behind everything queued before. Ignored once closed.
  void push(std::string bytes) {
    if (closed_ || bytes.empty()) return;
    bytes_ += bytes.size();
    queue_.push_back(std::move(bytes));
    wake_.cancel_one();
  }

  std::size_t queued_bytes() const { return bytes_; }
  bool idle() const { return queue_.empty() && !writing_; }
  bool closed() const { return closed_; }

  // Stops the writer after the current write; queued bytes are dropped.
  void close() {
    closed_ = true;
    wake_.cancel();
  }

  // The writer loop. Returns the error that stopped it (success when closed). Run exactly one.
  asio::awaitable<boost::system::error_code> run() {
    std::vector<asio::const_buffer> buffers;
    while (!closed_) {
      if (queue_.empty()) {
        co_await wake_.async_wait(use_nothrow);
        continue;
      }
      // Gather up to 64 messages into one writev: one syscall for a burst of replies.
      const std::size_t n = std::min<std::size_t>(queue_.size(), 64);
      buffers.clear();
      for (std::size_t i = 0; i < n; ++i) buffers.push_back(asio::buffer(queue_[i]));
      writing_ = true;
      auto [ec, written] = co_await asio::async_write(stream_, buffers, use_nothrow);
      writing_ = false;
      if (ec) {
        closed_ = true;
        co_return ec;
      }
      bytes_ -= written;
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      if (on_written_) on_written_();
      if (queue_.empty() && on_drained_) on_drained_();
    }
    co_return boost::system::error_code{};
  }

  // Called whenever the queue becomes empty after a write (used for graceful close).
  void on_drained(std::function<void()> f) { on_drained_ = std::move(f); }
  // Called after every completed write, before on_drained (used to resume a paused reader).
  void on_written(std::function<void()> f) { on_written_ = std::move(f); }

 private:
  Stream& stream_;
  asio::steady_timer wake_;
  std::deque<std::string> queue_;
  std::size_t bytes_ = 0;
  bool writing_ = false;
  bool closed_ = false;
  std::function<void()> on_drained_;
  std::function<void()> on_written_;
};

}  // namespace drover
