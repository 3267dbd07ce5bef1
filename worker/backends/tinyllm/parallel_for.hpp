// ParallelFor: runs the loops of a forward pass (matmul rows, attention heads) on `threads`
// threads: the calling thread plus threads - 1 helper threads that this object owns and joins.
//
// Contract: one caller at a time (the backend's compute thread); run() returns only when every
// chunk is done, so fn may capture locals by reference. A loop is cut into fixed chunks (up to
// 4 per thread); every participant, the caller included, claims chunks until none is left.
// Which thread computes a chunk varies, but each output element is always computed by the same
// code in the same order, so results do not depend on the thread count or on scheduling.
//
// Why claiming instead of one fixed chunk per thread: on a busy machine a helper may not be
// running when a job is published. The caller then simply takes its chunks and only ever waits
// for chunks a helper has actually started, so a descheduled helper costs at most one chunk's
// delay instead of a scheduler time slice per loop (measured: 10x slower under load).
//
// Waiting: a forward pass calls run() ~20 times per token with only microseconds of work per
// call, too short for a futex round trip each time, so idle helpers first spin on the job
// epoch for a bounded number of pause instructions (tens of microseconds) and only then sleep
// on it (std::atomic::wait, a futex). Spinning costs a core, which is why the thread count is
// a flag: on a 2-core machine running 2 workers, each worker should use 1 thread
// (docs/MODELS.md has the measurements).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace drover::worker::tinyllm {

class ParallelFor {
 public:
  explicit ParallelFor(int threads);
  ~ParallelFor();
  ParallelFor(const ParallelFor&) = delete;
  ParallelFor& operator=(const ParallelFor&) = delete;

  int threads() const { return static_cast<int>(helpers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n), concurrently, and returns when
  // all are done. Small loops (n < threads) run on the calling thread alone.
  template <typename F>
  void run(int n, F&& fn) {
    if (helpers_.empty() || n < threads()) {
      if (n > 0) fn(0, n);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    dispatch(n, const_cast<void*>(static_cast<const void*>(&fn)),
             [](void* ctx, int begin, int end) { (*static_cast<Fn*>(ctx))(begin, end); });
  }

 private:
  using Call = void (*)(void* ctx, int begin, int end);
  void dispatch(int n, void* ctx, Call call);
  // Claims and runs chunks of job `epoch` until none is left; returns how many it ran.
  int work(std::uint32_t epoch);
  void helper_loop();

  std::vector<std::thread> helpers_;
  // The job. Written by the caller before it publishes claim_ (release). A helper reads them
  // only after it has claimed a chunk of this job (acquire): the caller cannot start the next
  // job, and so cannot rewrite them, while a claimed chunk is unfinished.
  void* ctx_ = nullptr;
  Call call_ = nullptr;
  int n_ = 0;
  // [epoch:32][chunks:16][next chunk:16]. Claiming is a CAS that also checks the epoch, so a
  // helper that wakes late can never claim a chunk of a job other than the one it woke for.
  std::atomic<std::uint64_t> claim_{0};
  // Chunks of the current job finished by helpers (release), read by the caller (acquire).
  std::atomic<int> helper_done_{0};
  // Bumped once per job and once more to stop; idle helpers wait on it.
  std::atomic<std::uint32_t> epoch_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace drover::worker::tinyllm
