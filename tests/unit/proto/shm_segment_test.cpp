// The shared-memory segment: exclusive creation with mode 0600 under an unpredictable name,
// the opener's validation of the header, unlink-after-map, and that no /dev/shm entry outlives
// the Segment objects (the fixture fails any test that leaves one behind).
#include "proto/shm_segment.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "tests/unit/proto/shm_test_util.hpp"

namespace drover::proto::shm {
namespace {

using testing::ShmTest;

class ShmSegmentTest : public ShmTest {};

std::string dev_shm_path(const std::string& name) { return "/dev/shm" + name; }

Segment create_or_die(std::size_t ring_bytes = kMinRingBytes) {
  auto seg = Segment::create(ring_bytes, testing::test_prefix());
  // gtest reports an exception escaping a test as that test's failure.
  if (!seg) throw std::runtime_error("Segment::create: " + seg.error().message());
  return std::move(*seg);
}

// A unique name this test may claim with create_named.
std::string fresh_name(const char* tag) {
  static int counter = 0;
  return "/" + testing::leak_prefix() + tag + "-" + std::to_string(++counter);
}

TEST_F(ShmSegmentTest, CreateUsesAnUnpredictableNameMode0600AndTheFullSize) {
  Segment a = create_or_die();
  Segment b = create_or_die();
  // "/drover-test-<pid>-" then 16 lowercase hex digits. (No std::regex: g++ 12 warns inside it
  // under -fsanitize=address, and warnings are errors.)
  const std::string head = "/" + testing::leak_prefix();
  ASSERT_EQ(a.name().rfind(head, 0), 0u) << a.name();
  const std::string hex = a.name().substr(head.size());
  EXPECT_EQ(hex.size(), 16u) << a.name();
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos) << a.name();
  EXPECT_NE(a.name(), b.name());
  EXPECT_TRUE(a.creator());
  EXPECT_TRUE(a.linked());

