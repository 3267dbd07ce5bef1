// Router::pick over a pool of 8 and 64 candidates. Both routers scan every candidate, so the
// cost is linear in the pool size; in-flight counts vary so LeastBusyRouter's comparison has
// real work to do and its tie-break rotates.
#include <benchmark/benchmark.h>

#include <vector>

#include "supervisor/routing/least_busy_router.hpp"
#include "supervisor/routing/round_robin_router.hpp"

namespace drover::bench {
namespace {

using supervisor::RouteCandidate;

std::vector<RouteCandidate> candidates(int count) {
  std::vector<RouteCandidate> out;
  out.reserve(static_cast<std::size_t>(count));
  // Slots in a scrambled order (the pool does not promise sorted candidates) and in-flight
  // counts with several workers tied at the minimum.
  for (int i = 0; i < count; ++i) out.push_back({(i * 5) % count, 2 + (i * 7) % 5});
  return out;
}

template <typename R>
void pick(benchmark::State& state) {
  const auto pool = candidates(static_cast<int>(state.range(0)));
  R router;
  for (auto _ : state) {
    auto chosen = router.pick(pool);
    benchmark::DoNotOptimize(chosen);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_RoundRobinRouter_Pick(benchmark::State& state) {
  pick<supervisor::RoundRobinRouter>(state);
}
void BM_LeastBusyRouter_Pick(benchmark::State& state) { pick<supervisor::LeastBusyRouter>(state); }
BENCHMARK(BM_RoundRobinRouter_Pick)->ArgName("candidates")->Arg(8)->Arg(64);
BENCHMARK(BM_LeastBusyRouter_Pick)->ArgName("candidates")->Arg(8)->Arg(64);

}  // namespace
}  // namespace drover::bench
