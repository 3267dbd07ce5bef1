// Identifiers and randomness that are not security-sensitive: request ids for logs and
// supervisor-assigned generation seeds. Not thread-safe: each thread owns its own IdSource.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace drover {

class IdSource {
 public:
  IdSource();
  // A short id for log lines, unique within this process ("r1a2b3c-17").
  std::string next_request_id();
  // A seed for a generate request that came without one; recorded so a retry reproduces it.
  std::uint64_t next_seed();

 private:
  std::mt19937_64 rng_;
  std::string prefix_;
  std::uint64_t counter_ = 0;
};

}  // namespace drover
