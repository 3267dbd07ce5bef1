// PromptCache: results of deterministic generate requests (see request_key.hpp), so that a
// repeated request is answered without touching a worker. LRU, bounded three ways:
//  - max_entries: inserting past it evicts the least recently used entry;
//  - max_bytes: the entries' sizes (key + serialised result + stream chunks) stay within it,
//    evicting from the LRU end; a single result larger than max_bytes is not stored at all;
//  - ttl: an entry older than ttl (since it was stored, not since it was last read) is a miss
//    and is dropped when found, or when it reaches the LRU end during an eviction.
// Time is passed in (`now`), so tests drive it without sleeping. Owned by the
// RequestPipeline; supervisor thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/worker_codec.hpp"

namespace drover::supervisor {

struct CachedResult {
  proto::worker::GenerateResult result;  // text, finish_reason, usage (no worker, cache, timing)
  std::vector<std::string> chunks;  // the stream's chunks when it ran streamed; else empty
};

class PromptCache {
 public:
  using Clock = std::chrono::steady_clock;

  struct Limits {
    std::size_t max_entries = 10'000;
    std::size_t max_bytes = 64 * 1024 * 1024;
    Clock::duration ttl = std::chrono::seconds(300);
  };

  struct Stats {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t inserts = 0;
    std::uint64_t evicted_entries = 0;  // LRU, for max_entries
    std::uint64_t evicted_bytes = 0;    // LRU, for max_bytes
    std::uint64_t expired = 0;          // older than ttl
    std::uint64_t too_large = 0;        // results bigger than max_bytes, never stored
  };

  explicit PromptCache(Limits limits) : limits_(limits) {}

  // A reload may shrink the bounds: evicts until the cache fits them.
  void set_limits(Limits limits, Clock::time_point now);
  const Limits& limits() const { return limits_; }

  // The entry under `key`, made most recently used; nullptr on a miss. Counts hit or miss.
  // The pointer is valid until the next call that changes the cache.
  const CachedResult* find(const std::string& key, Clock::time_point now);
  // Stores (or replaces) `key`; false when the value alone is larger than max_bytes.
  bool insert(const std::string& key, CachedResult value, Clock::time_point now);

  // Drops every entry (not counted as evictions).
  void clear() {
    lru_.clear();
    index_.clear();
    bytes_ = 0;
  }
  std::size_t entries() const { return index_.size(); }
  std::size_t bytes() const { return bytes_; }
  const Stats& stats() const { return stats_; }

  // What an entry counts against max_bytes.
  static std::size_t size_of(const std::string& key, const CachedResult& value);

 private:
  struct Entry {
    std::string key;
    CachedResult value;
    std::size_t bytes = 0;
    Clock::time_point stored_at;
  };
  using Lru = std::list<Entry>;  // front: most recently used

  void erase(Lru::iterator it);
  void evict_to_fit(std::size_t incoming_bytes, Clock::time_point now);

  Limits limits_;
  Lru lru_;
  std::unordered_map<std::string, Lru::iterator> index_;
  std::size_t bytes_ = 0;
  Stats stats_;
};

}  // namespace drover::supervisor
