#include "proto/shm_segment.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/permissions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <new>
#include <utility>

namespace drover::proto::shm {
namespace {

namespace bip = boost::interprocess;

constexpr std::size_t kMaxNameChars = 200;  // after the slash; NAME_MAX is 255

bool valid_name_chars(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameChars) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return s != "." && s != "..";
}

bool valid_name(std::string_view name) {
  return name.size() >= 2 && name[0] == '/' && valid_name_chars(name.substr(1));
}

boost::system::error_code system_error(int err) {
  return {err != 0 ? err : EIO, boost::system::system_category()};
}

boost::system::error_code from_interprocess(const bip::interprocess_exception& e) {
  return system_error(e.get_native_error());
}

Result<std::uint64_t> random_u64() {
  std::uint64_t v = 0;
  auto* p = reinterpret_cast<unsigned char*>(&v);
  std::size_t got = 0;
  while (got < sizeof v) {
    const ssize_t n = ::getrandom(p + got, sizeof v - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return system_error(errno);
    }
    got += static_cast<std::size_t>(n);
  }
  return v;
}

struct Region {
  std::uint64_t offset;
  std::uint64_t bytes;
};

bool within(const Region& r, std::uint64_t size) {
  return r.offset <= size && r.bytes <= size - r.offset;
}

bool disjoint(const Region& a, const Region& b) {
  return a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset;
}

}  // namespace

Segment::Segment(std::string name, bip::mapped_region region, bool creator)
    : name_(std::move(name)), region_(std::move(region)), creator_(creator), linked_(true) {}

Segment::Segment(Segment&& other) noexcept
    : name_(std::move(other.name_)),
      region_(std::move(other.region_)),
      ring_bytes_(other.ring_bytes_),
      fd_(std::move(other.fd_)),
      creator_(std::exchange(other.creator_, false)),
      linked_(std::exchange(other.linked_, false)) {
  for (int i = 0; i < 2; ++i) {
    control_offset_[i] = other.control_offset_[i];
    data_offset_[i] = other.data_offset_[i];
  }
}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    reset();
    name_ = std::move(other.name_);
    region_ = std::move(other.region_);
    ring_bytes_ = other.ring_bytes_;
    fd_ = std::move(other.fd_);
    creator_ = std::exchange(other.creator_, false);
    linked_ = std::exchange(other.linked_, false);
    for (int i = 0; i < 2; ++i) {
      control_offset_[i] = other.control_offset_[i];
      data_offset_[i] = other.data_offset_[i];
    }
  }
  return *this;
}

Segment::~Segment() { reset(); }

void Segment::reset() {
  // The creator owns the name: a segment the worker never mapped (it failed to start) must not
  // leave an entry in /dev/shm. An opener never removes a name it did not create unless asked.
  if (creator_ && linked_) (void)unlink();
  region_ = bip::mapped_region();
  fd_.reset();
  creator_ = false;
  linked_ = false;
}

Segment Segment::initialise(std::string name, bip::mapped_region region, std::size_t ring_bytes) {
  const std::size_t size = region.get_size();
  auto* base = static_cast<std::byte*>(region.get_address());
  auto* header = ::new (base) SegmentHeader{};
  header->version = kSegmentVersion;
  header->header_bytes = sizeof(SegmentHeader);
  header->segment_bytes = size;
  header->ring_bytes = ring_bytes;
  for (int i = 0; i < 2; ++i) {
    header->control_offset[i] = kControlOffset[i];
    header->data_offset[i] = kDataOffset + static_cast<std::size_t>(i) * ring_bytes;
    init_ring_control(base + kControlOffset[i]);
  }
  // Release: every field above is visible to an opener whose acquire load sees the magic.
  // (The name or descriptor reaches the worker only afterwards, over the socket, which orders
  // it too; this keeps the header self-describing for any reader.)
  header->magic.store(kSegmentMagic, std::memory_order_release);

  Segment seg(std::move(name), std::move(region), /*creator=*/true);
  seg.ring_bytes_ = ring_bytes;
  for (int i = 0; i < 2; ++i) {
    seg.control_offset_[i] = kControlOffset[i];
    seg.data_offset_[i] = kDataOffset + static_cast<std::size_t>(i) * ring_bytes;
  }
  return seg;
}

