// tinyllm's Sampler::sample on a 32000-token vocabulary (stories15M's), per draw: greedy,
// droverd's default sampling (temperature 0.8, top_p 0.95) and the whole distribution (top_p
// 1), on flat logits (random weights: nearly every token passes the top-p cutoff) and peaked
// ones (a trained model's shape: the nucleus is a few tokens). The logits are copied in before
// every draw (sample() overwrites them); the copy is measured too and is the same for all.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "worker/backends/tinyllm/sampler.hpp"

namespace drover::bench {
namespace {

constexpr int kVocab = 32000;

std::vector<float> logits(float spread) {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> out(2 * kVocab);
  for (float& v : out) v = normal(gen);
  return out;
}

// Args: temperature x100, top_p x100, spread x100 (0.05: flat, 3: peaked).
void BM_Sampler(benchmark::State& state) {
  const float temperature = static_cast<float>(state.range(0)) / 100.0f;
  const float top_p = static_cast<float>(state.range(1)) / 100.0f;
  const auto pool = logits(static_cast<float>(state.range(2)) / 100.0f);
  worker::tinyllm::Sampler sampler(kVocab, temperature, top_p, 42);
  std::vector<float> buf(kVocab);
  std::size_t offset = 0;
  for (auto _ : state) {
    std::copy(pool.begin() + static_cast<std::ptrdiff_t>(offset),
              pool.begin() + static_cast<std::ptrdiff_t>(offset + kVocab), buf.begin());
    offset = (offset + 97) % kVocab;
    benchmark::DoNotOptimize(sampler.sample(buf));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Sampler)
    ->ArgNames({"temp_x100", "top_p_x100", "spread_x100"})
    ->Args({0, 95, 5})
    ->Args({80, 95, 5})
    ->Args({80, 95, 300})
    ->Args({100, 100, 5})
    ->Args({100, 100, 300});

}  // namespace
}  // namespace drover::bench
