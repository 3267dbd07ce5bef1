#include "supervisor/pipeline/prompt_cache.hpp"

namespace drover::supervisor {

std::size_t PromptCache::size_of(const std::string& key, const CachedResult& value) {
  // The result's text and fields about as they would be serialised.
  std::size_t n = key.size() + value.result.text.size() + value.result.finish_reason.size() + 64;
  for (const auto& c : value.chunks) n += c.size();
  return n;
}

void PromptCache::set_limits(Limits limits, Clock::time_point now) {
  limits_ = limits;
  evict_to_fit(0, now);
}

const CachedResult* PromptCache::find(const std::string& key, Clock::time_point now) {
  const auto it = index_.find(key);
  if (it == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  if (now - it->second->stored_at >= limits_.ttl) {
    ++stats_.expired;
    ++stats_.misses;
    erase(it->second);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  ++stats_.hits;
  return &it->second->value;
}

bool PromptCache::insert(const std::string& key, CachedResult value, Clock::time_point now) {
  const std::size_t size = size_of(key, value);
  if (const auto it = index_.find(key); it != index_.end()) erase(it->second);
  if (size > limits_.max_bytes) {
    ++stats_.too_large;
    return false;
  }
  evict_to_fit(size, now);
  lru_.push_front(Entry{key, std::move(value), size, now});
  index_.emplace(key, lru_.begin());
  bytes_ += size;
  ++stats_.inserts;
  return true;
}

void PromptCache::erase(Lru::iterator it) {
  bytes_ -= it->bytes;
  index_.erase(it->key);
  lru_.erase(it);
}

// Makes room for one more entry of `incoming` bytes (0: just fit the limits). An expired entry
// at the LRU end is counted as expired rather than as an eviction, so the figures tell an
// operator whether the cache is too small (evictions) or the ttl too short (expiries).
void PromptCache::evict_to_fit(std::size_t incoming, Clock::time_point now) {
  const std::size_t extra_entry = incoming > 0 ? 1 : 0;
  while (!lru_.empty() && (lru_.size() + extra_entry > limits_.max_entries ||
                           bytes_ + incoming > limits_.max_bytes)) {
    auto victim = std::prev(lru_.end());
    if (now - victim->stored_at >= limits_.ttl) {
      ++stats_.expired;
    } else if (lru_.size() + extra_entry > limits_.max_entries) {
      ++stats_.evicted_entries;
    } else {
      ++stats_.evicted_bytes;
    }
    erase(victim);
  }
}

}  // namespace drover::supervisor
