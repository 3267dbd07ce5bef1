// SCM_RIGHTS helpers and eventfds: descriptors arrive with their bytes and refer to the same
// kernel object (also across fork), arrive close-on-exec, excess descriptors are refused and
// closed rather than leaked, and the error cases (peer closed, nothing to read, no bytes) are
// reported as errors rather than crashes.
#include "proto/fd_passing.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <string>
#include <string_view>

#include "tests/unit/proto/shm_test_util.hpp"

namespace drover::proto {
namespace {

using namespace std::chrono_literals;

struct SocketPair {
  UniqueFd a, b;
  static SocketPair make(int type = SOCK_STREAM) {
    int fds[2];
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0)
      throw std::runtime_error("socketpair");
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
  }
};

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

std::string_view as_text(std::span<const std::byte> bytes, std::size_t n) {
  return {reinterpret_cast<const char*>(bytes.data()), n};
}

TEST(FdPassing, EventfdsArriveWithTheirBytesAndShareTheCounter) {
  auto pair = SocketPair::make();
  auto e1 = make_eventfd();
  auto e2 = make_eventfd();
  ASSERT_TRUE(e1 && e2);
  const std::array<int, 2> fds = {e1->get(), e2->get()};
  auto sent = send_fds(pair.a.get(), std::string_view("init\n"), fds);
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(*sent, 5u);

  std::array<std::byte, 64> buf{};
  auto got = recv_fds(pair.b.get(), buf, 4);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(as_text(buf, got->bytes), "init\n");
  ASSERT_EQ(got->fds.size(), 2u);
  // Same kernel objects, in order: a signal on the received copy is read from the original.
  ASSERT_TRUE(signal_eventfd(got->fds[1].get()));
  EXPECT_EQ(*drain_eventfd(e1->get()), 0u);
  EXPECT_EQ(*drain_eventfd(e2->get()), 1u);
  // Received close-on-exec, so a worker's own children do not inherit its doorbells.
  for (const auto& fd : got->fds) {
    EXPECT_TRUE(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC);
  }
}

TEST(FdPassing, PlainBytesCarryNoDescriptors) {
  auto pair = SocketPair::make();
  ASSERT_TRUE(send_fds(pair.a.get(), std::string_view("hello"), {}));
  std::array<std::byte, 64> buf{};
  auto got = recv_fds(pair.b.get(), buf, 2);
  ASSERT_TRUE(got);
  EXPECT_EQ(as_text(buf, got->bytes), "hello");
  EXPECT_TRUE(got->fds.empty());
}

TEST(FdPassing, ExcessDescriptorsAreRefusedAndClosed) {
  auto pair = SocketPair::make();
  auto e = make_eventfd();
  ASSERT_TRUE(e);
  const std::array<int, 3> fds = {e->get(), e->get(), e->get()};
  ASSERT_TRUE(send_fds(pair.a.get(), std::string_view("x"), fds));
  const std::size_t before = open_fd_count();
  std::array<std::byte, 8> buf{};
  auto got = recv_fds(pair.b.get(), buf, 1);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), shm::Errc::fds_truncated);
  EXPECT_EQ(open_fd_count(), before);  // nothing leaked
}

TEST(FdPassing, ErrorsAreReportedNotThrown) {
  auto pair = SocketPair::make();
  std::array<std::byte, 8> buf{};
  // Nothing to read on a non-blocking socket.
  ASSERT_EQ(::fcntl(pair.b.get(), F_SETFL, O_NONBLOCK), 0);
  auto empty = recv_fds(pair.b.get(), buf, 1);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), boost::system::errc::resource_unavailable_try_again);
  // A stream socket cannot carry descriptors without bytes.
  auto e = make_eventfd();
  const std::array<int, 1> fds = {e->get()};
  auto no_bytes = send_fds(pair.a.get(), std::span<const std::byte>{}, fds);
  ASSERT_FALSE(no_bytes);
  EXPECT_EQ(no_bytes.error(), boost::system::errc::invalid_argument);
  // The peer closed.
  pair.a.reset();
  auto closed = recv_fds(pair.b.get(), buf, 1);
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error(), shm::Errc::end_of_stream);
  // Writing to a closed peer is EPIPE, not SIGPIPE.
  auto pair2 = SocketPair::make();
  pair2.b.reset();
  auto epipe = send_fds(pair2.a.get(), std::string_view("x"), {});
  ASSERT_FALSE(epipe);
  EXPECT_EQ(epipe.error(), boost::system::errc::broken_pipe);
}

TEST(FdPassing, DrainOfAnUnsignalledEventfdIsZero) {
  auto e = make_eventfd();
  ASSERT_TRUE(e);
  EXPECT_EQ(*drain_eventfd(e->get()), 0u);
  ASSERT_TRUE(signal_eventfd(e->get()));
  ASSERT_TRUE(signal_eventfd(e->get()));
  EXPECT_EQ(*drain_eventfd(e->get()), 2u);
  EXPECT_EQ(*drain_eventfd(e->get()), 0u);
}

// The real use: the supervisor keeps an eventfd, passes it to a worker process over the control
// socket, and the worker rings it; the supervisor sees it readable (poll with a deadline).
TEST(FdPassing, AChildProcessRingsAPassedEventfd) {
  auto pair = SocketPair::make();
  auto e = make_eventfd();
  ASSERT_TRUE(e);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    pair.a.reset();
    std::array<std::byte, 16> buf{};
    auto got = recv_fds(pair.b.get(), buf, 1);
    if (!got || got->fds.size() != 1) ::_exit(10);
    if (!signal_eventfd(got->fds[0].get())) ::_exit(11);
    ::_exit(0);
  }
  pair.b.reset();
  const std::array<int, 1> fds = {e->get()};
  ASSERT_TRUE(send_fds(pair.a.get(), std::string_view("{"), fds));
  pollfd p{e->get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 60'000), 1);
  EXPECT_EQ(*drain_eventfd(e->get()), 1u);
  auto status = shm::testing::reap(pid, 60s);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

}  // namespace
}  // namespace drover::proto
