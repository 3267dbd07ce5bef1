// The shared-memory ring: record framing and wrap-around (every byte checked), full and empty,
// the size bound, zero-copy peek/consume, the doorbells (futex and eventfd, with a consumer or
// producer that is asleep before the other side acts), two processes streaming through it, and
// what the reader does with garbage a crashed or buggy peer left in the shared bytes.
#include "proto/shm_ring.hpp"

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <thread>

#include "proto/fd_passing.hpp"
#include "proto/shm_segment.hpp"
#include "tests/unit/proto/shm_test_util.hpp"

namespace drover::proto::shm {
namespace {

using namespace std::chrono_literals;
using testing::ShmTest;
using testing::wait_until;

constexpr std::size_t kSmallRing = 4096;

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Content that depends on the sequence number and the position, so a record delivered twice,
// out of order, shifted or torn is caught.
char content_byte(std::uint64_t seq, std::size_t i) {
  return static_cast<char>((seq * 131 + i * 7 + (i >> 8)) & 0xff);
}

std::string make_payload(std::uint64_t seq, std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = content_byte(seq, i);
  return s;
}

// Index of the first wrong byte, or -1.
long first_mismatch(std::uint64_t seq, std::string_view got) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] != content_byte(seq, i)) return static_cast<long>(i);
  }
  return -1;
}

RingControl* control_of(Segment& s, RingId r) {
  return std::launder(reinterpret_cast<RingControl*>(s.bytes().data() +
                                                     kControlOffset[static_cast<std::size_t>(r)]));
}
std::byte* data_of(Segment& s, RingId r) {
  return s.bytes().data() + kDataOffset + static_cast<std::size_t>(r) * s.ring_bytes();
}

void put_u32(std::byte* at, std::uint32_t v) { std::memcpy(at, &v, sizeof v); }
void put_u64(std::byte* at, std::uint64_t v) { std::memcpy(at, &v, sizeof v); }
std::uint32_t get_u32(const std::byte* at) {
  std::uint32_t v;
  std::memcpy(&v, at, sizeof v);
  return v;
}

pid_t current_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

bool is_corrupt(const Result<std::optional<RecordView>>& r) {
  return !r && r.error() == Errc::corrupt;
}

class ShmRingTest : public ShmTest {
 protected:
  void SetUp() override { make(kSmallRing); }

  void make(std::size_t ring_bytes) {
    auto seg = Segment::create(ring_bytes, testing::test_prefix());
    ASSERT_TRUE(seg) << seg.error().message();
    seg_.emplace(std::move(*seg));
    producer_ = seg_->producer(RingId::requests);
    consumer_ = seg_->consumer(RingId::requests);
  }
  void TearDown() override {
    seg_.reset();  // the creator's destructor unlinks
    ShmTest::TearDown();
  }
  RingControl* control() { return control_of(*seg_, RingId::requests); }
  std::byte* data() { return data_of(*seg_, RingId::requests); }

  std::optional<Segment> seg_;
  RingProducer producer_;
  RingConsumer consumer_;
};

// ---------------------------------------------------------------- single-threaded behaviour

TEST_F(ShmRingTest, EmptyRingYieldsNothing) {
  auto peeked = consumer_.peek();
  ASSERT_TRUE(peeked);
  EXPECT_FALSE(peeked->has_value());
  Record rec;
  auto popped = consumer_.try_pop(rec);
  ASSERT_TRUE(popped);
  EXPECT_FALSE(*popped);
  auto waited = consumer_.wait(0ns);
  ASSERT_TRUE(waited);
  EXPECT_FALSE(*waited);
  EXPECT_EQ(consumer_.size_guess(), 0u);
}

TEST_F(ShmRingTest, RecordsArriveInOrderWithKindAndSequence) {
  for (int i = 0; i < 3; ++i) {
    auto pushed = producer_.try_push(RecordKind::message, "msg-" + std::to_string(i));
    ASSERT_TRUE(pushed && *pushed);
  }
  Record rec;
  for (std::uint64_t i = 0; i < 3; ++i) {
    auto popped = consumer_.try_pop(rec);
    ASSERT_TRUE(popped && *popped);
    EXPECT_EQ(rec.kind, RecordKind::message);
    EXPECT_EQ(rec.sequence, i);
    EXPECT_EQ(rec.payload, "msg-" + std::to_string(i));
  }
  auto empty = consumer_.try_pop(rec);
  ASSERT_TRUE(empty);
  EXPECT_FALSE(*empty);
}

