// Q8_0 (llama2.c runq.c's int8 weights): the quantization rule, the int8 kernels (the AVX2 one
// against the portable one and against exact arithmetic, at every batch grouping), and the
// argmax agreement of a Q8_0 model with its float32 original.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "tests/unit/worker/tinyllm_test_model.hpp"
#include "worker/backends/tinyllm/q8.hpp"
#include "worker/backends/tinyllm/sampler.hpp"
#include "worker/backends/tinyllm/transformer.hpp"

namespace drover::worker::tinyllm {
namespace {

// Deterministic values in (-1, 1).
std::vector<float> values(std::size_t n, std::uint64_t seed) {
  std::vector<float> out(n);
  for (auto& v : out) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<float>(static_cast<double>(seed >> 40) / 8388608.0 - 1.0);
  }
  return out;
}

TEST(TinyllmQ8, QuantizeUsesMaxOver127PerGroupAndRoundsToNearest) {
  const std::vector<float> x = {0.5f, -1.0f, 0.25f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
                                2.0f, 1.0f,  -0.6f, 0.01f};
  std::vector<std::int8_t> q(12);
  std::vector<float> s(3);
  q8::quantize(x.data(), 12, 4, q.data(), s.data());
  EXPECT_FLOAT_EQ(s[0], 1.0f / 127.0f);
  EXPECT_EQ(q[0], 64);  // 63.5 rounds away from zero, as C's round()
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[2], 32);  // 31.75
  EXPECT_EQ(s[1], 0.0f);  // a group of zeros: scale 0, values 0 (no division by zero)
  for (int i = 4; i < 8; ++i) EXPECT_EQ(q[static_cast<std::size_t>(i)], 0);
  EXPECT_FLOAT_EQ(s[2], 2.0f / 127.0f);
  EXPECT_EQ(q[8], 127);
  EXPECT_EQ(q[10], -38);  // -38.1
  EXPECT_EQ(q[11], 1);    // 0.635
}

TEST(TinyllmQ8, QuantizationErrorIsAtMostHalfAStep) {
  const auto x = values(64 * 50, 3);
  std::vector<std::int8_t> q(x.size());
  std::vector<float> s(x.size() / 64);
  q8::quantize(x.data(), static_cast<int>(x.size()), 64, q.data(), s.data());
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_GE(q[i], -127);
    ASSERT_LE(std::fabs(static_cast<float>(q[i]) * s[i / 64] - x[i]), s[i / 64] * 0.5001f) << i;
  }
}

struct KernelCase {
  int n;
  int group_size;
};

class TinyllmQ8Kernel : public ::testing::TestWithParam<KernelCase> {};