  struct stat st {};
  ASSERT_EQ(::stat(dev_shm_path(a.name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), segment_bytes_for(kMinRingBytes));
  EXPECT_EQ(a.size_bytes(), segment_bytes_for(kMinRingBytes));
  EXPECT_EQ(a.ring_bytes(), kMinRingBytes);
}

TEST_F(ShmSegmentTest, ModeIs0600WhateverTheUmask) {
  const mode_t old = ::umask(0);
  auto seg = Segment::create(kMinRingBytes, testing::test_prefix());
  ::umask(old);
  ASSERT_TRUE(seg);
  struct stat st {};
  ASSERT_EQ(::stat(dev_shm_path(seg->name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(ShmSegmentTest, CreateIsExclusive) {
  const std::string name = fresh_name("excl");
  auto first = Segment::create_named(name, kMinRingBytes);
  ASSERT_TRUE(first);
  auto producer = first->producer(RingId::requests);
  ASSERT_TRUE(*producer.try_push(RecordKind::message, "still mine"));

  auto second = Segment::create_named(name, kMinRingBytes);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), boost::system::errc::file_exists);
  // The failed attempt neither removed nor reinitialised the first one.
  EXPECT_TRUE(std::filesystem::exists(dev_shm_path(name)));
  auto consumer = first->consumer(RingId::requests);
  Record rec;
  ASSERT_TRUE(*consumer.try_pop(rec));
  EXPECT_EQ(rec.payload, "still mine");
}

TEST_F(ShmSegmentTest, CreateNeverTakesOverAForeignObject) {
  const std::string name = fresh_name("foreign");
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  auto seg = Segment::create_named(name, kMinRingBytes);
  ASSERT_FALSE(seg);
  EXPECT_EQ(seg.error(), boost::system::errc::file_exists);
  EXPECT_TRUE(std::filesystem::exists(dev_shm_path(name)));  // not ours to remove
  ::shm_unlink(name.c_str());
}

TEST_F(ShmSegmentTest, RingSizeMustBeAPowerOfTwoWithinBounds) {
  for (std::size_t bad : {std::size_t{0}, std::size_t{2048}, std::size_t{4095}, std::size_t{6144},
                          std::size_t{3} << 20, kMaxRingBytes * 2}) {
    auto seg = Segment::create(bad, testing::test_prefix());
    ASSERT_FALSE(seg) << bad;
    EXPECT_EQ(seg.error(), Errc::bad_ring_size) << bad;
  }
  EXPECT_TRUE(Segment::create(kMinRingBytes * 16, testing::test_prefix()));
}

TEST_F(ShmSegmentTest, NamesAreValidated) {
  const std::string bad_names[] = {
      "", "/", "noslash", "/a/b", "/..", "/with space", "/" + std::string(201, 'x')};
  for (const std::string& bad : bad_names) {
    auto seg = Segment::create_named(bad, kMinRingBytes);
    ASSERT_FALSE(seg) << bad;
    EXPECT_EQ(seg.error(), Errc::bad_name) << bad;
    auto opened = Segment::open(bad);
    ASSERT_FALSE(opened) << bad;
    EXPECT_EQ(opened.error(), Errc::bad_name) << bad;
  }
  auto bad_prefix = Segment::create(kMinRingBytes, "a/b");
  ASSERT_FALSE(bad_prefix);
  EXPECT_EQ(bad_prefix.error(), Errc::bad_name);
}

TEST_F(ShmSegmentTest, OpenSeesTheCreatorsRingsInBothDirections) {
  Segment creator = create_or_die(8192);
  auto opened = Segment::open(creator.name());
  ASSERT_TRUE(opened) << opened.error().message();
  EXPECT_FALSE(opened->creator());
  EXPECT_EQ(opened->ring_bytes(), 8192u);
  EXPECT_EQ(opened->size_bytes(), creator.size_bytes());

  // Two mappings of one segment, as in two processes.
  auto requests_out = creator.producer(RingId::requests);
  auto requests_in = opened->consumer(RingId::requests);
  auto replies_out = opened->producer(RingId::replies);
  auto replies_in = creator.consumer(RingId::replies);
  ASSERT_TRUE(*requests_out.try_push(RecordKind::message, "request"));
  ASSERT_TRUE(*replies_out.try_push(RecordKind::message, "reply"));
  Record rec;
  ASSERT_TRUE(*requests_in.try_pop(rec));
  EXPECT_EQ(rec.payload, "request");
  ASSERT_TRUE(*replies_in.try_pop(rec));
  EXPECT_EQ(rec.payload, "reply");
  // The rings are distinct.
  EXPECT_FALSE(*requests_in.try_pop(rec));
  EXPECT_FALSE(*replies_in.try_pop(rec));
}

TEST_F(ShmSegmentTest, UnlinkAfterMapLeavesNoEntryAndTheMappingsKeepWorking) {
  Segment creator = create_or_die();
  auto opened = Segment::open(creator.name());
  ASSERT_TRUE(opened);
  const std::string path = dev_shm_path(creator.name());
  ASSERT_TRUE(std::filesystem::exists(path));

  ASSERT_TRUE(creator.unlink());
  EXPECT_FALSE(creator.linked());
  EXPECT_FALSE(std::filesystem::exists(path));
  // Either side may unlink; the second call (ENOENT) is a success.
  EXPECT_TRUE(opened->unlink());
  EXPECT_TRUE(creator.unlink());
  // Nobody can open it any more ...
  auto late = Segment::open(creator.name());
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), boost::system::errc::no_such_file_or_directory);
  // ... but both mappings still share the rings.
  auto out = creator.producer(RingId::requests);
  auto in = opened->consumer(RingId::requests);
  ASSERT_TRUE(*out.try_push(RecordKind::message, "after unlink"));
  Record rec;
  ASSERT_TRUE(*in.try_pop(rec));
  EXPECT_EQ(rec.payload, "after unlink");
}

TEST_F(ShmSegmentTest, CreatorRemovesTheNameIfNobodyUnlinkedIt) {
  std::string name;
  {
    Segment seg = create_or_die();
    name = seg.name();
    auto opened = Segment::open(name);
    ASSERT_TRUE(opened);
    // An opener going away does not remove the creator's name.
    opened = Segment::open(name);
    ASSERT_TRUE(opened);
  }
  EXPECT_FALSE(std::filesystem::exists(dev_shm_path(name)));
}

TEST_F(ShmSegmentTest, OpenerDoesNotRemoveTheName) {
  Segment creator = create_or_die();
  {
    auto opened = Segment::open(creator.name());
    ASSERT_TRUE(opened);
  }
  EXPECT_TRUE(std::filesystem::exists(dev_shm_path(creator.name())));
}

TEST_F(ShmSegmentTest, MovedSegmentKeepsOwnershipOnce) {
  Segment a = create_or_die();
  const std::string name = a.name();
  Segment b = std::move(a);
  EXPECT_TRUE(b.linked());
  EXPECT_FALSE(a.linked());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  {
    Segment c = create_or_die();
    c = std::move(b);  // c's own segment is released (and unlinked) here
    EXPECT_TRUE(std::filesystem::exists(dev_shm_path(name)));
  }
  EXPECT_FALSE(std::filesystem::exists(dev_shm_path(name)));
}

TEST_F(ShmSegmentTest, RemoveStaleSweepsSegmentsOfDeadProcessesOnly) {
  // A pid that certainly existed and is now gone: a reaped child's.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ASSERT_TRUE(testing::reap(child).has_value());
  const std::string stale =
      "/" + testing::test_prefix() + "-" + std::to_string(child) + "-0123456789abcdef";
  // Named as if that child had created it and been SIGKILLed before unlinking it.
  auto dead = Segment::create_named(stale, kMinRingBytes);
  ASSERT_TRUE(dead);
  Segment live = create_or_die();

  const std::size_t removed = Segment::remove_stale(testing::test_prefix());
  EXPECT_GE(removed, 1u);
  EXPECT_FALSE(std::filesystem::exists(dev_shm_path(stale)));
  EXPECT_TRUE(std::filesystem::exists(dev_shm_path(live.name())));  // our pid is alive
  EXPECT_TRUE(dead->unlink());  // ENOENT: already gone, still a success
}

// ---- the opener's validation

class ShmSegmentOpenTest : public ShmSegmentTest {
 protected:
  void SetUp() override {
    auto seg = Segment::create(kMinRingBytes, testing::test_prefix());
    ASSERT_TRUE(seg);
    seg_.emplace(std::move(*seg));
  }
  void TearDown() override {
    seg_.reset();
    ShmSegmentTest::TearDown();
  }
  std::byte* at(std::size_t offset) { return seg_->bytes().data() + offset; }
  template <typename T>
  void put(std::size_t offset, T value) {
    std::memcpy(at(offset), &value, sizeof value);
  }
  boost::system::error_code open_error() {
    auto opened = Segment::open(seg_->name());
    return opened ? boost::system::error_code{} : opened.error();
  }
  std::optional<Segment> seg_;
};

TEST_F(ShmSegmentOpenTest, AcceptsAnIntactHeader) { EXPECT_FALSE(open_error()); }

TEST_F(ShmSegmentOpenTest, RejectsABadMagic) {
  put<std::uint64_t>(offsetof(SegmentHeader, magic), 0x0123456789abcdefULL);
  EXPECT_EQ(open_error(), Errc::bad_magic);
}

TEST_F(ShmSegmentOpenTest, RejectsAnotherVersion) {
  put<std::uint32_t>(offsetof(SegmentHeader, version), kSegmentVersion + 1);
  EXPECT_EQ(open_error(), Errc::bad_version);
}

TEST_F(ShmSegmentOpenTest, RejectsASizeThatDoesNotMatchTheMapping) {
  put<std::uint64_t>(offsetof(SegmentHeader, segment_bytes), seg_->size_bytes() * 2);
  EXPECT_EQ(open_error(), Errc::bad_layout);
}

TEST_F(ShmSegmentOpenTest, RejectsARingSizeThatIsNotAPowerOfTwo) {
  put<std::uint64_t>(offsetof(SegmentHeader, ring_bytes), kMinRingBytes + 16);
  EXPECT_EQ(open_error(), Errc::bad_layout);
}

TEST_F(ShmSegmentOpenTest, RejectsRingsLargerThanTheMapping) {
  put<std::uint64_t>(offsetof(SegmentHeader, ring_bytes), kMinRingBytes * 4);
  EXPECT_EQ(open_error(), Errc::bad_layout);
}

TEST_F(ShmSegmentOpenTest, RejectsABufferPastTheEnd) {
  put<std::uint64_t>(offsetof(SegmentHeader, data_offset) + 8, seg_->size_bytes() - 64);
  EXPECT_EQ(open_error(), Errc::bad_layout);
}

TEST_F(ShmSegmentOpenTest, RejectsAnOffsetThatWrapsAround) {
  put<std::uint64_t>(offsetof(SegmentHeader, data_offset), ~std::uint64_t{0} - 63);
  EXPECT_EQ(open_error(), Errc::bad_layout);
}

TEST_F(ShmSegmentOpenTest, RejectsOverlappingRings) {
  put<std::uint64_t>(offsetof(SegmentHeader, data_offset) + 8, kDataOffset + 64);
  EXPECT_EQ(open_error(), Errc::bad_layout);
}

TEST_F(ShmSegmentOpenTest, RejectsAControlBlockOverTheHeader) {
  put<std::uint64_t>(offsetof(SegmentHeader, control_offset), 0);
  EXPECT_EQ(open_error(), Errc::bad_layout);
}

TEST_F(ShmSegmentOpenTest, RejectsAMisalignedBuffer) {
  put<std::uint64_t>(offsetof(SegmentHeader, data_offset), kDataOffset + 8);
  EXPECT_EQ(open_error(), Errc::bad_layout);
}

TEST_F(ShmSegmentTest, OpenRejectsAnObjectSmallerThanTheHeader) {
  const std::string name = fresh_name("tiny");
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 10), 0);
  ::close(fd);
  auto opened = Segment::open(name);
  ::shm_unlink(name.c_str());
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), Errc::too_small);
}

TEST_F(ShmSegmentTest, OpenRejectsAZeroFilledObject) {
  const std::string name = fresh_name("zeros");
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(segment_bytes_for(kMinRingBytes))), 0);
  ::close(fd);
  auto opened = Segment::open(name);
  ::shm_unlink(name.c_str());
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), Errc::bad_magic);
}

TEST_F(ShmSegmentTest, OpenOfAMissingNameFails) {
  auto opened = Segment::open(fresh_name("missing"));
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), boost::system::errc::no_such_file_or_directory);
}

}  // namespace
}  // namespace drover::proto::shm
