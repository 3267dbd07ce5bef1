// Passing file descriptors over a Unix-domain socket (SCM_RIGHTS), and the eventfds the
// shared-memory transport uses as doorbells for an event loop (proto/shm_ring.hpp,
// arm_async_wait). Plain POSIX sendmsg/recvmsg on a descriptor the caller owns; blocking or not
// as the socket is. Thread-safe as the underlying calls are.
//
// On a stream socket the descriptors travel with the bytes they were sent with: the receiver
// gets them from the recvmsg that reads the first of those bytes, and a plain read() of those
// bytes silently closes them. The worker protocol therefore attaches them to the `init` line
// (proto/README.md, "Shared-memory transport"), which the worker reads with recv_fds.
#pragma once

#include <boost/system/result.hpp>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/shm_error.hpp"

namespace drover::proto {

// An owned file descriptor, closed on destruction. -1 means none.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Most descriptors one message may carry (the kernel's SCM_MAX_FD is 253).
inline constexpr std::size_t kMaxPassedFds = 16;

// An eventfd with counter 0, EFD_CLOEXEC | EFD_NONBLOCK (a notifier never blocks on it).
boost::system::result<UniqueFd> make_eventfd();
// Adds 1 to an eventfd's counter (what RingProducer/RingConsumer do when the peer sleeps).
boost::system::result<void> signal_eventfd(int fd);
// Reads and resets the counter; 0 when it was already 0 (EAGAIN on a non-blocking eventfd).
boost::system::result<std::uint64_t> drain_eventfd(int fd);

// Sends `data` with `fds` attached (MSG_NOSIGNAL). Returns the bytes sent, which on a stream
// socket may be fewer than data.size(): the descriptors went with the first of them, so send
// the rest with ordinary writes. REQUIRES: !data.empty() (a stream socket cannot carry
// descriptors without at least one byte); fds.size() <= kMaxPassedFds. Errors: the errno of
// sendmsg (EAGAIN on a non-blocking socket that is full), or invalid_argument.
boost::system::result<std::size_t> send_fds(int socket_fd, std::span<const std::byte> data,
                                            std::span<const int> fds);
boost::system::result<std::size_t> send_fds(int socket_fd, std::string_view data,
                                            std::span<const int> fds);

struct ReceivedFds {
  std::size_t bytes = 0;      // bytes read into the buffer (> 0)
  std::vector<UniqueFd> fds;  // descriptors that arrived with them (close-on-exec), maybe none
};

// Reads up to buffer.size() bytes and any descriptors sent with them (MSG_CMSG_CLOEXEC).
// Errors: end_of_stream (the peer closed), fds_truncated (more than max_fds arrived, or the
// kernel truncated the control data; every descriptor that did arrive is closed), or the errno
// of recvmsg (EAGAIN on a non-blocking socket with nothing to read). EINTR is retried.
// REQUIRES: max_fds <= kMaxPassedFds; !buffer.empty().
boost::system::result<ReceivedFds> recv_fds(int socket_fd, std::span<std::byte> buffer,
                                            std::size_t max_fds);

}  // namespace drover::proto
