#include "proto/shm_ring.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <thread>

namespace drover::proto::shm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kAlignMask = kRecordAlign - 1;

// ---- record header: two u64 words, see shm_ring.hpp "Record format" ----

struct RecordHeader {
  std::uint32_t length = 0;
  std::uint32_t kind = 0;
  std::uint64_t sequence = 0;
};

void store_header(std::byte* at, const RecordHeader& h) {
  // Plain stores: the record is not visible to the consumer until the release store of tail.
  const std::uint64_t word0 = std::uint64_t{h.length} | (std::uint64_t{h.kind} << 32);
  std::memcpy(at, &word0, sizeof word0);
  std::memcpy(at + 8, &h.sequence, sizeof h.sequence);
}

RecordHeader load_header(const std::byte* at) {
  // Each word is read exactly once, with a relaxed atomic load: the producer may be rewriting
  // these bytes (it is buggy or dead), and a plain copy would let the compiler re-read shared
  // memory after validation (a double fetch). Relaxed is enough: the acquire load of tail
  // already ordered these reads after the producer's writes. `at` is 16-byte aligned.
  auto* words = const_cast<std::uint64_t*>(reinterpret_cast<const std::uint64_t*>(at));
  const std::uint64_t word0 =
      std::atomic_ref<std::uint64_t>(words[0]).load(std::memory_order_relaxed);
  const std::uint64_t word1 =
      std::atomic_ref<std::uint64_t>(words[1]).load(std::memory_order_relaxed);
  return {static_cast<std::uint32_t>(word0), static_cast<std::uint32_t>(word0 >> 32), word1};
}

// ---- doorbell (protocol and proof: shm_ring.hpp, above DoorbellWord) ----

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value, const timespec* timeout) {
  // Not FUTEX_PRIVATE_FLAG: the word is shared between processes.
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, timeout, nullptr,
                   0);
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::this_thread::yield();
#endif
}

// Waiter, steps W1 and W2; the caller then re-checks with a seq_cst index load (W3).
// Returns the futex key.
std::uint32_t prepare_wait(DoorbellWord& d, SleepMode mode) {
  // W1, acquire: if this reads a value the notifier bumped, its index store (N1) becomes
  // visible to our re-check, so we cannot sleep on a key that no later bump will change.
  const std::uint32_t key = d.bell.load(std::memory_order_acquire);
  // W2, seq_cst: the store-buffer (Dekker) race. With anything weaker this store could still sit
  // in our store buffer while the re-check W3 reads the old index, and the notifier, having
  // published (N1), could read the old flag (N2): both miss and the waiter sleeps on a
  // published record. seq_cst puts W2, W3, N1 and N2 in one total order, which forbids that.
  d.sleeping.store(static_cast<std::uint32_t>(mode), std::memory_order_seq_cst);
  return key;
}

void cancel_wait(DoorbellWord& d) {
  // Relaxed: only withdraws a request; a notifier that still rings causes a spurious wake-up,
  // which every waiter tolerates by re-checking.
  d.sleeping.store(static_cast<std::uint32_t>(SleepMode::awake), std::memory_order_relaxed);
}

// Waiter: sleeps while bell == key, until `deadline`.
void futex_wait(DoorbellWord& d, std::uint32_t key, Clock::time_point deadline) {
  const auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  // FUTEX_WAIT's timeout is relative (CLOCK_MONOTONIC). EAGAIN (bell moved), EINTR and
  // ETIMEDOUT all mean "re-check", which every caller does.
  futex(&d.bell, FUTEX_WAIT, key, &ts);
}

