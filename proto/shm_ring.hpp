// A single-producer/single-consumer byte ring in shared memory, carrying variable-length records
// between two processes (the supervisor and one worker). proto/shm_segment.hpp places two of
// them (requests, replies) in one segment; proto/README.md "Shared-memory transport" is the
// byte-level spec.
//
// Contract (read before using):
//  - Exactly one RingProducer and one RingConsumer per ring for the segment's lifetime, each
//    constructed before the first record is pushed and used by one thread at a time (they may be
//    in different processes, or different threads of one process). Nothing here is safe for two
//    producers or two consumers: there are no locks.
//  - Endpoints hold pointers into the mapping and do not own it: the Segment (or whatever memory
//    the ring lives in) must outlive them. Endpoints are cheap to move; copying is disabled.
//  - Capacity: the ring holds at most capacity() bytes of framed records. A record costs
//    framed_size(payload) = 16 + payload rounded up to 16 bytes, plus, when it does not fit
//    before the end of the buffer, the padding record that fills the rest. A record is accepted
//    only if framed_size(payload) <= capacity() / 2 (payload <= max_payload_bytes()); larger ones
//    get Errc::too_large and belong on the socket. With that bound an empty ring always accepts
//    any acceptable record, whatever the wrap position, so a producer can never be stuck.
//  - try_* never block and never make a syscall, except that publishing (try_push, publish())
//    wakes the consumer with one syscall when, and only when, the consumer said it was going to
//    sleep; consume() does the same for a producer sleeping for space. A busy ring therefore costs
//    no syscalls per record.
//  - size_guess() is a guess: the other side moves concurrently.
//  - Distrust: every index and record header the peer wrote is bounds-checked before use
//    (indices within capacity of each other, monotonic and aligned; lengths within the ring and
//    within what was published; kind known; sequence the expected next). A violation returns
//    Errc::corrupt, which is sticky; nothing outside the ring's buffer is ever read or written,
//    whatever the peer writes into the shared bytes. A payload returned by peek() may still be
//    changed underneath by a misbehaving producer: it is bounded, not trusted.
//
// Record format (little-endian, every record starts 16-byte aligned in the buffer):
//   +0 u32 length   payload bytes (not counting this header or the alignment padding)
//   +4 u32 kind     RecordKind: message, or padding (wrap marker)
//   +8 u64 sequence message records count 0, 1, 2, ... ; a padding record carries the sequence
//                   of the message that follows it and does not advance the count
//   +16 payload, then zero to 15 bytes of alignment slack
// Wrap strategy: records are never split. When a record does not fit between the write position
// and the end of the buffer, the producer writes a padding record covering exactly the rest of
// the buffer and puts the record at offset 0; both are published by one tail store.
//
// Indices: `tail` (bytes ever published) and `head` (bytes ever consumed) are monotonically
// increasing u64 in separate 128-byte blocks (the 64-byte line plus the neighbour that Intel's
// spatial prefetcher fetches in pairs); the buffer offset is index & (capacity - 1).
// Ordering: the producer writes record bytes, then stores tail with release; the consumer loads
// tail with acquire before reading them. The consumer reads a record, then stores head with
// release; the producer loads head with acquire before overwriting that space. (The stores are
// in fact seq_cst, and so are the loads that re-check before sleeping: see DoorbellWord.)
//
// Doorbells: see the comment above DoorbellWord for the protocol and its proof of no lost
// wake-up. A consumer may sleep on the futex word (wait(), for a thread that may block) or ask
// for an eventfd write (arm_async_wait(), for an event loop such as the supervisor's
// io_context, which must never block). The same pair exists for a producer waiting for space.
#pragma once

#include <atomic>
#include <bit>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "proto/shm_error.hpp"

