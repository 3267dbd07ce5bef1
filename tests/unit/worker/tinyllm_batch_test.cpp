// Continuous batching and batched prefill in the Transformer: sequences run together in one
// forward pass per step — joining and leaving between steps, prompts forwarded several
// positions per pass — get bit-identical logits, hence identical greedy tokens, to the same
// sequences run alone one position at a time.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <deque>

#include "tests/unit/worker/tinyllm_test_model.hpp"
#include "worker/backends/tinyllm/sampler.hpp"
#include "worker/backends/tinyllm/tokenizer.hpp"
#include "worker/backends/tinyllm/transformer.hpp"

namespace drover::worker::tinyllm {
namespace {

struct Script {
  std::vector<int> prompt;
  int new_tokens = 0;
  int join_step = 0;  // the step before which it may join (if there is room)
};

struct Trace {
  std::vector<std::vector<float>> logits;  // one per sampled token
  std::vector<int> tokens;
  bool operator==(const Trace&) const = default;
};

// Prompts of 1..8 tokens, 3..15 new tokens, joins spread over the first steps: all fit in
// the test models' 24 (tiny-unshared) and 32 (tiny) positions.
std::vector<Script> scripts(int n, int vocab) {
  std::vector<Script> out;
  std::uint64_t state = 0x2545F4914F6CDD1DULL;
  auto next = [&state](int mod) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<int>((state * 0x2545F4914F6CDD1DULL >> 33) % static_cast<std::uint64_t>(mod));
  };
  for (int i = 0; i < n; ++i) {
    Script s;
    s.prompt.push_back(kBosToken);
    const int len = next(8);
    for (int k = 0; k < len; ++k) s.prompt.push_back(3 + next(vocab - 3));
    s.new_tokens = 3 + next(13);
    s.join_step = next(9);
    out.push_back(std::move(s));
  }
  return out;
}

// The reference: one sequence alone, one position per forward pass, greedy.
Trace run_alone(Transformer& t, const Script& s) {
  auto seq = t.new_sequence();
  Trace tr;
  int pos = 0;
  for (; pos + 1 < static_cast<int>(s.prompt.size()); ++pos) {
    t.forward(seq, s.prompt[static_cast<std::size_t>(pos)], pos, false);
  }
  int token = s.prompt.back();
  for (int i = 0; i < s.new_tokens; ++i, ++pos) {
    const auto l = t.forward(seq, token, pos, true);
    tr.logits.emplace_back(l.begin(), l.end());
    token = argmax(l);
    tr.tokens.push_back(token);
  }
  return tr;
}

// All scripts through one Transformer: at most `batch` sequences per step, each forwarding up
// to `chunk` prompt positions per step; a finished sequence leaves and the next waiting one
// joins at the following step.
std::vector<Trace> run_together(Transformer& t, const std::vector<Script>& ss, int batch,
                                int chunk) {
  struct Live {
    std::size_t index;
    Transformer::Sequence seq;
    int pos = 0;
    int token = 0;
  };
  std::vector<Trace> traces(ss.size());
  std::deque<std::size_t> waiting;
  for (std::size_t i = 0; i < ss.size(); ++i) waiting.push_back(i);
  std::vector<std::unique_ptr<Live>> live;
  std::vector<Transformer::Row> rows;
  std::vector<Live*> owner;
  for (int step = 0; !waiting.empty() || !live.empty(); ++step) {
    for (auto it = waiting.begin(); it != waiting.end() && static_cast<int>(live.size()) < batch;) {
      if (ss[*it].join_step > step) {
        ++it;
        continue;
      }
      live.push_back(std::make_unique<Live>(Live{*it, t.new_sequence(), 0, ss[*it].prompt.back()}));
      it = waiting.erase(it);
    }
    rows.clear();
    owner.clear();
    for (auto& lp : live) {
      const Script& s = ss[lp->index];
      const int last = static_cast<int>(s.prompt.size()) - 1;
      int added = 0;
      for (; lp->pos + added < last && added < chunk; ++added) {
        rows.push_back({&lp->seq, s.prompt[static_cast<std::size_t>(lp->pos + added)],
                        lp->pos + added, false});
        owner.push_back(lp.get());
      }
      if (lp->pos + added >= last && added < chunk) {
        rows.push_back({&lp->seq, lp->token, lp->pos + added, true});
        owner.push_back(lp.get());
        ++added;
      }
      lp->pos += added;
    }
    t.forward(rows);
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const auto l = t.logits(r);
      if (!rows[r].want_logits) {
        EXPECT_TRUE(l.empty());
        continue;
      }
      Trace& tr = traces[owner[r]->index];
      tr.logits.emplace_back(l.begin(), l.end());
      owner[r]->token = argmax(l);
      tr.tokens.push_back(owner[r]->token);
    }
    std::erase_if(live, [&](const std::unique_ptr<Live>& lp) {
      return static_cast<int>(traces[lp->index].tokens.size()) == ss[lp->index].new_tokens;
    });
  }
  return traces;
}

