#include "worker/backends/tinyllm/parallel_for.hpp"

namespace drover::worker::tinyllm {
namespace {

// Tens of microseconds of pause instructions: longer than the gap between two loops of a
// forward pass, shorter than the gap between requests.
constexpr int kSpinIterations = 2000;
constexpr int kChunksPerThread = 4;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

constexpr std::uint64_t pack(std::uint32_t epoch, std::uint32_t chunks, std::uint32_t next) {
  return (static_cast<std::uint64_t>(epoch) << 32) | (static_cast<std::uint64_t>(chunks) << 16) |
         next;
}

}  // namespace

ParallelFor::ParallelFor(int threads) {
  const int helpers = threads > 1 ? threads - 1 : 0;
  helpers_.reserve(static_cast<std::size_t>(helpers));
  for (int i = 0; i < helpers; ++i) helpers_.emplace_back([this] { helper_loop(); });
}

ParallelFor::~ParallelFor() {
  stopping_.store(true, std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_release);
  epoch_.notify_all();
  for (auto& t : helpers_) t.join();
}

int ParallelFor::work(std::uint32_t epoch) {
  int ran = 0;
  std::uint64_t c = claim_.load(std::memory_order_acquire);
  for (;;) {
    const auto e = static_cast<std::uint32_t>(c >> 32);
    const auto chunks = static_cast<std::uint32_t>((c >> 16) & 0xFFFF);
    const auto next = static_cast<std::uint32_t>(c & 0xFFFF);
    if (e != epoch || next >= chunks) return ran;
    // Acquire on success pairs with the caller's release of claim_: the job fields are visible.
    if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acquire,
                                      std::memory_order_acquire)) {
      continue;  // c now holds the current value
    }
    const long n = n_;
    const int begin = static_cast<int>(n * next / chunks);
    const int end = static_cast<int>(n * (next + 1) / chunks);
    if (begin < end) call_(ctx_, begin, end);
    ++ran;
    c = claim_.load(std::memory_order_acquire);
  }
}

void ParallelFor::dispatch(int n, void* ctx, Call call) {
  const int max_chunks = threads() * kChunksPerThread;
  const auto chunks = static_cast<std::uint32_t>(n < max_chunks ? n : max_chunks);
  ctx_ = ctx;
  call_ = call;
  n_ = n;
  helper_done_.store(0, std::memory_order_relaxed);
  const std::uint32_t epoch = epoch_.load(std::memory_order_relaxed) + 1;
  // Publishes the job fields to helpers that claim from it.
  claim_.store(pack(epoch, chunks, 0), std::memory_order_release);
  epoch_.store(epoch, std::memory_order_release);
  epoch_.notify_all();
  const int mine = work(epoch);
  const int theirs = static_cast<int>(chunks) - mine;
  // Only chunks that helpers have claimed remain; wait for them (their outputs are then visible).
  int spins = 0;
  for (int done = helper_done_.load(std::memory_order_acquire); done != theirs;
       done = helper_done_.load(std::memory_order_acquire)) {
    if (spins++ < kSpinIterations) {
      cpu_relax();
    } else {
      helper_done_.wait(done, std::memory_order_acquire);  // returns once it is no longer `done`
    }
  }
}

void ParallelFor::helper_loop() {
  std::uint32_t seen = 0;
  for (;;) {
    std::uint32_t now = epoch_.load(std::memory_order_acquire);
    for (int i = 0; now == seen && i < kSpinIterations; ++i) {
      cpu_relax();
      now = epoch_.load(std::memory_order_acquire);
    }
    while (now == seen) {
      epoch_.wait(seen, std::memory_order_acquire);
      now = epoch_.load(std::memory_order_acquire);
    }
    seen = now;
    if (stopping_.load(std::memory_order_relaxed)) return;
    const int ran = work(now);
    if (ran > 0) {
      helper_done_.fetch_add(ran, std::memory_order_release);
      helper_done_.notify_one();
    }
  }
}

}  // namespace drover::worker::tinyllm