namespace drover::proto::shm {

template <typename T>
using Result = boost::system::result<T>;

// Ring sizes accepted (transport.ring_bytes): a power of two. 4 KiB is one page; 1 GiB keeps
// every length and offset well inside u32 and the segment well inside /dev/shm.
inline constexpr std::size_t kMinRingBytes = std::size_t{4} << 10;
inline constexpr std::size_t kMaxRingBytes = std::size_t{1} << 30;
inline constexpr std::size_t kRecordHeaderBytes = 16;
// 16, not 8, so a record header (16 bytes) can never straddle the end of the buffer: every
// record starts 16-aligned and the buffer is a multiple of 16, so at least 16 bytes remain.
inline constexpr std::size_t kRecordAlign = 16;
// Spacing of the independently written shared words (see "Indices" above).
inline constexpr std::size_t kIndexSpacing = 128;

enum class RecordKind : std::uint32_t {
  message = 1,  // one complete JSON-RPC message (no framing newline)
  padding = 2,  // wrap marker: skip to offset 0 (written by the ring itself, never by callers)
};

bool valid_ring_bytes(std::size_t ring_bytes);

// Bytes a record with `payload_bytes` of payload occupies in the ring (header + aligned payload).
constexpr std::size_t framed_size(std::size_t payload_bytes) {
  return kRecordHeaderBytes + ((payload_bytes + kRecordAlign - 1) & ~(kRecordAlign - 1));
}

// ---- shared layout (lives in the segment; only integers, no pointers) ----

// Who sleeps, in DoorbellWord::sleeping.
enum class SleepMode : std::uint32_t {
  awake = 0,
  futex = 1,    // the waiter is (about to be) in futex_wait on `bell`
  eventfd = 2,  // the waiter awaits the notifier's eventfd becoming readable
};

// One doorbell: a waiter (the consumer waiting for records, or the producer waiting for space)
// and a notifier (the other side).
//
// Waiter:   key = bell.load(acquire)                       (W1)
//           sleeping.store(mode, seq_cst)                  (W2)
//           re-check: load the notifier's index, seq_cst   (W3)
//           if still unmet: futex_wait(&bell, key) / await the eventfd; then sleeping = awake
// Notifier: store its index (tail or head), seq_cst        (N1)
//           if sleeping.load(seq_cst) != awake:            (N2)
//             mode = sleeping.exchange(awake); bell.fetch_add(1, release);
//             futex_wake(&bell) or write(eventfd, 1) by mode
//
// No lost wake-up: W2, W3, N1 and N2 are seq_cst, so they lie in one total order S consistent
// with program order (W2 before W3, N1 before N2). If N1 precedes W3 in S, W3 reads N1's index
// or a later one: the condition holds and the waiter does not sleep. Otherwise W3 precedes N1,
// so W2 precedes N2, and N2 reads W2's flag or a later store; later stores to `sleeping` come
// only from the waiter after it stopped waiting (it re-checks afterwards) or from the notifier
// itself, so the notifier rings. (This is Dekker's pattern; seq_cst operations rather than
// fences because ThreadSanitizer models the former, and on x86 the cost is the same: N1 is an
// xchg instead of a mov plus mfence, the loads stay plain movs.) Ringing bumps `bell` before
// waking; futex_wait(&bell, key) sleeps only if bell still equals key, checked atomically with
// queueing by the kernel, so a bump between W1 and the futex call makes the call return at
// once, and a bump after it finds the waiter queued. If W1 already read the bumped value, it
// synchronised with the release fetch_add, so N1 happens-before W3 and the waiter sees the
// condition met. For the eventfd mode, the eventfd's counter keeps the wake until it is read.
// The notifier makes a syscall only when sleeping != awake, i.e. at most once per sleep, never
// per record.
struct DoorbellWord {
  std::atomic<std::uint32_t> bell{0};      // futex word; bumped by the notifier on each wake
  std::atomic<std::uint32_t> sleeping{0};  // SleepMode of the waiter
};

// The shared control block of one ring (512 bytes). Initialised by the segment's creator.
struct RingControl {
  // Bytes ever published. Written only by the producer.
  alignas(kIndexSpacing) std::atomic<std::uint64_t> tail{0};
  // Bytes ever consumed. Written only by the consumer.
  alignas(kIndexSpacing) std::atomic<std::uint64_t> head{0};
  // The consumer waits here for records; the producer rings it after publishing.
  alignas(kIndexSpacing) DoorbellWord data_bell;
  // The producer waits here for space; the consumer rings it after consuming.
  alignas(kIndexSpacing) DoorbellWord space_bell;
};
static_assert(sizeof(RingControl) == 4 * kIndexSpacing);
static_assert(std::is_standard_layout_v<RingControl>);
// Atomics in memory shared between processes must be lock-free (hence address-free).
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));  // futex word
static_assert(std::endian::native == std::endian::little);  // the record header's byte order