TEST_F(ShmRingTest, EmptyPayloadIsARecord) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, std::string_view{}));
  auto peeked = consumer_.peek();
  ASSERT_TRUE(peeked && peeked->has_value());
  EXPECT_TRUE((*peeked)->payload.empty());
  consumer_.consume();
  EXPECT_FALSE(consumer_.peek()->has_value());
}

TEST_F(ShmRingTest, PeekIsZeroCopyAndRepeatableUntilConsume) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "first"));
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "second"));
  auto a = consumer_.peek();
  auto b = consumer_.peek();
  ASSERT_TRUE(a && a->has_value() && b && b->has_value());
  EXPECT_EQ((*a)->text(), "first");
  EXPECT_EQ((*a)->payload.data(), (*b)->payload.data());
  // The view points into the ring buffer itself, 16-byte aligned after its header.
  const auto* p = (*a)->payload.data();
  EXPECT_GE(p, data());
  EXPECT_LT(p, data() + kSmallRing);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % kRecordAlign, 0u);
  consumer_.consume();
  auto c = consumer_.peek();
  ASSERT_TRUE(c && c->has_value());
  EXPECT_EQ((*c)->text(), "second");
  EXPECT_EQ((*c)->sequence, 1u);
}

TEST_F(ShmRingTest, StagedRecordsAreInvisibleUntilPublished) {
  ASSERT_TRUE(*producer_.try_stage(RecordKind::message, "a"));
  ASSERT_TRUE(*producer_.try_stage(RecordKind::message, "b"));
  EXPECT_FALSE(consumer_.peek()->has_value());
  producer_.publish();
  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));
  EXPECT_EQ(rec.payload, "a");
  ASSERT_TRUE(*consumer_.try_pop(rec));
  EXPECT_EQ(rec.payload, "b");
}

TEST_F(ShmRingTest, FullRingRefusesThenAcceptsAfterPop) {
  // payload 100 -> framed 16 + 112 = 128 bytes: exactly 32 fit in 4 KiB.
  const std::string payload(100, 'x');
  ASSERT_EQ(framed_size(payload.size()), 128u);
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload)) << i;
  auto refused = producer_.try_push(RecordKind::message, payload);
  ASSERT_TRUE(refused);
  EXPECT_FALSE(*refused);
  // A smaller record does not fit either: capacity is bytes, not slots.
  EXPECT_FALSE(*producer_.try_push(RecordKind::message, std::string_view{}));

  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));
  EXPECT_EQ(rec.sequence, 0u);
  auto accepted = producer_.try_push(RecordKind::message, payload);
  ASSERT_TRUE(accepted);
  EXPECT_TRUE(*accepted);
  // Everything comes out in order: 1..32.
  for (std::uint64_t seq = 1; seq <= 32; ++seq) {
    ASSERT_TRUE(*consumer_.try_pop(rec));
    EXPECT_EQ(rec.sequence, seq);
  }
  EXPECT_FALSE(*consumer_.try_pop(rec));
}

TEST_F(ShmRingTest, WrapWritesAPaddingRecordThatTheConsumerSkips) {
  // payload 32 -> framed 48: 85 records fill 4080 bytes, leaving 16 at the end.
  const std::string payload32(32, 'p');
  Record rec;
  for (int i = 0; i < 85; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload32));
  for (int i = 0; i < 85; ++i) ASSERT_TRUE(*consumer_.try_pop(rec));
  const std::string payload = make_payload(85, 32);
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload));
  // A padding header covering the last 16 bytes, carrying the next message's sequence ...
  EXPECT_EQ(get_u32(data() + 4080), 0u);  // length: nothing after its header
  EXPECT_EQ(get_u32(data() + 4084), static_cast<std::uint32_t>(RecordKind::padding));
  // ... and the record itself at offset 0.
  EXPECT_EQ(get_u32(data() + 0), 32u);
  EXPECT_EQ(control()->tail.load(), 4080u + 16u + 48u);
  ASSERT_TRUE(*consumer_.try_pop(rec));
  EXPECT_EQ(rec.sequence, 85u);
  EXPECT_EQ(rec.payload, payload);
  EXPECT_EQ(control()->head.load(), control()->tail.load());
}

