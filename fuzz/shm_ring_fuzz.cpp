// Fuzz target: the shared-memory ring record reader (proto/shm_ring.hpp). A worker writes the
// reply ring droverd reads, so every byte of it, and the tail index, is attacker-controlled;
// droverd must never read outside the ring or crash, only report the ring corrupt.
//
// Input: 8 bytes little-endian `tail` (what the producer claims it published), then the ring's
// bytes (a 4 KiB ring; shorter input is zero-padded). The consumer starts at head 0 and reads
// up to 64 records.
// Invariants:
//  - peek() returns a record, empty, or Errc::corrupt, and once corrupt it stays corrupt;
//  - a record's payload lies wholly inside the ring's bytes, and its length obeys the bound
//    every reader relies on (at most capacity/2 minus the header);
//  - sequences of accepted records count up from 0.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "fuzz/fuzz_check.hpp"
#include "proto/shm_ring.hpp"

namespace {

namespace shm = drover::proto::shm;
constexpr std::size_t kCap = 4096;

struct alignas(64) Ring {
  std::byte bytes[kCap];
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::uint64_t tail = 0;
  if (size >= 8) {
    std::memcpy(&tail, data, 8);
    data += 8;
    size -= 8;
  }
  alignas(64) static std::byte control_storage[sizeof(shm::RingControl)];
  shm::RingControl* control = shm::init_ring_control(control_storage);
  // Heap, exactly the ring's size: ASan reports a read one byte past it.
  auto ring = std::make_unique<Ring>();
  std::memset(ring->bytes, 0, kCap);
  std::memcpy(ring->bytes, data, size < kCap ? size : kCap);
  control->tail.store(tail);
  shm::RingConsumer consumer(control, ring->bytes, kCap);
  std::uint64_t expected_sequence = 0;
  for (int i = 0; i < 64; ++i) {
    auto r = consumer.peek();
    if (!r) {
      FUZZ_CHECK(r.error() == shm::Errc::corrupt);
      FUZZ_CHECK(!consumer.peek());  // stays corrupt
      break;
    }
    if (!r->has_value()) break;
    const shm::RecordView& v = **r;
    const auto* begin = ring->bytes;
    FUZZ_CHECK(v.payload.data() >= begin);
    FUZZ_CHECK(v.payload.data() + v.payload.size() <= begin + kCap);
    FUZZ_CHECK(v.payload.size() + shm::kRecordHeaderBytes <= kCap / 2);
    FUZZ_CHECK(v.sequence == expected_sequence);
    volatile std::byte sink{};
    for (std::byte b : v.payload) sink = b;  // every byte read: ASan checks the bounds
    (void)sink;
    ++expected_sequence;
    consumer.consume();
  }
  return 0;
}