Result<Segment> Segment::create(std::size_t ring_bytes, std::string_view prefix) {
  if (!valid_name_chars(prefix)) return Errc::bad_name;
  // 64 random bits make a collision (EEXIST) practically impossible; retry a few times anyway
  // rather than fail a worker start on an accident.
  for (int attempt = 0;; ++attempt) {
    auto r = random_u64();
    if (!r) return r.error();
    auto seg = create_named(fmt::format("/{}-{}-{:016x}", prefix, ::getpid(), *r), ring_bytes);
    if (seg || seg.error() != boost::system::errc::file_exists || attempt == 3) return seg;
  }
}

Result<Segment> Segment::create_named(const std::string& name, std::size_t ring_bytes) {
  if (!valid_name(name)) return Errc::bad_name;
  if (!valid_ring_bytes(ring_bytes)) return Errc::bad_ring_size;
  const std::size_t size = segment_bytes_for(ring_bytes);
  bool created = false;
  try {
    // create_only is shm_open(O_CREAT | O_EXCL): it never opens an existing object. Boost then
    // fchmods to the requested mode, so the umask cannot widen or narrow it.
    bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write,
                                  bip::permissions(0600));
    created = true;
    shm.truncate(static_cast<bip::offset_t>(size));  // posix_fallocate, then ftruncate
    bip::mapped_region region(shm, bip::read_write, 0, size);
    // The shm_object (its fd) closes at scope exit; the mapping stays.
    return initialise(name, std::move(region), ring_bytes);
  } catch (const bip::interprocess_exception& e) {
    if (created) ::shm_unlink(name.c_str());
    return from_interprocess(e);
  }
}

std::size_t Segment::remove_stale(std::string_view prefix) {
  if (!valid_name_chars(prefix)) return 0;
  std::size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string file = entry.path().filename().string();
    // "<prefix>-<pid>-<16 hex>"
    if (file.size() <= prefix.size() + 1 || file.compare(0, prefix.size(), prefix) != 0 ||
        file[prefix.size()] != '-') {
      continue;
    }
    const std::string_view rest = std::string_view(file).substr(prefix.size() + 1);
    const auto dash = rest.find('-');
    if (dash == std::string_view::npos || rest.size() - dash - 1 != 16) continue;
    const std::string_view hex = rest.substr(dash + 1);
    if (hex.find_first_not_of("0123456789abcdef") != std::string_view::npos) continue;
    pid_t pid = 0;
    const auto [end, err] = std::from_chars(rest.data(), rest.data() + dash, pid);
    if (err != std::errc{} || end != rest.data() + dash || pid <= 0) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0 || st.st_uid != ::geteuid()) continue;
    if (::shm_unlink(("/" + file).c_str()) == 0) ++removed;
  }
  return removed;
}

Result<Segment> Segment::open(const std::string& name) {
  if (!valid_name(name)) return Errc::bad_name;
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_write);
    bip::offset_t size = 0;
    if (!shm.get_size(size)) return system_error(errno);
    if (size < static_cast<bip::offset_t>(sizeof(SegmentHeader))) return Errc::too_small;
    return validate(name, bip::mapped_region(shm, bip::read_write));
  } catch (const bip::interprocess_exception& e) {
    return from_interprocess(e);
  }
}

namespace {

// Lets bip::mapped_region map a descriptor it did not open (a memfd).
struct FdMappable {
  int fd;
  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd);
  }
};

constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

}  // namespace

Result<Segment> Segment::create_sealed(std::size_t ring_bytes) {
  if (!valid_ring_bytes(ring_bytes)) return Errc::bad_ring_size;
  const std::size_t size = segment_bytes_for(ring_bytes);
  UniqueFd fd(::memfd_create("drover-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return system_error(errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return system_error(errno);
  // Allocate every page now: a full tmpfs fails here, not as SIGBUS on a later write.
  if (const int err = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size)); err != 0) {
    return system_error(err);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, kSeals) != 0) return system_error(errno);
  try {
    bip::mapped_region region(FdMappable{fd.get()}, bip::read_write, 0, size);
    Segment seg = initialise("memfd", std::move(region), ring_bytes);
    seg.linked_ = false;  // nothing to unlink: it never had a name
    seg.fd_ = std::move(fd);
    return seg;
  } catch (const bip::interprocess_exception& e) {
    return from_interprocess(e);
  }
}