TEST_F(ShmRingTest, WrapAroundWithVariedSizesKeepsEveryByte) {
  const std::size_t max = producer_.max_payload_bytes();
  std::mt19937_64 rng(12345);
  std::uint64_t next_push = 0;
  std::uint64_t next_pop = 0;
  std::size_t refusals = 0;
  std::string payload;
  Record rec;
  // Sizes are a function of the sequence: mostly small, some up to the maximum.
  auto size_of = [&](std::uint64_t seq) {
    const std::uint64_t r = splitmix(seq);
    return (r & 3) == 0 ? static_cast<std::size_t>(r >> 8) % (max + 1)
                        : static_cast<std::size_t>(r >> 8) % 300;
  };
  constexpr std::uint64_t kRecords = 30'000;
  while (next_pop < kRecords) {
    // Bursts of pushes and pops of random lengths, so the ring is seen empty, full and between.
    for (int n = static_cast<int>(rng() % 8); n > 0 && next_push < kRecords; --n) {
      payload = make_payload(next_push, size_of(next_push));
      auto pushed = producer_.try_push(RecordKind::message, payload);
      ASSERT_TRUE(pushed) << pushed.error().message();
      if (!*pushed) {
        ++refusals;
        break;
      }
      ++next_push;
    }
    for (int n = static_cast<int>(rng() % 8); n > 0; --n) {
      auto popped = consumer_.try_pop(rec);
      ASSERT_TRUE(popped) << popped.error().message();
      if (!*popped) break;
      ASSERT_EQ(rec.sequence, next_pop);
      ASSERT_EQ(rec.payload.size(), size_of(next_pop));
      ASSERT_EQ(first_mismatch(next_pop, rec.payload), -1) << "record " << next_pop;
      ++next_pop;
    }
  }
  EXPECT_GT(refusals, 0u);  // it was full at times
  // Went round the buffer many times.
  EXPECT_GT(control()->tail.load() / kSmallRing, 100u);
  EXPECT_EQ(control()->tail.load(), control()->head.load());
}

TEST_F(ShmRingTest, OversizeRecordIsRejectedWithADistinctError) {
  EXPECT_EQ(producer_.max_payload_bytes(), kSmallRing / 2 - kRecordHeaderBytes);
  const std::string too_big(producer_.max_payload_bytes() + 1, 'x');
  auto r = producer_.try_push(RecordKind::message, too_big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::too_large);
  auto w = producer_.wait_for_space(too_big.size(), 0ns);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), Errc::too_large);
  // The producer is still usable afterwards.
  EXPECT_TRUE(*producer_.try_push(RecordKind::message, "ok"));
}

TEST_F(ShmRingTest, LargestRecordFitsAnEmptyRingAtEveryWrapPosition) {
  const std::string biggest = make_payload(7, producer_.max_payload_bytes());
  Record rec;
  // Move the write position through every 16-byte offset with small records, then push the
  // largest record into the (empty) ring: it must always fit, padding or not.
  for (std::size_t step = 0; step < kSmallRing / kRecordAlign; ++step) {
    ASSERT_TRUE(*producer_.try_push(RecordKind::message, std::string_view{}));  // 16 bytes
    ASSERT_TRUE(*consumer_.try_pop(rec));
    auto pushed = producer_.try_push(RecordKind::message, biggest);
    ASSERT_TRUE(pushed && *pushed) << "at step " << step;
    ASSERT_TRUE(*consumer_.try_pop(rec));
    ASSERT_EQ(rec.payload.size(), biggest.size());
    ASSERT_EQ(rec.payload, biggest);
  }
}

TEST_F(ShmRingTest, CallersCannotPushPadding) {
  auto r = producer_.try_push(RecordKind::padding, "x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::bad_kind);
  EXPECT_FALSE(consumer_.peek()->has_value());
}

// ---------------------------------------------------------------- corrupt input from the peer

TEST_F(ShmRingTest, GarbageLengthIsCorruptAndSticky) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "hello"));
  put_u32(data() + 0, 0xFFFFFFF0u);
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
  // Sticky: repairing the bytes does not resurrect a ring the supervisor must discard.
  put_u32(data() + 0, 5);
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
  Record rec;
  auto popped = consumer_.try_pop(rec);
  ASSERT_FALSE(popped);
  EXPECT_EQ(popped.error(), Errc::corrupt);
  auto waited = consumer_.wait(0ns);
  ASSERT_FALSE(waited);
  EXPECT_EQ(waited.error(), Errc::corrupt);
}

