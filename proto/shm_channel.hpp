// ShmChannel: one side's end of the shared-memory data plane of one worker incarnation — the
// segment's two rings, their four eventfd doorbells on the side's io_context, and the rule that
// keeps messages in order when one of them has to travel on the control socket. It moves
// message bytes and never looks inside them. The supervisor's WorkerLink and the worker's
// WorkerRuntime each own one (shared: its coroutines hold it) once `init` negotiated shm.
// Runs on one io_context thread only; nothing here blocks or spins.
//
// Ordering rule (proto/README.md "Shared-memory transport", "Order"): every message a side sends
// after activation goes through send(), which keeps one order for both channels:
//  - a message that fits the ring is a `message` record;
//  - a message too large for the ring (payload > max_payload_bytes) leaves an empty `message`
//    record in the ring as a marker, and travels on the socket as one NDJSON line prefixed with
//    the byte 0x1E (kDeferredPrefix);
//  - when the ring is full, messages wait in a local queue, in order, until the peer frees
//    space; a later message never overtakes a queued one.
// The receiver hands ring records to deliver() in ring order; at a marker it delivers the next
// 0x1E socket line instead (holding the ring until that line has arrived, or holding the line
// until its marker is reached). So a cancel never overtakes its generate, nor a final reply its
// chunks, whatever their sizes. Socket lines without the prefix (the handshake, injected
// garbage) are the caller's, outside this order.
//
// Doorbells: a producer publishes once per event-loop turn (send() stages; a posted flush
// publishes), and the ring makes the wake-up syscall only when the consumer said it sleeps; the
// consumer drains the ring, arms its eventfd and awaits it with async_read_some (no spin).
//
// Fairness: the consumer delivers at most kDrainRecordsPerTurn records or one ring's worth of
// bytes per event-loop turn, then posts the rest of its drain behind whatever else is ready,
// so a peer that publishes as fast as it is drained cannot starve the thread's timers (droverd's
// heartbeat and stall watchdogs) or its other sockets.
//
// Limits on deferred lines a peer sends ahead of their markers (proto/README.md "Failures"):
// at most one per kRecordHeaderBytes of ring (a marker's size), at most max_held_bytes in all,
// and each must be too large for the ring (a deferred line that would fit is a peer breaking
// the protocol). Past any of these the channel stops through hooks.fail.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/async_util.hpp"
#include "proto/fd_passing.hpp"
#include "proto/shm_segment.hpp"

namespace drover::proto::shm {

// First byte of a socket line that stands in for a ring marker. Never the start of JSON.
inline constexpr char kDeferredPrefix = '\x1e';

// Descriptors `init` passes, in this order (proto/README.md "Negotiation").
enum class PassedFd : std::size_t {
  segment = 0,     // the sealed memfd
  requests_data,   // the worker awaits requests; droverd's requests producer rings it
  requests_space,  // droverd awaits space in requests; the worker's consumer rings it
  replies_data,    // droverd awaits replies; the worker's replies producer rings it
  replies_space,   // the worker awaits space in replies; droverd's consumer rings it
};
inline constexpr std::size_t kPassedFds = 5;
// Names of the descriptors in init's `transport.fds`, in PassedFd order.
inline constexpr std::array<const char*, kPassedFds> kPassedFdNames = {
    "segment", "requests_data", "requests_space", "replies_data", "replies_space"};

// The segment and doorbells of one incarnation, before either side wires them.
struct ChannelResources {
  Segment segment;
  std::array<UniqueFd, kPassedFds - 1> eventfds;  // PassedFd order without the segment
  // Descriptors to attach to `init`, in PassedFd order (owned by this object).
  std::array<int, kPassedFds> fds() const;
};

// droverd: a sealed memfd segment with `ring_bytes` per ring and four eventfds.
Result<ChannelResources> create_channel_resources(std::size_t ring_bytes);
// The worker: adopts the descriptors received with `init` (exactly kPassedFds, PassedFd order)
// and maps the segment. Errors: invalid_argument (wrong count), or Segment::open_fd's.
Result<ChannelResources> adopt_channel_resources(std::vector<UniqueFd> fds);

struct ChannelCounters {
  std::uint64_t ring_messages_out = 0, ring_bytes_out = 0;
  std::uint64_t deferred_messages_out = 0, deferred_bytes_out = 0;  // too large: on the socket
  std::uint64_t ring_messages_in = 0, ring_bytes_in = 0;
  std::uint64_t deferred_messages_in = 0, deferred_bytes_in = 0;
};

class ShmChannel : public std::enable_shared_from_this<ShmChannel> {
 public:
  enum class Side { supervisor, worker };
  struct Hooks {
    // One message from the peer, in the peer's send() order.
    std::function<void(std::string_view)> deliver;
    // One framed line (prefix, message, newline) to queue on the control socket.
    std::function<void(std::string)> write_socket;
    // The ring broke (corrupt header or index, a deferred line without a marker, a doorbell
    // error): the channel has stopped; the owner decides (droverd fails the worker).
    std::function<void(const std::string& why)> fail;
  };

