// Admission control: a bound on requests accepted but not yet answered, across all clients
// (server.max_queue). Beyond it new requests are refused at once with -32001 and a
// retry_after_ms hint, instead of queueing without bound and timing out later.
// While the SLO policy shed_low_priority is in force (supervisor/admin/slo_engine.hpp), requests
// of the low priority lane are refused the same way, before they take a slot.
// Single-threaded (supervisor io_context).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "proto/client_params.hpp"

namespace drover::supervisor {

class Admission {
 public:
  explicit Admission(std::size_t limit) : limit_(limit) {}

  // Takes a slot; false when the supervisor is full.
  bool try_acquire() {
    if (outstanding_ >= limit_) {
      ++rejected_;
      return false;
    }
    ++outstanding_;
    return true;
  }
  // REQUIRES: a slot taken by try_acquire().
  void release() { --outstanding_; }

  // A reload may change the bound; requests already admitted stay admitted.
  void set_limit(std::size_t limit) { limit_ = limit; }
  std::size_t outstanding() const { return outstanding_; }
  std::size_t limit() const { return limit_; }
  std::uint64_t rejected() const { return rejected_; }

  // Hint for a refused client: a short pause; load drains at worker speed, not client speed.
  std::int64_t retry_after_ms() const { return 50; }

  // Low-priority shedding: on with the retry_after_ms hint for the refused, or off (nullopt).
  void set_shedding(std::optional<std::int64_t> retry_after_ms) { shed_retry_after_ms_ = retry_after_ms; }
  bool shedding() const { return shed_retry_after_ms_.has_value(); }
  // Whether a request of `priority` is refused by shedding now; counts it when it is.
  bool shed(proto::Priority priority) {
    if (!shed_retry_after_ms_ || priority != proto::Priority::low) return false;
    ++shed_;
    return true;
  }
  std::int64_t shed_retry_after_ms() const { return shed_retry_after_ms_.value_or(0); }
  std::uint64_t shed_total() const { return shed_; }

 private:
  std::size_t limit_;
  std::size_t outstanding_ = 0;
  std::uint64_t rejected_ = 0;
  std::optional<std::int64_t> shed_retry_after_ms_;
  std::uint64_t shed_ = 0;
};

}  // namespace drover::supervisor