TEST_F(ShmRingTest, LengthBeyondWhatWasPublishedIsCorrupt) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "hello"));  // 32 bytes published
  put_u32(data() + 0, 100);  // within the ring, but past the tail
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, LengthOverTheRecordBoundIsCorrupt) {
  // Publish a whole ring's worth, then claim one record spans more than half of it.
  const std::string payload(100, 'x');
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload));
  put_u32(data() + 0, static_cast<std::uint32_t>(kSmallRing / 2));
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, UnknownKindIsCorrupt) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "hello"));
  put_u32(data() + 4, 7);
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, WrongSequenceIsCorrupt) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "a"));
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "b"));
  put_u64(data() + 32 + 8, 5);  // second record claims sequence 5
  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, ReplayedRecordIsCorrupt) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "a"));
  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));
  // A buggy producer republishes the same bytes as a new record (sequence 0 again).
  std::memcpy(data() + 32, data(), 32);
  control()->tail.store(64);
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, PaddingAtTheStartOfTheBufferIsCorrupt) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "hello"));
  put_u32(data() + 0, kSmallRing - kRecordHeaderBytes);
  put_u32(data() + 4, static_cast<std::uint32_t>(RecordKind::padding));
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, PaddingThatDoesNotReachTheEndIsCorrupt) {
  const std::string payload32(32, 'p');
  Record rec;
  for (int i = 0; i < 85; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload32));
  for (int i = 0; i < 85; ++i) ASSERT_TRUE(*consumer_.try_pop(rec));
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, make_payload(85, 32)));  // pads 4080..
  put_u32(data() + 4080, 16);  // claims to run past the end of the buffer
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, PaddingPublishedWithoutItsRecordIsCorrupt) {
  const std::string payload32(32, 'p');
  Record rec;
  for (int i = 0; i < 85; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload32));
  for (int i = 0; i < 85; ++i) ASSERT_TRUE(*consumer_.try_pop(rec));
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, make_payload(85, 32)));
  control()->tail.store(4096);  // only the padding
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, TailMoreThanACapacityAheadIsCorrupt) {
  control()->tail.store(kSmallRing + kRecordAlign);
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, MisalignedTailIsCorrupt) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "hello"));
  control()->tail.store(40);
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, TailMovingBackwardsIsCorrupt) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "a"));
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "b"));
  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));
  ASSERT_TRUE(*consumer_.try_pop(rec));  // consumed up to 64
  control()->tail.store(32);             // "unpublishes" a consumed record
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, TailBehindHeadIsCorrupt) {
  control()->tail.store(~std::uint64_t{0} - 15);  // "before" 0 in modular terms
  EXPECT_TRUE(is_corrupt(consumer_.peek()));
}

TEST_F(ShmRingTest, HeadOutOfBoundsIsCorruptForTheProducer) {
  const std::string payload(100, 'x');
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload));
  control()->head.store(kSmallRing + 128);  // past everything published
  auto r = producer_.try_push(RecordKind::message, payload);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::corrupt);
  // Sticky, and wait_for_space says the same instead of sleeping.
  auto w = producer_.wait_for_space(1, 1s);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), Errc::corrupt);
}

TEST_F(ShmRingTest, HeadMovingBackwardsIsCorruptForTheProducer) {
  const std::string payload(100, 'x');
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload));
  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload));  // saw head = 128
  ASSERT_TRUE(*consumer_.try_pop(rec));
  control()->head.store(0);
  auto r = producer_.try_push(RecordKind::message, payload);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::corrupt);
}

