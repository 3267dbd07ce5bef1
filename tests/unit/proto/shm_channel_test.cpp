// ShmChannel (proto/shm_channel.hpp): both ends in one process on one io_context, over a real
// sealed memfd segment and real eventfds; the "control socket" is a queue the test delivers
// either at once (lines overtake their ring markers) or late (the ring waits at a marker), so
// both halves of the ordering rule run. Also the segment's seals.
#include "proto/shm_channel.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <deque>
#include <string>
#include <vector>

namespace drover::proto::shm {
namespace {

using namespace std::chrono_literals;

std::vector<UniqueFd> dup_all(const ChannelResources& r) {
  std::vector<UniqueFd> out;
  for (int fd : r.fds()) out.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  return out;
}

// A message of `size` bytes that names its index, so order and content are both checked.
std::string message(std::size_t i, std::size_t size) {
  std::string m = "{\"i\":" + std::to_string(i) + ",\"pad\":\"";
  while (m.size() + 2 < size) m += static_cast<char>('a' + i % 26);
  return m + "\"}";
}

struct Pair {
  asio::io_context io;
  std::shared_ptr<ShmChannel> sup, wrk;
  std::vector<std::string> at_sup, at_wrk;  // delivered messages
  std::deque<std::string> to_sup, to_wrk;   // socket lines in flight
  std::string sup_failed, wrk_failed;
  bool late_socket = false;  // deliver socket lines only when the test says so

  explicit Pair(std::size_t ring_bytes) {
    auto made = create_channel_resources(ring_bytes);
    EXPECT_TRUE(made) << made.error().message();
    auto adopted = adopt_channel_resources(dup_all(*made));
    EXPECT_TRUE(adopted) << adopted.error().message();
    sup = std::make_shared<ShmChannel>(
        io, ShmChannel::Side::supervisor, std::move(*made),
        ShmChannel::Hooks{[this](std::string_view m) { at_sup.emplace_back(m); },
                          [this](std::string line) { socket_line(to_wrk, wrk, std::move(line)); },
                          [this](const std::string& why) { sup_failed = why; }});
    wrk = std::make_shared<ShmChannel>(
        io, ShmChannel::Side::worker, std::move(*adopted),
        ShmChannel::Hooks{[this](std::string_view m) { at_wrk.emplace_back(m); },
                          [this](std::string line) { socket_line(to_sup, sup, std::move(line)); },
                          [this](const std::string& why) { wrk_failed = why; }});
    sup->start();
    wrk->start();
  }
  ~Pair() {
    sup->close();
    wrk->close();
    io.run_for(100ms);  // let the cancelled loops end
  }

