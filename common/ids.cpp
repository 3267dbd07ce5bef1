#include "common/ids.hpp"

#include <fmt/format.h>

namespace drover {

IdSource::IdSource() : rng_(std::random_device{}()) {
  prefix_ = fmt::format("r{:06x}", rng_() & 0xffffff);
}

std::string IdSource::next_request_id() { return fmt::format("{}-{}", prefix_, ++counter_); }

std::uint64_t IdSource::next_seed() {
  // Keep seeds within 2^53 so JSON clients that hold numbers as doubles echo them exactly.
  return rng_() & ((std::uint64_t{1} << 53) - 1);
}

}  // namespace drover