// Random garbage in the buffer and the tail, read by a consumer over heap memory (so ASan
// reports any read outside the buffer): every peek either returns a record inside the buffer
// or reports corrupt, and never crashes.
TEST(ShmRingFuzz, GarbageNeverReadsOutOfBounds) {
  constexpr std::size_t kCap = 4096;
  struct alignas(64) Buffer {
    std::byte bytes[kCap];
  };
  auto control = std::make_unique<RingControl>();
  auto buffer = std::make_unique<Buffer>();  // exactly the ring: ASan flags a byte past it
  std::byte* data = buffer->bytes;
  std::mt19937_64 rng(777);
  std::size_t records = 0;
  std::size_t corrupt = 0;
  for (int iter = 0; iter < 20'000; ++iter) {
    // Plausible-looking headers at 16-byte offsets (so the checks past the first are reached),
    // with random lengths, kinds and sequences; random bytes elsewhere.
    for (std::size_t off = 0; off < kCap; off += 8) put_u64(data + off, rng());
    for (std::size_t off = 0; off < kCap; off += kRecordAlign) {
      if (rng() % 2) {
        put_u32(data + off, static_cast<std::uint32_t>(rng() % (rng() % 2 ? 64 : kCap + 64)));
        put_u32(data + off + 4, static_cast<std::uint32_t>(1 + rng() % 3));
        put_u64(data + off + 8, rng() % 3);
      }
    }
    // A fresh consumer starts at index 0; records it accepts move it to other offsets.
    std::uint64_t tail = rng() % (kCap + 64);
    if (rng() % 4 != 0) tail &= ~std::uint64_t{15};
    control->head.store(0);
    control->tail.store(tail);
    RingConsumer consumer(control.get(), data, kCap);
    for (int k = 0; k < 4; ++k) {
      auto r = consumer.peek();
      if (!r) {
        ASSERT_EQ(r.error(), Errc::corrupt);
        ++corrupt;
        break;
      }
      if (!r->has_value()) break;
      const RecordView& v = **r;
      ASSERT_GE(v.payload.data(), data);
      ASSERT_LE(v.payload.data() + v.payload.size(), data + kCap);
      volatile std::byte sink{};
      for (std::byte b : v.payload) sink = b;  // touch every byte (ASan checks the reads)
      (void)sink;
      ++records;
      consumer.consume();
    }
  }
  EXPECT_GT(corrupt, 0u);
  EXPECT_GT(records, 0u);  // some garbage happened to be valid; it was still bounded
}

// ---------------------------------------------------------------- doorbells, one process

TEST_F(ShmRingTest, BusyProducerMakesNoWakeupSyscalls) {
  Record rec;
  for (int i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(*producer_.try_push(RecordKind::message, "x"));
    ASSERT_TRUE(*consumer_.try_pop(rec));
  }
  EXPECT_EQ(producer_.wakeups_sent(), 0u);
  EXPECT_EQ(consumer_.wakeups_sent(), 0u);
}

TEST_F(ShmRingTest, WaitTimesOutOnAnEmptyRingAndWithdrawsItsFlag) {
  auto r = consumer_.wait(20ms);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_EQ(control()->data_bell.sleeping.load(), static_cast<std::uint32_t>(SleepMode::awake));
  // A push now finds nobody asleep.
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "x"));
  EXPECT_EQ(producer_.wakeups_sent(), 0u);
}

TEST_F(ShmRingTest, UnboundedTimeoutsDoNotOverflow) {
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "x"));
  auto waited = consumer_.wait(std::chrono::nanoseconds::max());
  ASSERT_TRUE(waited);
  EXPECT_TRUE(*waited);
  auto space = producer_.wait_for_space(1, std::chrono::nanoseconds::max());
  ASSERT_TRUE(space);
  EXPECT_TRUE(*space);
}

TEST_F(ShmRingTest, DoorbellWakesAConsumerAsleepBeforeThePush) {
  std::atomic<pid_t> tid{0};
  Result<bool> waited = false;
  Record rec;
  Result<bool> popped = false;
  std::thread reader([&] {
    tid = current_tid();
    waited = consumer_.wait(60s);
    popped = consumer_.try_pop(rec);
  });
  // Asleep: the flag is up and the thread is blocked in the kernel (futex_wait).
  const bool asleep = wait_until([&] {
    return tid.load() != 0 &&
           control()->data_bell.sleeping.load() == static_cast<std::uint32_t>(SleepMode::futex) &&
           testing::thread_state(tid.load()) == 'S';
  });
  EXPECT_TRUE(asleep);
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "wake up"));
  reader.join();
  ASSERT_TRUE(waited);
  EXPECT_TRUE(*waited);
  ASSERT_TRUE(popped && *popped);
  EXPECT_EQ(rec.payload, "wake up");
  EXPECT_EQ(producer_.wakeups_sent(), 1u);
}