Result<Segment> Segment::open_fd(UniqueFd fd) {
  if (!fd) return Errc::bad_layout;
  const int seals = ::fcntl(fd.get(), F_GET_SEALS);
  if (seals < 0) return system_error(errno);
  if ((seals & F_SEAL_SHRINK) == 0) return Errc::bad_layout;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return system_error(errno);
  if (st.st_size < static_cast<off_t>(sizeof(SegmentHeader))) return Errc::too_small;
  try {
    bip::mapped_region region(FdMappable{fd.get()}, bip::read_write, 0,
                              static_cast<std::size_t>(st.st_size));
    auto seg = validate("memfd", std::move(region));
    if (seg) seg->linked_ = false;
    return seg;  // fd closes here; the mapping stays
  } catch (const bip::interprocess_exception& e) {
    return from_interprocess(e);
  }
}

Result<Segment> Segment::validate(std::string name, bip::mapped_region region) {
  const std::uint64_t mapped = region.get_size();
  const auto& h = *std::launder(static_cast<const SegmentHeader*>(region.get_address()));

  // Acquire: pairs with the creator's release store; the fields below are complete.
  if (h.magic.load(std::memory_order_acquire) != kSegmentMagic) return Errc::bad_magic;
  // Each field is read once into a local and only the locals are used afterwards.
  const std::uint32_t version = h.version;
  if (version != kSegmentVersion) return Errc::bad_version;
  const std::uint32_t header_bytes = h.header_bytes;
  const std::uint64_t segment_bytes = h.segment_bytes;
  const std::uint64_t ring_bytes = h.ring_bytes;
  if (header_bytes != sizeof(SegmentHeader) || segment_bytes != mapped ||
      !valid_ring_bytes(ring_bytes)) {
    return Errc::bad_layout;
  }
  Region regions[5] = {{0, sizeof(SegmentHeader)}};
  for (int i = 0; i < 2; ++i) {
    const std::uint64_t control = h.control_offset[i];
    const std::uint64_t data = h.data_offset[i];
    // Control blocks hold atomics (natural alignment at least) and ring buffers need 64 bytes
    // (record alignment, and what RingProducer/RingConsumer require).
    if (control % kIndexSpacing != 0 || data % 64 != 0) return Errc::bad_layout;
    regions[1 + 2 * i] = {control, sizeof(RingControl)};
    regions[2 + 2 * i] = {data, ring_bytes};
  }
  for (int i = 0; i < 5; ++i) {
    if (!within(regions[i], mapped)) return Errc::bad_layout;
    for (int j = 0; j < i; ++j) {
      if (!disjoint(regions[i], regions[j])) return Errc::bad_layout;
    }
  }

  Segment seg(std::move(name), std::move(region), /*creator=*/false);
  seg.ring_bytes_ = static_cast<std::size_t>(ring_bytes);
  for (int i = 0; i < 2; ++i) {
    seg.control_offset_[i] = regions[1 + 2 * i].offset;
    seg.data_offset_[i] = regions[2 + 2 * i].offset;
  }
  return seg;
}

Result<void> Segment::unlink() {
  if (!linked_) return {};
  if (::shm_unlink(name_.c_str()) != 0 && errno != ENOENT) return system_error(errno);
  linked_ = false;
  return {};
}

RingProducer Segment::producer(RingId ring) {
  const auto i = static_cast<std::size_t>(ring);
  auto* base = static_cast<std::byte*>(region_.get_address());
  return RingProducer(std::launder(reinterpret_cast<RingControl*>(base + control_offset_[i])),
                      base + data_offset_[i], ring_bytes_);
}

RingConsumer Segment::consumer(RingId ring) {
  const auto i = static_cast<std::size_t>(ring);
  auto* base = static_cast<std::byte*>(region_.get_address());
  return RingConsumer(std::launder(reinterpret_cast<RingControl*>(base + control_offset_[i])),
                      base + data_offset_[i], ring_bytes_);
}

}  // namespace drover::proto::shm
