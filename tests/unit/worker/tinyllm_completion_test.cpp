#include <gtest/gtest.h>

#include "worker/backends/tinyllm/completion.hpp"

namespace drover::worker::tinyllm {
namespace {

// Feeds pieces one at a time; returns the chunks (non-empty outputs) including finish().
std::vector<std::string> feed(Completion& c, const std::vector<std::string>& pieces) {
  std::vector<std::string> chunks;
  for (const auto& p : pieces) {
    auto out = c.push(p);
    if (!out.empty()) chunks.push_back(out);
    if (c.stopped()) break;
  }
  auto rest = c.finish();
  if (!rest.empty()) chunks.push_back(rest);
  return chunks;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x;
  return s;
}

TEST(TinyllmCompletion, AssemblesUtf8CharactersSplitAcrossPieces) {
  Completion c({});
  // "é" = C3 A9, "🐶" = F0 9F 90 B6, each byte a separate piece (byte-fallback tokens).
  const auto chunks = feed(c, {"caf", "\xC3", "\xA9", " ", "\xF0", "\x9F", "\x90", "\xB6", "!"});
  for (const auto& chunk : chunks)
    EXPECT_EQ(sanitize_utf8(chunk), chunk) << "chunk is not valid UTF-8";
  EXPECT_EQ(c.text(), "café 🐶!");
  EXPECT_EQ(join(chunks), c.text());
}

TEST(TinyllmCompletion, InvalidBytesBecomeReplacementCharacters) {
  Completion c({});
  feed(c, {"a", "\x80", "b", "\xC3", "c", "\xF0\x9F"});  // stray continuation, cut sequences
  EXPECT_EQ(c.text(),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD"
            "c\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("ok\xED\xA0\x80"),
            "ok\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");               // surrogate
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong
  EXPECT_EQ(sanitize_utf8("plain"), "plain");
}

TEST(TinyllmCompletion, StopStringEndsTheTextAndIsNotReturned) {
  Completion c({"END"});
  const auto chunks = feed(c, {"Hello", " E", "N", "D and more"});
  EXPECT_TRUE(c.stopped());
  EXPECT_EQ(c.text(), "Hello ");
  EXPECT_EQ(join(chunks), "Hello ");
  for (const auto& chunk : chunks) EXPECT_EQ(chunk.find('E'), std::string::npos);
}

TEST(TinyllmCompletion, HeldBackPrefixIsReleasedWhenItIsNotAStop) {
  Completion c({"stop here"});
  std::vector<std::string> chunks;
  for (const std::string p : {"a st", "o", "p", " there"}) {
    auto out = c.push(p);
    if (!out.empty()) chunks.push_back(out);
  }
  EXPECT_FALSE(c.stopped());
  EXPECT_EQ(join(chunks), "a stop there");
  EXPECT_EQ(c.finish(), "");
}

TEST(TinyllmCompletion, EarliestOfSeveralStopStringsWins) {
  Completion c({"world", "lo w", ""});
  feed(c, {"hello world"});
  EXPECT_EQ(c.text(), "hel");
}

TEST(TinyllmCompletion, FinishFlushesAHeldBackPrefix) {
  Completion c({"<end>"});
  EXPECT_EQ(c.push("text <e"), "text ");
  EXPECT_EQ(c.finish(), "<e");
  EXPECT_EQ(c.text(), "text <e");
}

}  // namespace
}  // namespace drover::worker::tinyllm
