#include "supervisor/pipeline/prompt_cache.hpp"

#include <gtest/gtest.h>

#include <string>

namespace drover::supervisor {
namespace {

using json = proto::json;
using namespace std::chrono_literals;
using TimePoint = PromptCache::Clock::time_point;

// An injected clock: tests move it by hand.
const TimePoint kT0 = TimePoint(std::chrono::hours(1));

CachedResult result(const std::string& text, std::vector<std::string> chunks = {}) {
  return {proto::worker::GenerateResult{text, "length", {}}, std::move(chunks)};
}

PromptCache::Limits limits(std::size_t entries, std::size_t bytes,
                           std::chrono::seconds ttl = 300s) {
  return {entries, bytes, ttl};
}

TEST(PromptCache, HitReturnsTheStoredResultAndCountsHitsAndMisses) {
  PromptCache cache(limits(10, 1 << 20));
  EXPECT_EQ(cache.find("k", kT0), nullptr);
  ASSERT_TRUE(cache.insert("k", result("hello", {"hel", "lo"}), kT0));
  const CachedResult* hit = cache.find("k", kT0 + 1s);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->result.text, "hello");
  EXPECT_EQ(hit->chunks, (std::vector<std::string>{"hel", "lo"}));
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 1u);
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_EQ(cache.bytes(), PromptCache::size_of("k", result("hello", {"hel", "lo"})));
}

TEST(PromptCache, EvictsTheLeastRecentlyUsedEntryBeyondMaxEntries) {
  PromptCache cache(limits(3, 1 << 20));
  cache.insert("a", result("A"), kT0);
  cache.insert("b", result("B"), kT0);
  cache.insert("c", result("C"), kT0);
  // Reading a makes b the least recently used.
  ASSERT_NE(cache.find("a", kT0), nullptr);
  cache.insert("d", result("D"), kT0);
  EXPECT_EQ(cache.entries(), 3u);
  EXPECT_EQ(cache.find("b", kT0), nullptr);
  EXPECT_NE(cache.find("a", kT0), nullptr);
  EXPECT_NE(cache.find("c", kT0), nullptr);
  EXPECT_NE(cache.find("d", kT0), nullptr);
  EXPECT_EQ(cache.stats().evicted_entries, 1u);
  EXPECT_EQ(cache.stats().evicted_bytes, 0u);
}

TEST(PromptCache, EvictsByBytesUntilTheNewEntryFits) {
  const std::string text(100, 'x');
  const std::size_t one = PromptCache::size_of("a", result(text));
  // Room for exactly three entries of this size.
  PromptCache cache(limits(1000, 3 * one));
  cache.insert("a", result(text), kT0);
  cache.insert("b", result(text), kT0);
  cache.insert("c", result(text), kT0);
  EXPECT_EQ(cache.bytes(), 3 * one);
  // Twice the size: two entries (a, then b, the least recently used) must go.
  const std::string big(100 + one, 'y');
  ASSERT_TRUE(cache.insert("d", result(big), kT0));
  EXPECT_LE(cache.bytes(), 3 * one);
  EXPECT_EQ(cache.find("a", kT0), nullptr);
  EXPECT_EQ(cache.find("b", kT0), nullptr);
  EXPECT_NE(cache.find("c", kT0), nullptr);
  EXPECT_NE(cache.find("d", kT0), nullptr);
  EXPECT_EQ(cache.stats().evicted_bytes, 2u);
  EXPECT_EQ(cache.stats().evicted_entries, 0u);
}

TEST(PromptCache, StreamChunksCountAgainstMaxBytes) {
  const auto with_chunks = result("abcdef", {"abc", "def"});
  const auto without = result("abcdef");
  EXPECT_EQ(PromptCache::size_of("k", with_chunks), PromptCache::size_of("k", without) + 6);
}

TEST(PromptCache, ResultLargerThanMaxBytesIsNotStoredAndEvictsNothing) {
  PromptCache cache(limits(10, 200));
  ASSERT_TRUE(cache.insert("a", result("small"), kT0));
  EXPECT_FALSE(cache.insert("big", result(std::string(500, 'z')), kT0));
  EXPECT_EQ(cache.find("big", kT0), nullptr);
  EXPECT_NE(cache.find("a", kT0), nullptr);
  EXPECT_EQ(cache.stats().too_large, 1u);
}

TEST(PromptCache, EntryExpiresTtlAfterItWasStoredEvenIfRead) {
  PromptCache cache(limits(10, 1 << 20, 60s));
  cache.insert("k", result("v"), kT0);
  // Reads do not extend the lifetime: a cached answer is at most ttl old.
  EXPECT_NE(cache.find("k", kT0 + 30s), nullptr);
  EXPECT_NE(cache.find("k", kT0 + 59s), nullptr);
  EXPECT_EQ(cache.find("k", kT0 + 60s), nullptr);
  EXPECT_EQ(cache.entries(), 0u);
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_EQ(cache.stats().expired, 1u);
  EXPECT_EQ(cache.stats().misses, 1u);
}

TEST(PromptCache, ExpiredEntryAtTheLruEndCountsAsExpiredNotEvicted) {
  PromptCache cache(limits(2, 1 << 20, 60s));
  cache.insert("old", result("o"), kT0);
  cache.insert("new", result("n"), kT0 + 50s);
  cache.insert("newer", result("x"), kT0 + 70s);
  EXPECT_EQ(cache.stats().expired, 1u);
  EXPECT_EQ(cache.stats().evicted_entries, 0u);
  EXPECT_NE(cache.find("new", kT0 + 70s), nullptr);
}

TEST(PromptCache, ReinsertReplacesWithoutDoubleCountingBytes) {
  PromptCache cache(limits(10, 1 << 20));
  cache.insert("k", result("first"), kT0);
  cache.insert("k", result("second!"), kT0);
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_EQ(cache.bytes(), PromptCache::size_of("k", result("second!")));
  EXPECT_EQ(cache.find("k", kT0)->result.text, "second!");
}

TEST(PromptCache, ShrinkingLimitsEvictsAtOnce) {
  PromptCache cache(limits(10, 1 << 20));
  for (const char* k : {"a", "b", "c", "d"}) cache.insert(k, result(k), kT0);
  cache.set_limits(limits(2, 1 << 20), kT0);
  EXPECT_EQ(cache.entries(), 2u);
  EXPECT_EQ(cache.find("a", kT0), nullptr);
  EXPECT_NE(cache.find("d", kT0), nullptr);
}

}  // namespace
}  // namespace drover::supervisor
