#include "proto/shm_error.hpp"

#include <string>

namespace drover::proto::shm {
namespace {

class ShmCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "drover.shm"; }

  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::too_large:
        return "record larger than the ring accepts";
      case Errc::corrupt:
        return "peer corrupted the ring";
      case Errc::bad_kind:
        return "record kind not allowed";
      case Errc::bad_ring_size:
        return "ring size is not a power of two within bounds";
      case Errc::bad_name:
        return "invalid shared-memory segment name";
      case Errc::too_small:
        return "segment smaller than its header";
      case Errc::bad_magic:
        return "not a drover shared-memory segment";
      case Errc::bad_version:
        return "unsupported shared-memory segment version";
      case Errc::bad_layout:
        return "segment header does not fit the mapped size";
      case Errc::fds_truncated:
        return "more file descriptors received than expected";
      case Errc::end_of_stream:
        return "peer closed the socket";
    }
    return "unknown drover.shm error";
  }
};

}  // namespace

const boost::system::error_category& shm_category() noexcept {
  static const ShmCategory category;
  return category;
}

}  // namespace drover::proto::shm