TEST_F(ShmRingTest, ProducerAsleepForSpaceIsWokenByConsume) {
  const std::string payload(100, 'x');
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload));
  std::atomic<pid_t> tid{0};
  Result<bool> waited = false;
  Result<bool> pushed = false;
  std::thread writer([&] {
    tid = current_tid();
    waited = producer_.wait_for_space(payload.size(), 60s);
    pushed = producer_.try_push(RecordKind::message, payload);
  });
  const bool asleep = wait_until([&] {
    return tid.load() != 0 &&
           control()->space_bell.sleeping.load() == static_cast<std::uint32_t>(SleepMode::futex) &&
           testing::thread_state(tid.load()) == 'S';
  });
  EXPECT_TRUE(asleep);
  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));
  writer.join();
  ASSERT_TRUE(waited);
  EXPECT_TRUE(*waited);
  ASSERT_TRUE(pushed && *pushed);
  EXPECT_EQ(consumer_.wakeups_sent(), 1u);
}

TEST_F(ShmRingTest, AsyncWaitArmsOnlyWhenEmptyAndTheProducerWritesTheEventfd) {
  auto efd = make_eventfd();
  ASSERT_TRUE(efd);
  producer_.set_notify_fd(efd->get());

  // Records present: nothing is armed.
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "a"));
  auto armed = consumer_.arm_async_wait();
  ASSERT_TRUE(armed);
  EXPECT_EQ(*armed, AsyncWait::ready);
  EXPECT_EQ(control()->data_bell.sleeping.load(), static_cast<std::uint32_t>(SleepMode::awake));
  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));

  // Empty: armed; the next push writes the eventfd exactly once.
  armed = consumer_.arm_async_wait();
  ASSERT_TRUE(armed);
  EXPECT_EQ(*armed, AsyncWait::armed);
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "b"));
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "c"));
  EXPECT_EQ(*drain_eventfd(efd->get()), 1u);
  EXPECT_EQ(producer_.wakeups_sent(), 1u);

  // Disarmed: no write.
  ASSERT_TRUE(*consumer_.try_pop(rec));
  ASSERT_TRUE(*consumer_.try_pop(rec));
  ASSERT_EQ(*consumer_.arm_async_wait(), AsyncWait::armed);
  consumer_.disarm_async_wait();
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "d"));
  EXPECT_EQ(*drain_eventfd(efd->get()), 0u);
  EXPECT_EQ(producer_.wakeups_sent(), 1u);
}

TEST_F(ShmRingTest, AsyncSpaceWaitIsWokenThroughTheConsumersEventfd) {
  auto efd = make_eventfd();
  ASSERT_TRUE(efd);
  consumer_.set_notify_fd(efd->get());
  const std::string payload(100, 'x');
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(*producer_.try_push(RecordKind::message, payload));
  auto armed = producer_.arm_async_space_wait(payload.size());
  ASSERT_TRUE(armed);
  EXPECT_EQ(*armed, AsyncWait::armed);
  Record rec;
  ASSERT_TRUE(*consumer_.try_pop(rec));
  EXPECT_EQ(*drain_eventfd(efd->get()), 1u);
  armed = producer_.arm_async_space_wait(payload.size());
  ASSERT_TRUE(armed);
  EXPECT_EQ(*armed, AsyncWait::ready);
}

// The supervisor's pattern: one io_context thread, the replies ring drained when the eventfd
// becomes readable, re-armed after each drain; the producer is another thread that sometimes
// waits until the consumer is armed before pushing, so the sleep/wake path is taken many times.
TEST_F(ShmRingTest, EventfdWakesAnAsioLoopWithoutLosingRecords) {
  namespace asio = boost::asio;
  auto efd = make_eventfd();
  ASSERT_TRUE(efd);
  producer_.set_notify_fd(efd->get());
  asio::io_context io;
  asio::posix::stream_descriptor bell(io, ::dup(efd->get()));

  constexpr std::uint64_t kRecords = 50'000;
  std::uint64_t received = 0;
  bool failed = false;
  std::array<std::uint64_t, 1> counter{};
  Record rec;
  std::function<void()> drain_and_arm;
  drain_and_arm = [&] {
    for (;;) {
      for (;;) {
        auto popped = consumer_.try_pop(rec);
        if (!popped || (*popped && (rec.sequence != received ||
                                    first_mismatch(received, rec.payload) != -1))) {
          failed = true;
          return;
        }
        if (!*popped) break;
        ++received;
      }
      if (received == kRecords) return;
      auto armed = consumer_.arm_async_wait();
      if (!armed) {
        failed = true;
        return;
      }
      if (*armed == AsyncWait::armed) break;
    }
    bell.async_read_some(asio::buffer(counter), [&](boost::system::error_code ec, std::size_t) {
      if (ec) {
        failed = true;
        return;
      }
      drain_and_arm();
    });
  };

  std::atomic<bool> producer_failed{false};
  std::thread writer([&] {
    std::string payload;
    for (std::uint64_t seq = 0; seq < kRecords; ++seq) {
      if (seq % 1000 == 500) {
        // Let the loop go to sleep before this push.
        if (!wait_until([&] {
              return control()->data_bell.sleeping.load() ==
                     static_cast<std::uint32_t>(SleepMode::eventfd);
            })) {
          producer_failed = true;
          return;
        }
      }
      payload = make_payload(seq, splitmix(seq) % 200);
      for (;;) {
        auto r = producer_.try_push(RecordKind::message, payload);
        if (!r) {
          producer_failed = true;
          return;
        }
        if (*r) break;
        auto w = producer_.wait_for_space(payload.size(), 30s);
        if (!w || !*w) {
          producer_failed = true;
          return;
        }
      }
    }
  });
  drain_and_arm();
  io.run_for(120s);
  writer.join();
  EXPECT_FALSE(producer_failed);
  EXPECT_FALSE(failed);
  EXPECT_EQ(received, kRecords);
  EXPECT_GE(producer_.wakeups_sent(), kRecords / 1000);  // at least the forced sleeps
  EXPECT_LT(producer_.wakeups_sent(), kRecords);         // and not one per record
}

