#include "supervisor/pool/deadline_queue.hpp"

namespace drover::supervisor {

DeadlineQueue::DeadlineQueue(boost::asio::io_context& io, OnExpired on_expired)
    : timer_(io), on_expired_(std::move(on_expired)) {}

DeadlineQueue::~DeadlineQueue() {
  // Entries outlive the queue only in tests; unlinking them keeps their hooks valid.
  for (auto& [timeout, list] : lists_) list.clear();
}

void DeadlineQueue::add(Deadline& entry, std::chrono::milliseconds timeout) {
  entry.at = Clock::now() + timeout;
  lists_[timeout].push_back(entry);
  // A later deadline than the armed one needs nothing: the timer fires first.
  if (!armed_for_ || entry.at < *armed_for_) arm();
}

std::size_t DeadlineQueue::size() const {
  std::size_t n = 0;
  for (const auto& [timeout, list] : lists_) n += list.size();
  return n;
}

void DeadlineQueue::arm() {
  std::optional<Clock::time_point> earliest;
  for (auto it = lists_.begin(); it != lists_.end();) {
    if (it->second.empty()) {
      it = lists_.erase(it);  // a timeout nobody uses any more
      continue;
    }
    const auto head = it->second.front().at;
    if (!earliest || head < *earliest) earliest = head;
    ++it;
  }
  armed_for_ = earliest;
  if (!earliest) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(*earliest);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) expire();
  });
}

void DeadlineQueue::expire() {
  armed_for_.reset();
  const auto now = Clock::now();
  // Taken out first, then reported: a callback may add or cancel entries (even ones due now).
  List due;
  for (auto& [timeout, list] : lists_) {
    while (!list.empty() && list.front().at <= now) {
      Deadline& entry = list.front();
      list.pop_front();
      due.push_back(entry);
    }
  }
  while (!due.empty()) {
    Deadline& entry = due.front();
    due.pop_front();
    on_expired_(entry);
  }
  if (!armed_for_) arm();
}

}  // namespace drover::supervisor
