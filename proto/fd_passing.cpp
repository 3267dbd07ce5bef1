#include "proto/fd_passing.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace drover::proto {
namespace {

boost::system::error_code system_error(int err) { return {err, boost::system::system_category()}; }

// Control buffer big enough for kMaxPassedFds descriptors, aligned for cmsghdr.
union ControlBuffer {
  char bytes[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  cmsghdr align;
};

}  // namespace

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);  // close(2) errors (EINTR, EIO) leave nothing to retry on Linux
  fd_ = fd;
}

boost::system::result<UniqueFd> make_eventfd() {
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return system_error(errno);
  return UniqueFd(fd);
}

boost::system::result<void> signal_eventfd(int fd) {
  const std::uint64_t one = 1;
  for (;;) {
    if (::write(fd, &one, sizeof one) == static_cast<ssize_t>(sizeof one)) return {};
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return {};  // counter saturated: it is readable already
    return system_error(errno);
  }
}

boost::system::result<std::uint64_t> drain_eventfd(int fd) {
  std::uint64_t value = 0;
  for (;;) {
    if (::read(fd, &value, sizeof value) == static_cast<ssize_t>(sizeof value)) return value;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return std::uint64_t{0};
    return system_error(errno);
  }
}

boost::system::result<std::size_t> send_fds(int socket_fd, std::span<const std::byte> data,
                                            std::span<const int> fds) {
  if (data.empty() || fds.size() > kMaxPassedFds) {
    return system_error(EINVAL);
  }
  iovec iov{const_cast<std::byte*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ControlBuffer control{};
  if (!fds.empty()) {
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    const ssize_t n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return system_error(errno);
  }
}

boost::system::result<std::size_t> send_fds(int socket_fd, std::string_view data,
                                            std::span<const int> fds) {
  return send_fds(socket_fd, std::as_bytes(std::span(data.data(), data.size())), fds);
}

boost::system::result<ReceivedFds> recv_fds(int socket_fd, std::span<std::byte> buffer,
                                            std::size_t max_fds) {
  if (buffer.empty() || max_fds > kMaxPassedFds) return system_error(EINVAL);
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ControlBuffer control{};
  // Room for exactly max_fds (rounded up by CMSG_SPACE; the count is checked below as well).
  msg.msg_control = control.bytes;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * (max_fds == 0 ? 1 : max_fds));
  ssize_t n = 0;
  for (;;) {
    n = ::recvmsg(socket_fd, &msg, MSG_CMSG_CLOEXEC);
    if (n >= 0) break;
    if (errno != EINTR) return system_error(errno);
  }

  // Take ownership of everything that arrived before judging it, so nothing leaks.
  ReceivedFds out;
  out.bytes = static_cast<std::size_t>(n);
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
      out.fds.emplace_back(fd);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0 || out.fds.size() > max_fds) {
    return shm::Errc::fds_truncated;  // `out` closes what arrived
  }
  if (n == 0) return shm::Errc::end_of_stream;
  return out;
}

}  // namespace drover::proto