  void socket_line(std::deque<std::string>& q, std::shared_ptr<ShmChannel>& to, std::string line) {
    EXPECT_EQ(line.back(), '\n');
    line.pop_back();
    if (!late_socket) {
      EXPECT_TRUE(to->take_socket_line(line));
      return;
    }
    q.push_back(std::move(line));
  }
  void flush_socket() {
    while (!to_sup.empty()) {
      EXPECT_TRUE(sup->take_socket_line(to_sup.front()));
      to_sup.pop_front();
    }
    while (!to_wrk.empty()) {
      EXPECT_TRUE(wrk->take_socket_line(to_wrk.front()));
      to_wrk.pop_front();
    }
  }
  // Runs the loop until pred holds (true) or 10 s pass (false); never sleeps.
  template <typename Pred>
  bool run_until(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io.run_for(5ms);
      io.restart();
    }
    return true;
  }
};

TEST(ShmChannelTest, MixedSizesArriveInSendOrderWhenSocketLinesOvertakeTheirMarkers) {
  Pair p(4096);  // payloads up to 2032 bytes fit; larger ones are deferred
  std::vector<std::string> sent;
  for (std::size_t i = 0; i < 300; ++i) {
    sent.push_back(message(i, i % 7 == 0 ? 5000 : 40 + (i * 37) % 900));
    p.wrk->send(sent.back());
  }
  // 300 messages cannot fit a 4 KiB ring at once: most wait for space, in order.
  EXPECT_FALSE(p.wrk->idle());
  ASSERT_TRUE(p.run_until([&] { return p.at_sup.size() == sent.size(); }))
      << p.at_sup.size() << " of " << sent.size();
  EXPECT_EQ(p.at_sup, sent);
  EXPECT_TRUE(p.wrk->idle());
  EXPECT_EQ(p.wrk->counters().deferred_messages_out, 43u);  // i % 7 == 0 for i < 300
  EXPECT_EQ(p.sup->counters().ring_messages_in, 300u - 43u);
  EXPECT_TRUE(p.sup_failed.empty()) << p.sup_failed;
}

TEST(ShmChannelTest, TheRingWaitsAtAMarkerUntilItsSocketLineArrives) {
  Pair p(4096);
  p.late_socket = true;
  const std::vector<std::string> sent = {message(0, 100), message(1, 3000), message(2, 100)};
  for (const auto& m : sent) p.sup->send(m);
  // The first message arrives; the third is held behind the marker of the second.
  ASSERT_TRUE(p.run_until([&] { return p.at_wrk.size() == 1; }));
  p.io.run_for(20ms);
  EXPECT_EQ(p.at_wrk.size(), 1u) << "a message overtook the one deferred to the socket";
  p.flush_socket();
  ASSERT_TRUE(p.run_until([&] { return p.at_wrk.size() == 3; }));
  EXPECT_EQ(p.at_wrk, sent);
}

TEST(ShmChannelTest, ACorruptRecordStopsTheReceivingSide) {
  Pair p(4096);
  p.wrk->send(message(0, 64));
  ASSERT_TRUE(p.run_until([&] { return p.at_sup.size() == 1; }));
  p.wrk->write_garbage_record();
  ASSERT_TRUE(p.run_until([&] { return !p.sup_failed.empty(); }));
  EXPECT_NE(p.sup_failed.find("replies ring"), std::string::npos) << p.sup_failed;
  EXPECT_TRUE(p.sup->closed());
  EXPECT_EQ(p.at_sup.size(), 1u);
}

TEST(ShmChannelTest, ADeferredLineWithoutAMarkerIsRefusedPastTheBound) {
  Pair p(4096);
  // 4096 / 16 lines could honestly be ahead of their markers; one more cannot.
  for (int i = 0; i <= 256 && p.sup_failed.empty(); ++i) {
    EXPECT_TRUE(p.sup->take_socket_line(std::string(1, kDeferredPrefix) + "{}"));
  }
  EXPECT_NE(p.sup_failed.find("without ring markers"), std::string::npos) << p.sup_failed;
  EXPECT_FALSE(p.wrk->take_socket_line("{\"jsonrpc\":\"2.0\"}")) << "a plain line is not the channel's";
}

TEST(ShmSegmentSealTest, ASealedSegmentCannotBeResizedAndAnUnsealedOneIsRefused) {
  auto seg = Segment::create_sealed(4096);
  ASSERT_TRUE(seg) << seg.error().message();
  EXPECT_NE(::ftruncate(seg->fd(), 0), 0) << "a worker could shrink it and SIGBUS droverd";
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(::ftruncate(seg->fd(), 1 << 20), 0);
  auto opened = Segment::open_fd(UniqueFd(::fcntl(seg->fd(), F_DUPFD_CLOEXEC, 0)));
  ASSERT_TRUE(opened) << opened.error().message();
  EXPECT_EQ(opened->ring_bytes(), 4096u);

  UniqueFd plain(::memfd_create("unsealed", MFD_CLOEXEC));
  ASSERT_TRUE(plain);
  ASSERT_EQ(::ftruncate(plain.get(), 16384), 0);
  auto refused = Segment::open_fd(std::move(plain));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), make_error_code(Errc::bad_layout));
}

}  // namespace
}  // namespace drover::proto::shm