// Every group size shape the kernels have: 32-byte blocks (32, 64, 96), a 16-byte block (16,
// 48), a scalar tail (24, 40, 4). Rows of weights include -128, which llama2.c's export never
// writes but a file may hold.
TEST_P(TinyllmQ8Kernel, AvxAndPortableAgreeBitForBitAtEveryBatchAndMatchExactSums) {
  const auto [n, gs] = GetParam();
  const int rows = 7;
  const int max_batch = 7;
  const auto nn = static_cast<std::size_t>(n);
  std::vector<std::int8_t> wq(static_cast<std::size_t>(rows) * nn);
  std::vector<float> ws(wq.size() / static_cast<std::size_t>(gs));
  const auto wf = values(wq.size(), 11);
  q8::quantize(wf.data(), static_cast<int>(wf.size()), gs, wq.data(), ws.data());
  for (std::size_t i = 0; i < wq.size(); i += 13) wq[i] = -128;
  const Q8Tensor w{wq.data(), reinterpret_cast<const std::byte*>(ws.data())};

  std::vector<std::vector<std::int8_t>> xq(max_batch, std::vector<std::int8_t>(nn));
  std::vector<std::vector<float>> xs(max_batch, std::vector<float>(nn / static_cast<std::size_t>(gs)));
  std::vector<const std::int8_t*> qp;
  std::vector<const float*> sp;
  for (int b = 0; b < max_batch; ++b) {
    const auto xf = values(nn, 100 + static_cast<std::uint64_t>(b));
    q8::quantize(xf.data(), n, gs, xq[static_cast<std::size_t>(b)].data(),
                 xs[static_cast<std::size_t>(b)].data());
    qp.push_back(xq[static_cast<std::size_t>(b)].data());
    sp.push_back(xs[static_cast<std::size_t>(b)].data());
  }
  // Row r, input b, exactly: sum over groups of int dot * scales, in double.
  auto exact = [&](int r, int b) {
    double sum = 0;
    for (int g = 0; g < n / gs; ++g) {
      long dot = 0;
      for (int i = g * gs; i < (g + 1) * gs; ++i) {
        dot += long{wq[static_cast<std::size_t>(r) * nn + static_cast<std::size_t>(i)]} *
               qp[static_cast<std::size_t>(b)][i];
      }
      sum += static_cast<double>(dot) * ws[static_cast<std::size_t>(r * (n / gs) + g)] *
             sp[static_cast<std::size_t>(b)][g];
    }
    return sum;
  };
  for (const q8::Kernels* k : {&q8::kernels(), &q8::portable_kernels()}) {
    // Batch 1 is the reference; every larger batch (3-at-a-time groups and remainders of 1
    // and 2) must give each input the same bits.
    std::vector<std::vector<float>> alone(max_batch, std::vector<float>(rows));
    for (int b = 0; b < max_batch; ++b) {
      float* out = alone[static_cast<std::size_t>(b)].data();
      k->matmul(&out, w, {qp.data() + b, sp.data() + b}, 1, n, gs, 0, rows);
      for (int r = 0; r < rows; ++r) {
        ASSERT_NEAR(out[r], exact(r, b), 1e-5 * (1 + std::fabs(exact(r, b)))) << k->name;
      }
    }
    for (int batch = 2; batch <= max_batch; ++batch) {
      std::vector<std::vector<float>> got(static_cast<std::size_t>(batch), std::vector<float>(rows));
      std::vector<float*> outs;
      for (auto& g : got) outs.push_back(g.data());
      k->matmul(outs.data(), w, {qp.data(), sp.data()}, batch, n, gs, 0, rows);
      for (int b = 0; b < batch; ++b) {
        ASSERT_EQ(got[static_cast<std::size_t>(b)], alone[static_cast<std::size_t>(b)])
            << k->name << " batch " << batch << " input " << b;
      }
    }
    std::vector<float> portable(rows);
    float* out = portable.data();
    q8::portable_kernels().matmul(&out, w, {qp.data(), sp.data()}, 1, n, gs, 0, rows);
    ASSERT_EQ(portable, alone[0]) << k->name << " differs from the portable kernel";
  }
}

INSTANTIATE_TEST_SUITE_P(GroupShapes, TinyllmQ8Kernel,
                         ::testing::Values(KernelCase{64, 32}, KernelCase{128, 64},
                                           KernelCase{192, 96}, KernelCase{48, 16},
                                           KernelCase{96, 48}, KernelCase{72, 24},
                                           KernelCase{80, 40}, KernelCase{36, 4}));

// Teacher-forced: both models read the same tokens (sampled from the float32 model at
// temperature 1, so the text is varied), and at every position the greedy choices are
// compared.
double argmax_agreement(const std::string& f32_path, const std::string& q8_path, int positions) {
  auto f32 = Checkpoint::open(f32_path);
  auto q8 = Checkpoint::open(q8_path);
  EXPECT_TRUE(f32.has_value() && q8.has_value());
  EXPECT_EQ(q8->format(), WeightFormat::q8_0);
  Transformer a(*f32, 1), b(*q8, 1);
  auto sa = a.new_sequence();
  auto sb = b.new_sequence();
  Sampler sampler(f32->config().vocab_size, 1.0f, 1.0f, 42);
  int token = kBosToken, same = 0;
  for (int pos = 0; pos < positions; ++pos) {
    const auto la = a.forward(sa, token, pos);
    const auto lb = b.forward(sb, token, pos);
    same += argmax(la) == argmax(lb) ? 1 : 0;
    std::vector<float> probs(la.begin(), la.end());
    token = sampler.sample(probs);
  }
  return static_cast<double>(same) / positions;
}

TEST(TinyllmQ8, ShippedModelInQ8AgreesWithFloat32OnTheGreedyToken) {
  const auto& f32 = testing::TestModelDir::instance().get("shipped");
  const auto& q8 = testing::TestModelDir::instance().get("shipped@q8_0:64");
  const double agreement = argmax_agreement(f32.model, q8.model, f32.config.seq_len);
  // Measured 94.1% here (92.8-95.7% over sampling seeds 1-5 with drover-tinyllm-probe agree;
  // docs/MODELS.md): the bigram model has many near-tied continuations. Broken Q8_0 (wrong
  // scales, groups or layout) agrees on almost nothing.
  EXPECT_GE(agreement, 0.88) << "argmax agreement " << agreement;
}

}  // namespace
}  // namespace drover::worker::tinyllm