// Constructs a zeroed control block at `where` (64-byte aligned, sizeof(RingControl) bytes).
RingControl* init_ring_control(void* where);

// ---- endpoints (process-local; hold the private copies of the indices) ----

// A record returned by RingConsumer::peek(): valid until the next consume(), peek() or the
// segment's unmapping.
struct RecordView {
  RecordKind kind = RecordKind::message;
  std::uint64_t sequence = 0;
  std::span<const std::byte> payload;
  std::string_view text() const {
    return {reinterpret_cast<const char*>(payload.data()), payload.size()};
  }
};

// A record copied out by RingConsumer::try_pop(); reuse one across calls to keep the payload's
// capacity (no allocation per record once it has grown).
struct Record {
  RecordKind kind = RecordKind::message;
  std::uint64_t sequence = 0;
  std::string payload;
};

// Answer of arm_async_wait(): `armed` means await the eventfd; `ready` means the condition
// already holds (nothing was armed): go and drain.
enum class AsyncWait { armed, ready };

class RingProducer {
 public:
  RingProducer() = default;  // detached; only assignment and destruction are valid
  // REQUIRES: `control` was initialised by init_ring_control and no record was pushed yet;
  // `data` spans `capacity` bytes, 64-byte aligned; valid_ring_bytes(capacity).
  RingProducer(RingControl* control, std::byte* data, std::size_t capacity);
  RingProducer(RingProducer&&) noexcept = default;
  RingProducer& operator=(RingProducer&&) noexcept = default;
  RingProducer(const RingProducer&) = delete;
  RingProducer& operator=(const RingProducer&) = delete;

  std::size_t capacity() const { return capacity_; }
  // Largest payload try_push accepts: capacity() / 2 - kRecordHeaderBytes.
  std::size_t max_payload_bytes() const { return capacity_ / 2 - kRecordHeaderBytes; }

  // Writes one record and publishes it (with every record staged before it), then rings the
  // consumer if it sleeps. Returns true when published, false when the ring lacks space now
  // (nothing written; retry after the consumer frees space, see wait_for_space). Errors:
  // too_large (payload > max_payload_bytes(): use the socket), bad_kind (kind is not message),
  // corrupt (the consumer's head index is out of bounds; sticky).
  Result<bool> try_push(RecordKind kind, std::span<const std::byte> payload);
  Result<bool> try_push(RecordKind kind, std::string_view payload);

  // Like try_push but does not publish: the consumer does not see the record until publish().
  // For a producer that emits several records per event-loop turn and publishes once.
  Result<bool> try_stage(RecordKind kind, std::span<const std::byte> payload);
  Result<bool> try_stage(RecordKind kind, std::string_view payload);
  // Publishes everything staged (one release store) and rings the consumer if it sleeps.
  // A no-op when nothing is staged.
  void publish();

  // Blocks until a record of `payload_bytes` fits (true) or `timeout` passes (false); spins for
  // up to `spin` first. Publishes staged records before waiting. For a thread that may block
  // (the worker); never on an event-loop thread. Errors as try_push.
  Result<bool> wait_for_space(std::size_t payload_bytes, std::chrono::nanoseconds timeout,
                              std::chrono::microseconds spin = std::chrono::microseconds{0});
  // Event-loop form: publishes staged records; then `ready` if a record of `payload_bytes` fits
  // now, else `armed`: the consumer will write the eventfd it was given (RingConsumer::
  // set_notify_fd) once it frees space. Arm again after each wake.
  Result<AsyncWait> arm_async_space_wait(std::size_t payload_bytes);
  void disarm_async_space_wait();

