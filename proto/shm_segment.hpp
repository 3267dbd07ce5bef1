// One shared-memory segment per worker incarnation, holding a small header and two rings:
// `requests` (supervisor -> worker) and `replies` (worker -> supervisor). The supervisor
// creates it (exclusively, mode 0600, under an unpredictable name), tells the worker the name in
// `init`, and once both sides have mapped it either side unlinks the name: the mapping stays
// valid and no /dev/shm entry outlives the processes. A dead worker's segment is discarded with
// its Segment object, never reused. Layout (byte offsets) in proto/README.md.
//
// Segment is a move-only RAII handle: it owns the mapping, and in the creating process also the
// name (the destructor unlinks it if nobody did). The ring endpoints it hands out point into the
// mapping and must not outlive it. Factories return a Result and never throw. Not thread-safe
// itself; the endpoints follow shm_ring.hpp's contract.
#pragma once

#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "proto/fd_passing.hpp"
#include "proto/shm_error.hpp"
#include "proto/shm_ring.hpp"

namespace drover::proto::shm {

enum class RingId : std::uint32_t { requests = 0, replies = 1 };

inline constexpr std::uint64_t kSegmentMagic = 0x314D485352564F44;  // "DOVRSHM1" little-endian
inline constexpr std::uint32_t kSegmentVersion = 1;

// The segment header at offset 0 (64 bytes). Offsets only, never pointers: each process maps
// the segment at its own address.
struct SegmentHeader {
  // Stored last by the creator (release) and checked first by the opener (acquire), so a header
  // with a valid magic is complete.
  std::atomic<std::uint64_t> magic{0};
  std::uint32_t version = 0;
  std::uint32_t header_bytes = 0;        // sizeof(SegmentHeader)
  std::uint64_t segment_bytes = 0;       // the whole mapping
  std::uint64_t ring_bytes = 0;          // capacity of each ring's buffer, a power of two
  std::uint64_t control_offset[2] = {};  // RingControl of requests, replies
  std::uint64_t data_offset[2] = {};     // buffers of requests, replies
};
static_assert(sizeof(SegmentHeader) == 64);
static_assert(std::is_standard_layout_v<SegmentHeader>);

// Version-1 layout: header, then the two control blocks, then the buffers from the second page.
inline constexpr std::size_t kControlOffset[2] = {kIndexSpacing,
                                                  kIndexSpacing + sizeof(RingControl)};
inline constexpr std::size_t kDataOffset = 4096;
constexpr std::size_t segment_bytes_for(std::size_t ring_bytes) {
  return kDataOffset + 2 * ring_bytes;
}

class Segment {
 public:
  // Creates "/<prefix>-<pid>-<16 hex digits from getrandom>" exclusively with mode 0600, sized
  // and fully allocated (posix_fallocate, so a full /dev/shm fails here instead of raising
  // SIGBUS later), header and control blocks initialised. `prefix` matches [A-Za-z0-9._-]+.
  // Errors: bad_ring_size, bad_name, or the system error (e.g. ENOSPC, EMFILE).
  static Result<Segment> create(std::size_t ring_bytes, std::string_view prefix = "drover");
  // The same with a caller-chosen name ("/" + [A-Za-z0-9._-]{1,200}); EEXIST (as
  // boost::system::errc::file_exists) if the name is taken: never opens an existing one.
  static Result<Segment> create_named(const std::string& name, std::size_t ring_bytes);
  // Start-up sweep for segments a killed process left behind (SIGKILL between create and the
  // peer's mapping): unlinks every /dev/shm entry named "<prefix>-<pid>-<16 hex>" whose pid no
  // longer exists and that this user owns. Returns how many it removed. A reused pid keeps its
  // entry (conservative).
  static std::size_t remove_stale(std::string_view prefix = "drover");
  // Maps an existing segment and validates its header: too_small, bad_magic, bad_version,
  // bad_layout (sizes or offsets not within the mapped size, overlapping, misaligned).
  static Result<Segment> open(const std::string& name);

  // Anonymous form, what droverd uses (proto/README.md "Negotiation"): a memfd that never has a
  // name in /dev/shm, so no kill -9 of either process can leave an entry behind, sealed against
  // shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) so a worker holding the fd
  // cannot ftruncate it and make droverd's next access SIGBUS. fd() is then the descriptor to
  // pass over the control socket (SCM_RIGHTS). Errors: bad_ring_size, or the system error.
  static Result<Segment> create_sealed(std::size_t ring_bytes);
  // Maps a segment received as a descriptor and validates it as open() does; the descriptor is
  // closed once mapped. Refuses (bad_layout) a descriptor without the shrink seal: an unsealed
  // segment could be truncated under the mapping.
  static Result<Segment> open_fd(UniqueFd fd);

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  // Removes the name (shm_unlink); the mapping, and the peer's, stay valid. Call once both sides
  // have mapped it. Idempotent, and ENOENT counts as success (the peer unlinked first).
  Result<void> unlink();

  const std::string& name() const { return name_; }
  // The sealed memfd of create_sealed() (-1 for a named segment or an opened one).
  int fd() const { return fd_.get(); }
  bool creator() const { return creator_; }
  bool linked() const { return linked_; }
  std::size_t ring_bytes() const { return ring_bytes_; }
  std::size_t size_bytes() const { return region_.get_size(); }

  // The endpoints of a ring. REQUIRES: at most one producer and one consumer per ring over the
  // segment's life, across both processes (the supervisor takes producer(requests) and
  // consumer(replies), the worker the other two).
  RingProducer producer(RingId ring);
  RingConsumer consumer(RingId ring);

  // The raw mapping, for diagnostics and for tests that corrupt it on purpose.
  std::span<std::byte> bytes() {
    return {static_cast<std::byte*>(region_.get_address()), region_.get_size()};
  }

 private:
  Segment(std::string name, boost::interprocess::mapped_region region, bool creator);
  // Checks the header of a freshly mapped region (open() and open_fd()).
  static Result<Segment> validate(std::string name, boost::interprocess::mapped_region region);
  // create_named() and create_sealed(): writes the header of a new segment into the mapped
  // region (publishing it with the magic last) and takes its layout.
  static Segment initialise(std::string name, boost::interprocess::mapped_region region,
                            std::size_t ring_bytes);
  SegmentHeader& header() { return *static_cast<SegmentHeader*>(region_.get_address()); }
  void reset();

  std::string name_;
  boost::interprocess::mapped_region region_;
  std::size_t ring_bytes_ = 0;
  std::uint64_t control_offset_[2] = {};
  std::uint64_t data_offset_[2] = {};
  UniqueFd fd_;
  bool creator_ = false;
  bool linked_ = false;
};

}  // namespace drover::proto::shm