// ---------------------------------------------------------------- across processes

// Kills and reaps a forked child if the test fails before reaping it.
struct ChildGuard {
  pid_t pid = -1;
  ~ChildGuard() {
    if (pid > 0) testing::reap(pid, 0ms);
  }
  std::optional<int> reap(std::chrono::milliseconds timeout) {
    auto status = testing::reap(pid, timeout);
    pid = -1;
    return status;
  }
};

constexpr std::uint64_t kCrossProcessRecords = 200'000;

std::size_t cross_size(std::uint64_t seq) { return splitmix(seq) % 700; }

// Child: the worker side. Opens the segment by name and produces kCrossProcessRecords replies;
// every 25,000 records it first waits until the parent's consumer is asleep, so the futex
// wake-up path is exercised repeatedly. Exit codes name the failure.
[[noreturn]] void produce_in_child(const std::string& name) {
  auto seg = Segment::open(name);
  if (!seg) ::_exit(10);
  RingProducer producer = seg->producer(RingId::replies);
  RingControl* control = control_of(*seg, RingId::replies);
  std::string payload;
  for (std::uint64_t seq = 0; seq < kCrossProcessRecords; ++seq) {
    if (seq % 25'000 == 24'999 &&
        !wait_until([&] { return control->data_bell.sleeping.load() != 0; })) {
      ::_exit(14);
    }
    payload = make_payload(seq, cross_size(seq));
    for (;;) {
      auto r = producer.try_push(RecordKind::message, payload);
      if (!r) ::_exit(11);
      if (*r) break;
      auto w = producer.wait_for_space(payload.size(), 60s);
      if (!w) ::_exit(12);
      if (!*w) ::_exit(13);
    }
  }
  ::_exit(0);
}

TEST_F(ShmRingTest, TwoProcessesStream200kRecordsThroughTheDoorbell) {
  make(64 * 1024);
  const std::string name = seg_->name();
  ChildGuard child;
  child.pid = ::fork();
  ASSERT_GE(child.pid, 0);
  if (child.pid == 0) produce_in_child(name);

  RingConsumer consumer = seg_->consumer(RingId::replies);
  Record rec;
  std::uint64_t expected = 0;
  while (expected < kCrossProcessRecords) {
    auto popped = consumer.try_pop(rec);
    ASSERT_TRUE(popped) << popped.error().message();
    if (*popped) {
      ASSERT_EQ(rec.sequence, expected);
      ASSERT_EQ(rec.payload.size(), cross_size(expected));
      ASSERT_EQ(first_mismatch(expected, rec.payload), -1) << "record " << expected;
      if (++expected == 1) {
        // The child has mapped the segment (it pushed): unlink the name. Traffic continues over
        // both mappings and /dev/shm no longer lists it.
        ASSERT_TRUE(seg_->unlink());
        EXPECT_FALSE(std::filesystem::exists("/dev/shm" + name));
      }
      continue;
    }
    auto waited = consumer.wait(60s);
    ASSERT_TRUE(waited) << waited.error().message();
    ASSERT_TRUE(*waited) << "no record within 60 s after " << expected;
  }
  auto status = child.reap(60s);
  ASSERT_TRUE(status.has_value()) << "child did not exit";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  auto after = consumer.try_pop(rec);
  ASSERT_TRUE(after);
  EXPECT_FALSE(*after);
}

