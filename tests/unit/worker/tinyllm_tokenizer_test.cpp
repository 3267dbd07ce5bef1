#include <gtest/gtest.h>

#include <cstdint>

#include "tests/unit/worker/tinyllm_test_model.hpp"
#include "worker/backends/tinyllm/tokenizer.hpp"

namespace drover::worker::tinyllm {
namespace {

const Tokenizer& tiny_tokenizer() {
  static const Tokenizer t = [] {
    const auto& m = testing::tiny_model();
    auto tok = Tokenizer::load(m.tokenizer, m.config.vocab_size);
    if (!tok) throw std::runtime_error(tok.error());
    return std::move(*tok);
  }();
  return t;
}

std::string round_trip(const std::string& text) {
  const auto& t = tiny_tokenizer();
  return t.decode_all(t.encode(text, true, false));
}

TEST(TinyllmTokenizer, RoundTripsAsciiText) {
  for (const std::string text :
       {"Once upon a time", "the little dog went home.", "  two leading spaces", "trailing space ",
        "line\nbreak\ttab", "Punctuation: \"quotes\", (parens) & symbols ~^`{}|!", "x"}) {
    EXPECT_EQ(round_trip(text), text);
  }
}

TEST(TinyllmTokenizer, RoundTripsUtf8ThroughByteFallback) {
  for (const std::string text :
       {"héllo wörld — naïve café", "日本語のテキスト", "emoji 🐶🇫🇷", "mixed ascii and ünïcödé"}) {
    EXPECT_EQ(round_trip(text), text);
  }
}

TEST(TinyllmTokenizer, EmptyTextIsJustBos) {
  EXPECT_EQ(tiny_tokenizer().encode("", true, false), std::vector<int>{kBosToken});
  EXPECT_TRUE(tiny_tokenizer().encode("", false, false).empty());
  EXPECT_EQ(tiny_tokenizer().encode("", true, true), (std::vector<int>{kBosToken, kEosToken}));
}

TEST(TinyllmTokenizer, AddsTheDummyPrefixSpaceAndMergesWords) {
  const auto& t = tiny_tokenizer();
  const auto ids = t.encode("the", true, false);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], kBosToken);
  // The word comes out with its dummy-prefix space attached, merged into fewer tokens than bytes.
  std::string joined;
  for (std::size_t i = 1; i < ids.size(); ++i) joined += t.piece(ids[i]);
  EXPECT_EQ(joined, " the");
  EXPECT_LT(ids.size() - 1, 4u);
}

TEST(TinyllmTokenizer, UnknownCodePointsFallBackToByteTokens) {
  const auto ids = tiny_tokenizer().encode("é", false, false);
  // " " (dummy prefix), then <0xC3> <0xA9>: é is not in the vocabulary.
  EXPECT_EQ(ids, (std::vector<int>{tiny_tokenizer().encode(" ", false, false)[0],
                                   kFirstByteToken + 0xC3, kFirstByteToken + 0xA9}));
}

TEST(TinyllmTokenizer, DecodeFollowsLlama2cRules) {
  const auto& t = tiny_tokenizer();
  const int space_a = t.encode("a", false, false).back();  // " a" or "a" after " "
  ASSERT_FALSE(t.piece(space_a).empty());
  EXPECT_EQ(t.decode(kFirstByteToken, kFirstByteToken + 'A'), "A");  // <0x41> is the byte
  EXPECT_EQ(t.decode(kBosToken, kBosToken), "");
  EXPECT_EQ(t.decode(5, kEosToken), "");
  // After BOS a leading space is dropped; elsewhere it is kept.
  const int space = t.encode(" ", false, false)[0];
  EXPECT_EQ(t.piece(space), " ");
  EXPECT_EQ(t.decode(kBosToken, space), "");
  EXPECT_EQ(t.decode(space, space), " ");
}

TEST(TinyllmTokenizer, HeapEncodeMatchesTheDirectTranscriptionOfLlama2c) {
  // Pseudo-random texts from corpus words, spaces, punctuation, UTF-8 and raw bytes.
  const auto& t = tiny_tokenizer();
  const char* parts[] = {"the", " ",  "  ",   "dog",  "little",   "went",  "home", ".",
                         ",",   "é",  "日本", "🐶",    "\n",       "happy", "a",    "an",
                         "and", "xq", "\xC3", "\x80", "\xF0\x9F", "Once",  "upon", "time",
                         "!",   "'",  "\"",   "ee",   "eee"};
  std::uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::size_t>(state >> 33);
  };
  for (int i = 0; i < 300; ++i) {
    std::string text;
    const std::size_t n = next() % 24;
    for (std::size_t k = 0; k < n; ++k) text += parts[next() % std::size(parts)];
    EXPECT_EQ(t.encode(text, true, false), reference_encode(t, text, true, false)) << text;
  }
}

TEST(TinyllmTokenizer, NulBytesAreEncodedAsByteTokens) {
  const std::string text("a\0b", 3);
  const auto ids = tiny_tokenizer().encode(text, true, false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), kFirstByteToken + 0), ids.end());
  EXPECT_EQ(tiny_tokenizer().decode_all(ids), text);
}

TEST(TinyllmTokenizer, LoadChecksTheEntryCountAgainstTheModel) {
  const auto& m = testing::tiny_model();
  auto fewer = Tokenizer::load(m.tokenizer, m.config.vocab_size - 1);
  ASSERT_FALSE(fewer.has_value());
  EXPECT_NE(fewer.error().find("do not belong together"), std::string::npos) << fewer.error();
  auto more = Tokenizer::load(m.tokenizer, m.config.vocab_size + 1);
  ASSERT_FALSE(more.has_value());
  EXPECT_NE(more.error().find("ends after"), std::string::npos) << more.error();
  auto missing = Tokenizer::load("/nonexistent/tokenizer.bin", 300);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().find("/nonexistent/tokenizer.bin"), std::string::npos);
}

TEST(TinyllmTokenizer, VocabularyMustHaveByteTokensAndASpace) {
  std::vector<std::string> pieces(300, "x");
  std::vector<float> scores(300, 0.0f);
  auto bad = Tokenizer::from_vocab(pieces, scores);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().find("<0x00>"), std::string::npos) << bad.error();
}

TEST(TinyllmTokenizer, SaveThenLoadGivesTheSameVocabulary) {
  const auto& t = tiny_tokenizer();
  const auto path = (testing::TestModelDir::instance().path() / "resaved.bin").string();
  ASSERT_TRUE(t.save(path));
  auto again = Tokenizer::load(path, t.vocab_size());
  ASSERT_TRUE(again.has_value()) << again.error();
  for (int i = 0; i < t.vocab_size(); ++i) {
    EXPECT_EQ(again->piece(i), t.piece(i));
    EXPECT_EQ(again->score(i), t.score(i));
  }
}

}  // namespace
}  // namespace drover::worker::tinyllm
