// Error codes of the shared-memory transport (proto/shm_segment.hpp, proto/shm_ring.hpp,
// proto/fd_passing.hpp), in their own boost::system category "drover.shm". Operating-system
// failures (shm_open, mmap, sendmsg, ...) are reported as boost::system::system_category codes
// carrying errno; everything the transport itself decides is one of these. Thread-safe.
#pragma once

#include <boost/system/error_code.hpp>
#include <type_traits>

namespace drover::proto::shm {

enum class Errc {
  // A record whose framed size exceeds RingProducer::max_record_bytes(): it can never fit, so
  // the caller sends that message on the control socket instead.
  too_large = 1,
  // The peer wrote a record header or an index that breaks the ring's invariants. Sticky: the
  // endpoint that saw it returns it forever after; the supervisor discards the segment and
  // replaces the worker (shared/DESIGN.md section 5).
  corrupt,
  // try_push with RecordKind::padding or an unknown kind (a caller bug, refused before writing).
  bad_kind,
  // ring_bytes is not a power of two in [kMinRingBytes, kMaxRingBytes].
  bad_ring_size,
  // A segment name that is not "/" followed by 1..200 characters from [A-Za-z0-9._-].
  bad_name,
  // Opening side: the segment is smaller than its header, its magic or version is not ours, or
  // its sizes and offsets do not fit the mapped size.
  too_small,
  bad_magic,
  bad_version,
  bad_layout,
  // recv_fds: the peer sent more descriptors than the caller made room for (all were closed).
  fds_truncated,
  // recv_fds: the peer closed the socket.
  end_of_stream,
};

const boost::system::error_category& shm_category() noexcept;

inline boost::system::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), shm_category()};
}

}  // namespace drover::proto::shm

template <>
struct boost::system::is_error_code_enum<drover::proto::shm::Errc> : std::true_type {};