  // Records one drain turn delivers before it yields to the event loop. 256 small messages
  // are tens of microseconds of work; one turn is also bounded by the ring's size in bytes.
  static constexpr std::size_t kDrainRecordsPerTurn = 256;
  // Bytes of deferred lines held ahead of their markers: the default workers.max_message_bytes,
  // i.e. one largest message. An honest peer's lines overtake their markers only by the
  // messages of one event-loop turn (markers are published at the end of the turn that wrote
  // the lines), so this is generous; the count bound alone allowed ring_bytes / 16 lines of up
  // to 64 MiB each.
  static constexpr std::size_t kDefaultMaxHeldBytes = std::size_t{64} << 20;

  ShmChannel(asio::io_context& io, Side side, ChannelResources resources, Hooks hooks,
             std::size_t max_held_bytes = kDefaultMaxHeldBytes);
  ~ShmChannel();
  ShmChannel(const ShmChannel&) = delete;
  ShmChannel& operator=(const ShmChannel&) = delete;

  // Starts the consumer's doorbell loop. Call once, after construction.
  void start();
  // Sends one message (no newline) in order; never blocks. Ignored once closed.
  void send(std::string_view message);
  // A socket line from the peer. true: it was a deferred message (0x1E) and the channel took
  // it; false: not the channel's, the caller handles it.
  bool take_socket_line(std::string_view line);
  // A deferred line the socket reader dropped as too large for it (counted as a deferred
  // message, its bytes unknown): its marker is still in the ring, so `in_its_place` runs where
  // the line would have been delivered (drover-worker answers the request -32007 there).
  void take_skipped_socket_line(std::function<void()> in_its_place);
  // Delivers what the ring holds now, in one go (droverd calls it before acting on the socket's
  // EOF or the process's exit, so the replies a worker published before exiting are not lost).
  // Bounded by one ring's worth of bytes: a peer still publishing cannot keep it going.
  void drain_now();
  // Publishes what is staged now (before a worker closes its socket and exits).
  void flush();
  // Nothing waits for ring space (everything sent is at least staged).
  bool idle() const { return waiting_.empty(); }
  // Called once whenever the wait queue empties (a worker's graceful exit waits for it).
  void on_idle(std::function<void()> f) { on_idle_ = std::move(f); }
  // Stops the loops and drops the hooks; the segment is unmapped when the last loop has ended.
  void close();
  bool closed() const { return closed_; }

  // Fault drill (workers.inject "ring_garbage"): publishes a record header of an unknown kind
  // in this side's outgoing ring and rings the peer, then stops sending. The peer's consumer
  // must find it corrupt.
  void write_garbage_record();
  // Fault drill (workers.inject "exit_after_reply"): publishes what is staged without ringing
  // the peer, so the peer finds it only by draining (as when it was busy at the time), then
  // stops sending.
  void publish_without_wakeup();

  std::size_t max_payload_bytes() const { return producer_.max_payload_bytes(); }
  std::size_t ring_bytes() const { return producer_.capacity(); }
  const ChannelCounters& counters() const { return counters_; }

 private:
  // Stages `message` (or its marker, sending the message on the socket); false: no space now.
  bool try_stage(std::string_view message);
  void schedule_flush();
  enum class Drained { idle, more, stopped };
  // Delivers records until the ring is empty or waits at a marker (idle), or until
  // `max_records` records or `max_bytes` framed bytes were delivered and more may follow
  // (more), or the channel stopped (stopped).
  Drained drain(std::size_t max_records, std::size_t max_bytes);
  void deliver(std::string_view message);
  // A deferred line, or what stands in for a skipped one, at its marker or held until then.
  struct HeldLine {
    std::string line;
    std::function<void()> skipped;  // set: the line was dropped; run this in its place
  };
  void place_deferred(std::string_view line, std::function<void()> skipped);
  void deliver_deferred(std::string_view line, const std::function<void()>& skipped);
  void stop(const std::string& why);
  asio::awaitable<void> receive_loop();
  asio::awaitable<void> space_loop();

  asio::io_context& io_;
  Side side_;
  ChannelResources res_;
  Hooks hooks_;
  RingProducer producer_;
  RingConsumer consumer_;
  // Eventfds this side awaits (dups owned by the descriptors).
  asio::posix::stream_descriptor data_bell_;
  asio::posix::stream_descriptor space_bell_;
  asio::steady_timer resume_;  // wakes receive_loop when a marker's line arrived
  std::deque<std::string> waiting_;  // for ring space, in send order
  std::deque<HeldLine> held_;        // deferred lines that arrived before their marker
  std::size_t held_bytes_ = 0;       // their sizes, summed
  std::size_t max_held_ = 0;
  std::size_t max_held_bytes_ = 0;
  Record record_;
  bool at_marker_ = false;  // the ring's next record is a marker whose line has not arrived
  bool parked_at_marker_ = false;  // receive_loop awaits resume_ for that line
  bool space_loop_running_ = false;
  bool flush_posted_ = false;
  bool closed_ = false;
  std::function<void()> on_idle_;
  ChannelCounters counters_;
};

}  // namespace drover::proto::shm