class TinyllmBatch : public ::testing::TestWithParam<const char*> {};

TEST_P(TinyllmBatch, EveryBatchSizeGivesTheSoloLogitsBitForBit) {
  const auto& m = testing::TestModelDir::instance().get(GetParam());
  auto cp = Checkpoint::open(m.model);
  ASSERT_TRUE(cp.has_value()) << cp.error();
  Transformer alone(*cp, 1);
  Transformer together(*cp, 2);  // another thread count, too: nothing may depend on it
  const auto ss = scripts(40, m.config.vocab_size);
  std::vector<Trace> expected;
  for (const auto& s : ss) expected.push_back(run_alone(alone, s));
  for (const int batch : {1, 2, 3, 8, 16, 32}) {
    const auto got = run_together(together, ss, batch, 1);
    for (std::size_t i = 0; i < ss.size(); ++i) {
      ASSERT_EQ(got[i].tokens, expected[i].tokens) << "batch " << batch << ", sequence " << i;
      ASSERT_TRUE(got[i] == expected[i]) << "logits differ: batch " << batch << ", sequence " << i;
    }
  }
}

TEST_P(TinyllmBatch, BatchedPrefillGivesTheSoloLogitsBitForBit) {
  const auto& m = testing::TestModelDir::instance().get(GetParam());
  auto cp = Checkpoint::open(m.model);
  ASSERT_TRUE(cp.has_value()) << cp.error();
  Transformer alone(*cp, 1);
  Transformer together(*cp, 2);
  const auto ss = scripts(40, m.config.vocab_size);
  std::vector<Trace> expected;
  for (const auto& s : ss) expected.push_back(run_alone(alone, s));
  for (const int batch : {1, 3, 16, 32}) {
    for (const int chunk : {2, 5, 16}) {
      const auto got = run_together(together, ss, batch, chunk);
      for (std::size_t i = 0; i < ss.size(); ++i) {
        ASSERT_TRUE(got[i] == expected[i])
            << "batch " << batch << ", prefill chunk " << chunk << ", sequence " << i;
      }
    }
  }
}

// Q8_0 (runq.c's int8 path): group size 24 runs the 16-byte blocks and the scalar tail of the
// int8 kernel, 4 the tail only; tinyllm_q8_test covers the 32-byte blocks.
INSTANTIATE_TEST_SUITE_P(Models, TinyllmBatch,
                         ::testing::Values("tiny", "tiny-unshared", "tiny@q8_0:24",
                                           "tiny@q8_0:8", "tiny-unshared@q8_0:4"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

TEST(TinyllmBatchRows, RowsWithoutLogitsGetNoneAndAnEmptyPassIsANoOp) {
  auto cp = Checkpoint::open(testing::tiny_model().model);
  ASSERT_TRUE(cp.has_value()) << cp.error();
  Transformer t(*cp, 1);
  t.forward(std::span<const Transformer::Row>());
  auto a = t.new_sequence();
  auto b = t.new_sequence();
  const std::vector<Transformer::Row> rows = {
      {&a, kBosToken, 0, false}, {&a, 50, 1, true}, {&b, kBosToken, 0, true}};
  t.forward(rows);
  EXPECT_TRUE(t.logits(0).empty());
  EXPECT_EQ(t.logits(1).size(), static_cast<std::size_t>(cp->config().vocab_size));
  EXPECT_EQ(t.logits(2).size(), static_cast<std::size_t>(cp->config().vocab_size));
  EXPECT_EQ(a.next_pos(), 2);
  EXPECT_EQ(b.next_pos(), 1);
}

}  // namespace
}  // namespace drover::worker::tinyllm