// Both rings, both directions: the parent sends requests, a child echoes each one back.
TEST_F(ShmRingTest, TwoProcessesEchoOverBothRings) {
  make(16 * 1024);
  const std::string name = seg_->name();
  constexpr std::uint64_t kEchoes = 20'000;
  ChildGuard child;
  child.pid = ::fork();
  ASSERT_GE(child.pid, 0);
  if (child.pid == 0) {
    auto seg = Segment::open(name);
    if (!seg) ::_exit(10);
    if (!seg->unlink()) ::_exit(11);  // the worker may unlink too; idempotent with the parent
    RingConsumer requests = seg->consumer(RingId::requests);
    RingProducer replies = seg->producer(RingId::replies);
    Record rec;
    for (std::uint64_t n = 0; n < kEchoes;) {
      auto popped = requests.try_pop(rec);
      if (!popped) ::_exit(12);
      if (!*popped) {
        auto w = requests.wait(60s, 20us);
        if (!w || !*w) ::_exit(13);
        continue;
      }
      for (;;) {
        auto r = replies.try_push(RecordKind::message, rec.payload);
        if (!r) ::_exit(14);
        if (*r) break;
        auto w = replies.wait_for_space(rec.payload.size(), 60s, 20us);
        if (!w || !*w) ::_exit(15);
      }
      ++n;
    }
    ::_exit(0);
  }

  RingProducer requests = seg_->producer(RingId::requests);
  RingConsumer replies = seg_->consumer(RingId::replies);
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::string payload;
  Record rec;
  while (received < kEchoes) {
    bool progressed = false;
    while (sent < kEchoes) {
      payload = make_payload(sent, splitmix(sent) % 1000);
      auto r = requests.try_push(RecordKind::message, payload);
      ASSERT_TRUE(r) << r.error().message();
      if (!*r) break;
      ++sent;
      progressed = true;
    }
    for (;;) {
      auto popped = replies.try_pop(rec);
      ASSERT_TRUE(popped) << popped.error().message();
      if (!*popped) break;
      ASSERT_EQ(rec.sequence, received);
      ASSERT_EQ(rec.payload.size(), splitmix(received) % 1000);
      ASSERT_EQ(first_mismatch(received, rec.payload), -1);
      ++received;
      progressed = true;
    }
    if (!progressed) {
      auto w = replies.wait(60s, 20us);
      ASSERT_TRUE(w && *w) << "no echo within 60 s after " << received;
    }
  }
  auto status = child.reap(60s);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_FALSE(std::filesystem::exists("/dev/shm" + name));
}

// The worker's reader thread is asleep in futex_wait (checked in /proc) before the supervisor
// pushes; one push wakes it, with exactly one syscall on the supervisor's side.
TEST_F(ShmRingTest, DoorbellWakesAConsumerProcessAsleepBeforeThePush) {
  const std::string name = seg_->name();
  ChildGuard child;
  child.pid = ::fork();
  ASSERT_GE(child.pid, 0);
  if (child.pid == 0) {
    auto seg = Segment::open(name);
    if (!seg) ::_exit(10);
    RingConsumer consumer = seg->consumer(RingId::requests);
    auto w = consumer.wait(60s);
    if (!w) ::_exit(11);
    if (!*w) ::_exit(12);
    Record rec;
    auto popped = consumer.try_pop(rec);
    if (!popped || !*popped || rec.payload != "wake up") ::_exit(13);
    ::_exit(0);
  }
  const bool asleep = wait_until([&] {
    return control()->data_bell.sleeping.load() == static_cast<std::uint32_t>(SleepMode::futex) &&
           testing::process_state(child.pid) == 'S';
  });
  EXPECT_TRUE(asleep);
  ASSERT_TRUE(*producer_.try_push(RecordKind::message, "wake up"));
  auto status = child.reap(60s);
  ASSERT_TRUE(status.has_value()) << "consumer was not woken";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_EQ(producer_.wakeups_sent(), 1u);
}

}  // namespace
}  // namespace drover::proto::shm