  // The eventfd to write when the consumer sleeps in SleepMode::eventfd (-1: none; the fd stays
  // owned by the caller). REQUIRES: set before the consumer uses arm_async_wait().
  void set_notify_fd(int fd) { notify_fd_ = fd; }

  // Published or staged bytes not yet consumed, as last seen (a guess).
  std::size_t size_guess() const;
  std::uint64_t next_sequence() const { return next_seq_; }
  // Syscalls made to wake the consumer (diagnostics and tests: stays 0 while it never sleeps).
  std::uint64_t wakeups_sent() const { return wakeups_; }

 private:
  // false: the consumer's head is out of bounds (now corrupt)
  bool refresh_head(std::memory_order order);
  bool fits(std::size_t framed) const;
  Result<bool> space_for(std::size_t payload_bytes);

  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t tail_ = 0;            // staged end (private)
  std::uint64_t published_tail_ = 0;  // last value stored in control_->tail
  std::uint64_t head_cache_ = 0;      // last validated control_->head
  std::uint64_t next_seq_ = 0;
  std::uint64_t wakeups_ = 0;
  int notify_fd_ = -1;
  bool corrupt_ = false;
};

class RingConsumer {
 public:
  RingConsumer() = default;  // detached; only assignment and destruction are valid
  // REQUIRES: as RingProducer's constructor.
  RingConsumer(RingControl* control, const std::byte* data, std::size_t capacity);
  RingConsumer(RingConsumer&&) noexcept = default;
  RingConsumer& operator=(RingConsumer&&) noexcept = default;
  RingConsumer(const RingConsumer&) = delete;
  RingConsumer& operator=(const RingConsumer&) = delete;

  std::size_t capacity() const { return capacity_; }

  // The next record without consuming it (zero-copy), or nullopt when the ring is empty.
  // Error: corrupt (sticky) when the producer's tail or the record header breaks the ring's
  // invariants; the caller discards the segment.
  Result<std::optional<RecordView>> peek();
  // Releases the record returned by the last peek() (its space becomes the producer's) and
  // rings the producer if it sleeps for space. REQUIRES: the last peek() returned a record.
  void consume();
  // peek() + copy into `out` + consume(). true: `out` holds the record; false: empty.
  Result<bool> try_pop(Record& out);

  // Blocks until a record is available (true) or `timeout` passes (false); spins for up to
  // `spin` before sleeping on the futex. For a thread that may block (a worker's reader, a
  // dedicated supervisor reader thread); never on an event-loop thread. Error: corrupt.
  Result<bool> wait(std::chrono::nanoseconds timeout,
                    std::chrono::microseconds spin = std::chrono::microseconds{0});
  // Event-loop form: `ready` if records are available now, else `armed`: the producer will
  // write its notify fd (RingProducer::set_notify_fd) after its next publish. Await that eventfd
  // with a read of 8 bytes (asio: async_read_some on a posix::stream_descriptor, which also
  // resets the counter), then drain the ring and arm again.
  Result<AsyncWait> arm_async_wait();
  void disarm_async_wait();

  // The eventfd to write when the producer sleeps for space in SleepMode::eventfd (-1: none).
  void set_notify_fd(int fd) { notify_fd_ = fd; }

  // Published bytes not yet consumed, as last seen (a guess).
  std::size_t size_guess() const { return static_cast<std::size_t>(tail_cache_ - head_); }
  std::uint64_t next_sequence() const { return next_seq_; }
  std::uint64_t wakeups_sent() const { return wakeups_; }

 private:
  // false: the producer's tail is out of bounds (now corrupt)
  bool refresh_tail(std::memory_order order);
  Result<bool> has_records(std::memory_order order);

  RingControl* control_ = nullptr;
  const std::byte* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t head_ = 0;          // consumed end (private copy of control_->head)
  std::uint64_t tail_cache_ = 0;    // last validated control_->tail
  std::uint64_t pending_head_ = 0;  // head after the record returned by the last peek()
  bool pending_ = false;
  std::uint64_t next_seq_ = 0;
  std::uint64_t wakeups_ = 0;
  int notify_fd_ = -1;
  bool corrupt_ = false;
};

}  // namespace drover::proto::shm