// Notifier, step N2 and the wake, after its seq_cst index store N1. Returns true if it made a
// syscall.
bool ring_if_sleeping(DoorbellWord& d, int notify_fd) {
  // N2, seq_cst: pairs with W2 (see prepare_wait). A plain load on x86; with N1's seq_cst store
  // (an xchg there) it is the whole per-record cost of the doorbell on a busy ring.
  if (d.sleeping.load(std::memory_order_seq_cst) == static_cast<std::uint32_t>(SleepMode::awake)) {
    return false;
  }
  // Exchange so the mode we act on is the one we cleared; relaxed because the bell bump below
  // carries the ordering the waiter relies on.
  const auto mode =
      d.sleeping.exchange(static_cast<std::uint32_t>(SleepMode::awake), std::memory_order_relaxed);
  if (mode == static_cast<std::uint32_t>(SleepMode::awake)) return false;
  if (mode == static_cast<std::uint32_t>(SleepMode::eventfd) && notify_fd >= 0) {
    const std::uint64_t one = 1;
    // Non-blocking eventfd: EAGAIN means the counter is saturated, i.e. already readable.
    while (::write(notify_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    return true;
  }
  // Release: pairs with the waiter's acquire load of the key (W1).
  d.bell.fetch_add(1, std::memory_order_release);
  // Wake all, not one: a stray process waiting on the same word must not absorb our wake-up.
  futex(&d.bell, FUTEX_WAKE, INT_MAX, nullptr);
  return true;
}

// now + timeout, saturating (a caller may pass nanoseconds::max() for "no deadline").
Clock::time_point deadline_after(std::chrono::nanoseconds timeout) {
  const auto now = Clock::now();
  if (timeout <= std::chrono::nanoseconds::zero()) return now;
  if (timeout >= Clock::time_point::max() - now) return Clock::time_point::max();
  return now + std::chrono::duration_cast<Clock::duration>(timeout);
}

// Spins (with a pause) for up to `spin`, returning early when `ready()` reports true or an error.
template <typename F>
Result<bool> spin_until(std::chrono::microseconds spin, F&& ready) {
  if (spin <= std::chrono::microseconds::zero()) return false;
  const auto until = Clock::now() + spin;
  for (unsigned i = 0;; ++i) {
    auto r = ready();
    if (!r || *r) return r;
    cpu_relax();
    if ((i & 63) == 63 && Clock::now() >= until) return false;
  }
}

}  // namespace

bool valid_ring_bytes(std::size_t ring_bytes) {
  return ring_bytes >= kMinRingBytes && ring_bytes <= kMaxRingBytes &&
         std::has_single_bit(ring_bytes);
}

RingControl* init_ring_control(void* where) { return ::new (where) RingControl{}; }

// ---------------------------------------------------------------- producer

RingProducer::RingProducer(RingControl* control, std::byte* data, std::size_t capacity)
    : control_(control), data_(data), capacity_(capacity), mask_(capacity - 1) {
  assert(valid_ring_bytes(capacity));
}

bool RingProducer::refresh_head(std::memory_order order) {
  // Acquire (at least): pairs with the consumer's store of head, so its reads of the records it
  // consumed are finished before we overwrite that space. seq_cst when this is the re-check W3
  // of a space wait.
  const std::uint64_t head = control_->head.load(order);
  // The consumer may only have moved forward, and not past what we published. Modular
  // arithmetic: both differences are in [0, capacity] for a sane peer.
  if (head - head_cache_ > published_tail_ - head_cache_) {
    corrupt_ = true;
    return false;
  }
  head_cache_ = head;
  return true;
}

bool RingProducer::fits(std::size_t framed) const {
  const std::uint64_t to_end = capacity_ - (tail_ & mask_);
  const std::uint64_t need = framed <= to_end ? framed : to_end + framed;
  return capacity_ - (tail_ - head_cache_) >= need;
}

Result<bool> RingProducer::try_stage(RecordKind kind, std::span<const std::byte> payload) {
  if (corrupt_) return Errc::corrupt;
  if (kind != RecordKind::message) return Errc::bad_kind;
  if (payload.size() > max_payload_bytes()) return Errc::too_large;
  const std::size_t framed = framed_size(payload.size());
  if (!fits(framed)) {
    if (!refresh_head(std::memory_order_acquire)) return Errc::corrupt;
    if (!fits(framed)) return false;
  }
  std::uint64_t offset = tail_ & mask_;
  const std::uint64_t to_end = capacity_ - offset;
  if (framed > to_end) {
    // Wrap: pad to the end of the buffer; the record goes at offset 0.
    store_header(data_ + offset, {static_cast<std::uint32_t>(to_end - kRecordHeaderBytes),
                                  static_cast<std::uint32_t>(RecordKind::padding), next_seq_});
    tail_ += to_end;
    offset = 0;
  }
  store_header(data_ + offset, {static_cast<std::uint32_t>(payload.size()),
                                static_cast<std::uint32_t>(kind), next_seq_});
  if (!payload.empty()) {
    std::memcpy(data_ + offset + kRecordHeaderBytes, payload.data(), payload.size());
  }
  tail_ += framed;
  ++next_seq_;
  return true;
}

Result<bool> RingProducer::try_stage(RecordKind kind, std::string_view payload) {
  return try_stage(kind, std::as_bytes(std::span(payload.data(), payload.size())));
}

void RingProducer::publish() {
  if (tail_ == published_tail_) return;
  published_tail_ = tail_;
  // Release (part of seq_cst): the record bytes written above become visible to a consumer that
  // acquire-loads this tail; without it the consumer could read a header before its bytes land.
  // seq_cst because this is also N1 of the data doorbell (see prepare_wait).
  control_->tail.store(tail_, std::memory_order_seq_cst);
  if (ring_if_sleeping(control_->data_bell, notify_fd_)) ++wakeups_;
}

Result<bool> RingProducer::try_push(RecordKind kind, std::span<const std::byte> payload) {
  auto staged = try_stage(kind, payload);
  if (staged && *staged) publish();
  return staged;
}

Result<bool> RingProducer::try_push(RecordKind kind, std::string_view payload) {
  return try_push(kind, std::as_bytes(std::span(payload.data(), payload.size())));
}

Result<bool> RingProducer::space_for(std::size_t payload_bytes) {
  if (corrupt_) return Errc::corrupt;
  const std::size_t framed = framed_size(payload_bytes);
  if (fits(framed)) return true;
  // seq_cst: this is W3 of the space doorbell when called after prepare_wait.
  if (!refresh_head(std::memory_order_seq_cst)) return Errc::corrupt;
  return fits(framed);
}

Result<bool> RingProducer::wait_for_space(std::size_t payload_bytes,
                                          std::chrono::nanoseconds timeout,
                                          std::chrono::microseconds spin) {
  if (payload_bytes > max_payload_bytes()) return Errc::too_large;
  publish();  // the consumer cannot free space for records it has not seen
  const auto deadline = deadline_after(timeout);
  auto ready = [&] { return space_for(payload_bytes); };
  if (auto r = ready(); !r || *r) return r;
  if (auto r = spin_until(spin, ready); !r || *r) return r;
  for (;;) {
    const std::uint32_t key = prepare_wait(control_->space_bell, SleepMode::futex);
    auto r = ready();  // W3 (space_for loads head seq_cst)
    if (!r || *r || Clock::now() >= deadline) {
      cancel_wait(control_->space_bell);
      return r;
    }
    futex_wait(control_->space_bell, key, deadline);
    cancel_wait(control_->space_bell);
  }
}

Result<AsyncWait> RingProducer::arm_async_space_wait(std::size_t payload_bytes) {
  if (payload_bytes > max_payload_bytes()) return Errc::too_large;
  publish();
  auto r = space_for(payload_bytes);
  if (!r) return r.error();
  if (*r) return AsyncWait::ready;
  prepare_wait(control_->space_bell, SleepMode::eventfd);
  r = space_for(payload_bytes);  // W3
  if (!r || *r) cancel_wait(control_->space_bell);
  if (!r) return r.error();
  return *r ? AsyncWait::ready : AsyncWait::armed;
}

void RingProducer::disarm_async_space_wait() { cancel_wait(control_->space_bell); }

std::size_t RingProducer::size_guess() const {
  return static_cast<std::size_t>(tail_ - head_cache_);
}

// ---------------------------------------------------------------- consumer

RingConsumer::RingConsumer(RingControl* control, const std::byte* data, std::size_t capacity)
    : control_(control), data_(data), capacity_(capacity), mask_(capacity - 1) {
  assert(valid_ring_bytes(capacity));
}

bool RingConsumer::refresh_tail(std::memory_order order) {
  // Acquire (at least): pairs with the producer's store of tail, so the record bytes it wrote
  // before publishing are visible to the reads that follow. seq_cst when this is the re-check W3
  // of a data wait.
  const std::uint64_t tail = control_->tail.load(order);
  // Never trust it: at most a ring's worth ahead of what we consumed, never behind it (modular:
  // that shows as a huge difference), record-aligned. We refresh only once we have consumed
  // everything we saw (head_ == tail_cache_), so this also catches a tail moving backwards.
  if (tail - head_ > capacity_ || (tail & kAlignMask) != 0) {
    corrupt_ = true;
    return false;
  }
  tail_cache_ = tail;
  return true;
}

Result<bool> RingConsumer::has_records(std::memory_order order) {
  if (corrupt_) return Errc::corrupt;
  if (head_ != tail_cache_) return true;
  if (!refresh_tail(order)) return Errc::corrupt;
  return head_ != tail_cache_;
}

Result<std::optional<RecordView>> RingConsumer::peek() {
  auto corrupt = [this] {
    corrupt_ = true;
    pending_ = false;
    return Errc::corrupt;
  };
  auto has = has_records(std::memory_order_acquire);
  if (!has) return has.error();
  if (!*has) return std::optional<RecordView>{};

  // Invariants from refresh_tail: head_ <= tail_cache_ <= head_ + capacity, both aligned.
  std::uint64_t at = head_;
  for (int hop = 0; hop < 2; ++hop) {
    const std::uint64_t available = tail_cache_ - at;
    const std::uint64_t offset = at & mask_;
    const std::uint64_t to_end = capacity_ - offset;  // >= kRecordHeaderBytes (alignment)
    if (available == 0) return corrupt();  // a padding record published without its record
    const RecordHeader h = load_header(data_ + offset);
    if (h.sequence != next_seq_) return corrupt();
    if (h.kind == static_cast<std::uint32_t>(RecordKind::padding)) {
      // Padding fills exactly the rest of the buffer, is never at offset 0 (the producer pads
      // only when a record does not fit there) and is followed by a record, so one hop at most.
      if (hop != 0 || offset == 0 || h.length != to_end - kRecordHeaderBytes ||
          to_end > available) {
        return corrupt();
      }
      at += to_end;
      continue;
    }
    if (h.kind != static_cast<std::uint32_t>(RecordKind::message)) return corrupt();
    const std::uint64_t framed = framed_size(h.length);
    if (framed > capacity_ / 2 || framed > to_end || framed > available) return corrupt();
    pending_head_ = at + framed;
    pending_ = true;
    return std::optional<RecordView>{
        RecordView{RecordKind::message, h.sequence,
                   std::span<const std::byte>(data_ + offset + kRecordHeaderBytes, h.length)}};
  }
  return corrupt();
}

void RingConsumer::consume() {
  assert(pending_);
  if (!pending_) return;
  pending_ = false;
  head_ = pending_head_;
  ++next_seq_;
  // Release (part of seq_cst): our reads of the record are complete before the producer,
  // acquire-loading head, may overwrite its bytes. seq_cst because this is also N1 of the space
  // doorbell (see prepare_wait).
  control_->head.store(head_, std::memory_order_seq_cst);
  if (ring_if_sleeping(control_->space_bell, notify_fd_)) ++wakeups_;
}

Result<bool> RingConsumer::try_pop(Record& out) {
  auto r = peek();
  if (!r) return {boost::system::in_place_error, r.error()};
  if (!*r) return false;
  const RecordView& v = **r;
  out.kind = v.kind;
  out.sequence = v.sequence;
  out.payload.assign(v.text());
  consume();
  return true;
}

Result<bool> RingConsumer::wait(std::chrono::nanoseconds timeout, std::chrono::microseconds spin) {
  const auto deadline = deadline_after(timeout);
  auto ready = [this] { return has_records(std::memory_order_acquire); };
  auto recheck = [this] { return has_records(std::memory_order_seq_cst); };
  if (auto r = ready(); !r || *r) return r;
  if (auto r = spin_until(spin, ready); !r || *r) return r;
  for (;;) {
    const std::uint32_t key = prepare_wait(control_->data_bell, SleepMode::futex);
    auto r = recheck();  // W3
    if (!r || *r || Clock::now() >= deadline) {
      cancel_wait(control_->data_bell);
      return r;
    }
    futex_wait(control_->data_bell, key, deadline);
    cancel_wait(control_->data_bell);
  }
}

Result<AsyncWait> RingConsumer::arm_async_wait() {
  auto r = has_records(std::memory_order_acquire);
  if (!r) return r.error();
  if (*r) return AsyncWait::ready;
  prepare_wait(control_->data_bell, SleepMode::eventfd);
  r = has_records(std::memory_order_seq_cst);  // W3
  if (!r || *r) cancel_wait(control_->data_bell);
  if (!r) return r.error();
  return *r ? AsyncWait::ready : AsyncWait::armed;
}

void RingConsumer::disarm_async_wait() { cancel_wait(control_->data_bell); }

}  // namespace drover::proto::shm
