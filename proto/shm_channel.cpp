#include "proto/shm_channel.hpp"

#include <fcntl.h>
#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <cstring>
#include <limits>
#include <utility>

namespace drover::proto::shm {
namespace {

constexpr std::size_t index_of(PassedFd f) { return static_cast<std::size_t>(f); }

// The eventfd at PassedFd `f` (eventfds skip the segment).
int eventfd_of(const ChannelResources& r, PassedFd f) { return r.eventfds[index_of(f) - 1].get(); }

// A duplicate for asio to own and close; the original stays in ChannelResources.
int dup_fd(int fd) { return ::fcntl(fd, F_DUPFD_CLOEXEC, 0); }

}  // namespace

std::array<int, kPassedFds> ChannelResources::fds() const {
  std::array<int, kPassedFds> out{};
  out[0] = segment.fd();
  for (std::size_t i = 1; i < kPassedFds; ++i) out[i] = eventfds[i - 1].get();
  return out;
}

Result<ChannelResources> create_channel_resources(std::size_t ring_bytes) {
  auto segment = Segment::create_sealed(ring_bytes);
  if (!segment) return segment.error();
  ChannelResources r{std::move(*segment), {}};
  for (auto& fd : r.eventfds) {
    auto made = make_eventfd();
    if (!made) return made.error();
    fd = std::move(*made);
  }
  return r;
}

Result<ChannelResources> adopt_channel_resources(std::vector<UniqueFd> fds) {
  if (fds.size() != kPassedFds) return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
  auto segment = Segment::open_fd(std::move(fds[0]));
  if (!segment) return segment.error();
  ChannelResources r{std::move(*segment), {}};
  for (std::size_t i = 1; i < kPassedFds; ++i) r.eventfds[i - 1] = std::move(fds[i]);
  return r;
}

ShmChannel::ShmChannel(asio::io_context& io, Side side, ChannelResources resources, Hooks hooks,
                       std::size_t max_held_bytes)
    : io_(io),
      side_(side),
      res_(std::move(resources)),
      hooks_(std::move(hooks)),
      data_bell_(io),
      space_bell_(io),
      resume_(io, asio::steady_timer::time_point::max()) {
  const bool sup = side_ == Side::supervisor;
  producer_ = res_.segment.producer(sup ? RingId::requests : RingId::replies);
  consumer_ = res_.segment.consumer(sup ? RingId::replies : RingId::requests);
  // Whom each endpoint rings when the peer sleeps, and which bells this side awaits.
  producer_.set_notify_fd(eventfd_of(res_, sup ? PassedFd::requests_data : PassedFd::replies_data));
  consumer_.set_notify_fd(eventfd_of(res_, sup ? PassedFd::replies_space : PassedFd::requests_space));
  boost::system::error_code ec;
  data_bell_.assign(dup_fd(eventfd_of(res_, sup ? PassedFd::replies_data : PassedFd::requests_data)), ec);
  if (!ec) {
    space_bell_.assign(dup_fd(eventfd_of(res_, sup ? PassedFd::requests_space : PassedFd::replies_space)),
                       ec);
  }
  if (ec) closed_ = true;  // start() reports it through hooks.fail
  // At most one marker per 16 bytes of ring is outstanding, so at most that many deferred lines
  // can honestly be ahead of their markers; more is a peer that sends lines without markers.
  max_held_ = producer_.capacity() / kRecordHeaderBytes;
  max_held_bytes_ = max_held_bytes;
}

ShmChannel::~ShmChannel() = default;

void ShmChannel::start() {
  if (closed_) {
    auto fail = hooks_.fail;
    if (fail) fail("shm doorbell set-up failed");
    return;
  }
  spawn(io_, receive_loop());
}

void ShmChannel::close() {
  if (closed_) return;
  closed_ = true;
  // The hooks stay (a hook may be running: close() is often called from inside deliver); every
  // call site checks closed_ first. They must not own the channel's owner.
  on_idle_ = nullptr;
  waiting_.clear();
  held_.clear();
  held_bytes_ = 0;
  boost::system::error_code ignored;
  data_bell_.cancel(ignored);
  space_bell_.cancel(ignored);
  resume_.cancel();
}

void ShmChannel::stop(const std::string& why) {
  if (closed_) return;
  auto fail = hooks_.fail;  // a copy: the owner may drop the channel from inside it
  close();
  if (fail) fail(why);
}

// ------------------------------------------------------------------ sending

void ShmChannel::send(std::string_view message) {
  if (closed_) return;
  // Behind a message waiting for space, everything waits: order is the channel's promise.
  if (!waiting_.empty()) {
    waiting_.emplace_back(message);
    return;
  }
  if (try_stage(message)) return schedule_flush();
  if (closed_) return;
  waiting_.emplace_back(message);
  if (!space_loop_running_) {
    space_loop_running_ = true;
    spawn(io_, space_loop());
  }
}

bool ShmChannel::try_stage(std::string_view message) {
  const bool deferred = message.size() > producer_.max_payload_bytes();
  auto staged = producer_.try_stage(RecordKind::message, deferred ? std::string_view() : message);
  if (!staged) {
    stop(fmt::format("shm ring (send): {}", staged.error().message()));
    return false;
  }
  if (!*staged) return false;
  if (deferred) {
    // The marker holds this message's place in the ring; the line follows on the socket.
    ++counters_.deferred_messages_out;
    counters_.deferred_bytes_out += message.size();
    std::string line;
    line.reserve(message.size() + 2);
    line += kDeferredPrefix;
    line += message;
    line += '\n';
    if (!closed_ && hooks_.write_socket) hooks_.write_socket(std::move(line));
  } else {
    ++counters_.ring_messages_out;
    counters_.ring_bytes_out += message.size();
  }
  return true;
}

void ShmChannel::schedule_flush() {
  // One publish (and at most one wake-up) per event-loop turn, however many messages it sent.
  if (flush_posted_) return;
  flush_posted_ = true;
  asio::post(io_, [self = shared_from_this()] {
    self->flush_posted_ = false;
    if (!self->closed_) self->producer_.publish();
  });
}

void ShmChannel::flush() {
  if (!closed_) producer_.publish();
}

asio::awaitable<void> ShmChannel::space_loop() {
  auto self = shared_from_this();
  std::uint64_t counter = 0;
  while (!closed_ && !waiting_.empty()) {
    const std::string& front = waiting_.front();
    const std::size_t need = front.size() > producer_.max_payload_bytes() ? 0 : front.size();
    auto armed = producer_.arm_async_space_wait(need);
    if (!armed) {
      stop(fmt::format("shm ring (space): {}", armed.error().message()));
      break;
    }
    if (*armed == AsyncWait::armed) {
      auto [ec, n] = co_await space_bell_.async_read_some(asio::buffer(&counter, sizeof counter),
                                                          use_nothrow);
      if (closed_) break;
      producer_.disarm_async_space_wait();
      if (ec && ec != asio::error::would_block) {
        stop("shm space doorbell: " + ec.message());
        break;
      }
    }
    while (!closed_ && !waiting_.empty() && try_stage(waiting_.front())) waiting_.pop_front();
    if (!closed_) producer_.publish();
  }
  space_loop_running_ = false;
  if (!closed_ && waiting_.empty() && on_idle_) {
    auto f = on_idle_;
    f();
  }
}

void ShmChannel::write_garbage_record() {
  if (closed_) return;
  producer_.publish();
  const auto ring = static_cast<std::size_t>(side_ == Side::supervisor ? RingId::requests
                                                                        : RingId::replies);
  std::byte* base = res_.segment.bytes().data();
  const auto& header = *reinterpret_cast<const SegmentHeader*>(base);
  auto* control = reinterpret_cast<RingControl*>(base + header.control_offset[ring]);
  std::byte* data = base + header.data_offset[ring];
  const std::uint64_t tail = control->tail.load(std::memory_order_relaxed);
  const std::uint64_t offset = tail & (res_.segment.ring_bytes() - 1);
  const std::uint32_t bad[4] = {0, 0x7fu, 0xdeadbeefu, 0xdeadbeefu};  // length, kind, sequence
  std::memcpy(data + offset, bad, sizeof bad);
  control->tail.store(tail + kRecordHeaderBytes, std::memory_order_seq_cst);
  (void)signal_eventfd(eventfd_of(res_, side_ == Side::supervisor ? PassedFd::requests_data
                                                                   : PassedFd::replies_data));
  close();
}

void ShmChannel::publish_without_wakeup() {
  if (closed_) return;
  producer_.set_notify_fd(-1);  // the peer awaits its eventfd, never the futex word
  producer_.publish();
  close();
}

// ------------------------------------------------------------------ receiving

void ShmChannel::deliver(std::string_view message) {
  if (!closed_ && hooks_.deliver) hooks_.deliver(message);
}

ShmChannel::Drained ShmChannel::drain(std::size_t max_records, std::size_t max_bytes) {
  std::size_t records = 0, bytes = 0;
  while (!closed_ && !at_marker_) {
    if (records >= max_records || bytes >= max_bytes) return Drained::more;
    auto popped = consumer_.try_pop(record_);
    if (!popped) {
      stop(fmt::format("shm {} ring: {}", side_ == Side::supervisor ? "replies" : "requests",
                       popped.error().message()));
      return Drained::stopped;
    }
    if (!*popped) break;
    ++records;
    bytes += framed_size(record_.payload.size());
    if (!record_.payload.empty()) {
      ++counters_.ring_messages_in;
      counters_.ring_bytes_in += record_.payload.size();
      deliver(record_.payload);
    } else if (!held_.empty()) {
      const HeldLine held = std::move(held_.front());
      held_.pop_front();
      held_bytes_ -= held.line.size();
      deliver_deferred(held.line, held.skipped);
    } else {
      at_marker_ = true;  // the line is still in the socket; take_socket_line resumes
    }
  }
  return closed_ ? Drained::stopped : Drained::idle;
}

void ShmChannel::drain_now() {
  // Every record a stopped peer published fits in the ring: capacity() framed bytes of records
  // at most, so this bound only cuts off a peer that is still publishing.
  (void)drain(std::numeric_limits<std::size_t>::max(), consumer_.capacity());
}

bool ShmChannel::take_socket_line(std::string_view line) {
  if (line.empty() || line.front() != kDeferredPrefix) return false;
  if (closed_) return true;
  line.remove_prefix(1);
  ++counters_.deferred_messages_in;
  counters_.deferred_bytes_in += line.size();
  // Both rings have the same size, so the peer's limit for a ring record is ours too.
  if (line.size() <= producer_.max_payload_bytes()) {
    stop(fmt::format("a deferred socket line of {} bytes fits the ring (records up to {} bytes)",
                     line.size(), producer_.max_payload_bytes()));
    return true;
  }
  place_deferred(line, nullptr);
  return true;
}

void ShmChannel::take_skipped_socket_line(std::function<void()> in_its_place) {
  if (closed_) return;
  ++counters_.deferred_messages_in;
  place_deferred(std::string_view(), std::move(in_its_place));
}

void ShmChannel::deliver_deferred(std::string_view line, const std::function<void()>& skipped) {
  if (!skipped) {
    deliver(line);
  } else if (!closed_) {
    skipped();
  }
}

void ShmChannel::place_deferred(std::string_view line, std::function<void()> skipped) {
  if (at_marker_) {
    // The ring waits at this line's marker: deliver it now, without a copy.
    at_marker_ = false;
    deliver_deferred(line, skipped);
    if (parked_at_marker_) {
      // The receive loop waits at this marker: it drains on from here, in bounded turns (a
      // socket read must not turn into an unbounded drain either).
      resume_.cancel();
    } else {
      // drain_now() stopped at the marker while the loop sleeps on the doorbell.
      drain_now();
    }
    return;
  }
  if (held_.size() >= max_held_) {
    stop("deferred socket lines without ring markers");
    return;
  }
  if (held_bytes_ + line.size() > max_held_bytes_) {
    stop(fmt::format("deferred socket lines without ring markers: {} bytes held, limit {} bytes",
                     held_bytes_ + line.size(), max_held_bytes_));
    return;
  }
  held_bytes_ += line.size();
  held_.push_back(HeldLine{std::string(line), std::move(skipped)});
}

asio::awaitable<void> ShmChannel::receive_loop() {
  auto self = shared_from_this();
  std::uint64_t counter = 0;
  while (!closed_) {
    const Drained drained = drain(kDrainRecordsPerTurn, consumer_.capacity());
    if (drained == Drained::stopped) break;
    if (drained == Drained::more) {
      // The rest waits behind what else is ready (timers, other sockets): a peer publishing as
      // fast as this drains must not own the thread.
      co_await asio::post(io_, asio::use_awaitable);
      continue;
    }
    if (at_marker_) {
      parked_at_marker_ = true;
      resume_.expires_at(asio::steady_timer::time_point::max());
      co_await resume_.async_wait(use_nothrow);
      parked_at_marker_ = false;
      continue;
    }
    auto armed = consumer_.arm_async_wait();
    if (!armed) {
      stop(fmt::format("shm ring (receive): {}", armed.error().message()));
      break;
    }
    if (*armed == AsyncWait::ready) continue;
    // A read, not async_wait: it consumes the counter, and readiness that came before the read
    // was started is not missed (the counter keeps it).
    auto [ec, n] = co_await data_bell_.async_read_some(asio::buffer(&counter, sizeof counter),
                                                       use_nothrow);
    if (closed_) break;
    consumer_.disarm_async_wait();
    if (ec && ec != asio::error::would_block) {
      stop("shm data doorbell: " + ec.message());
      break;
    }
  }
}

}  // namespace drover::proto::shm
