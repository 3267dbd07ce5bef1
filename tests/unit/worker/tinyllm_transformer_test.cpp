#include <gtest/gtest.h>

#include <atomic>
#include <cmath>

#include "tests/unit/worker/tinyllm_test_model.hpp"
#include "worker/backends/tinyllm/transformer.hpp"

namespace drover::worker::tinyllm {
namespace {

std::vector<std::vector<float>> run_logits(Transformer& t, const std::vector<int>& tokens) {
  auto seq = t.new_sequence();
  std::vector<std::vector<float>> out;
  for (std::size_t pos = 0; pos < tokens.size(); ++pos) {
    const auto l = t.forward(seq, tokens[pos], static_cast<int>(pos), true);
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

// Every id below 360, the vocabulary of the smaller test model (tiny-unshared).
const std::vector<int> kTokens = {1, 300, 42, 7, 200, 359, 3, 1, 99, 120, 77, 260};

TEST(TinyllmTransformer, ThreadCountDoesNotChangeASingleBit) {
  for (const auto* m : {&testing::tiny_model(), &testing::tiny_unshared_model()}) {
    auto cp = Checkpoint::open(m->model);
    ASSERT_TRUE(cp.has_value()) << cp.error();
    Transformer one(*cp, 1), two(*cp, 2), three(*cp, 3);
    const auto a = run_logits(one, kTokens);
    EXPECT_EQ(a, run_logits(two, kTokens));
    EXPECT_EQ(a, run_logits(three, kTokens));
  }
}

TEST(TinyllmTransformer, SequencesAreIndependent) {
  auto cp = Checkpoint::open(testing::tiny_model().model);
  ASSERT_TRUE(cp.has_value()) << cp.error();
  Transformer t(*cp, 2);
  const std::vector<int> other = {1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const auto alone_a = run_logits(t, kTokens);
  const auto alone_b = run_logits(t, other);
  // Interleave the two sequences token by token, as concurrent generations do.
  auto sa = t.new_sequence();
  auto sb = t.new_sequence();
  for (std::size_t pos = 0; pos < kTokens.size(); ++pos) {
    const auto la = t.forward(sa, kTokens[pos], static_cast<int>(pos), true);
    EXPECT_EQ(std::vector<float>(la.begin(), la.end()), alone_a[pos]);
    const auto lb = t.forward(sb, other[pos], static_cast<int>(pos), true);
    EXPECT_EQ(std::vector<float>(lb.begin(), lb.end()), alone_b[pos]);
  }
}

TEST(TinyllmTransformer, SkippingPromptLogitsLeavesLaterLogitsUnchanged) {
  auto cp = Checkpoint::open(testing::tiny_unshared_model().model);
  ASSERT_TRUE(cp.has_value()) << cp.error();
  Transformer t(*cp, 1);
  const auto full = run_logits(t, kTokens);
  auto seq = t.new_sequence();
  for (std::size_t pos = 0; pos + 1 < kTokens.size(); ++pos) {
    EXPECT_TRUE(t.forward(seq, kTokens[pos], static_cast<int>(pos), false).empty());
  }
  const auto last = t.forward(seq, kTokens.back(), static_cast<int>(kTokens.size() - 1), true);
  EXPECT_EQ(std::vector<float>(last.begin(), last.end()), full.back());
  EXPECT_EQ(seq.next_pos(), static_cast<int>(kTokens.size()));
}

TEST(TinyllmTransformer, LogitsAreFiniteAndNotFlat) {
  auto cp = Checkpoint::open(testing::tiny_model().model);
  ASSERT_TRUE(cp.has_value()) << cp.error();
  Transformer t(*cp, 1);
  for (const auto& row : run_logits(t, kTokens)) {
    float lo = row[0], hi = row[0];
    for (float v : row) {
      ASSERT_TRUE(std::isfinite(v));
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    EXPECT_GT(hi - lo, 1.0f);  // sampling at temperature 1 is neither uniform nor greedy
  }
}

TEST(TinyllmParallelFor, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 4}) {
    ParallelFor pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int n : {0, 1, 2, 3, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      for (int round = 0; round < 3; ++round) {
        pool.run(n, [&](int begin, int end) {
          for (int i = begin; i < end; ++i) hits[static_cast<std::size_t>(i)].fetch_add(1);
        });
      }
      for (int i = 0; i < n; ++i)
        EXPECT_EQ(hits[static_cast<std::size_t>(i)].load(), 3) << n << " " << i;
    }
  }
}

TEST(TinyllmParallelFor, ManyShortJobsNeitherLoseWorkNorDeadlock) {
  // Thousands of back-to-back jobs exercise the hand-offs between caller and helpers (a lost
  // wake-up would hang here, and ctest's timeout would report it).
  ParallelFor pool(2);
  std::vector<int> out(64, 0);
  for (int round = 0; round < 20000; ++round) {
    pool.run(static_cast<int>(out.size()), [&](int begin, int end) {
      for (int i = begin; i < end; ++i) ++out[static_cast<std::size_t>(i)];
    });
  }
  for (const int v : out) EXPECT_EQ(v, 20000);
}

}  // namespace
}  // namespace drover::worker::tinyllm
