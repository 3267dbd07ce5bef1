#include "worker/backends/tinyllm/completion.hpp"

#include <algorithm>

namespace drover::worker::tinyllm {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

enum class Scan { valid, invalid, incomplete };

// Classifies the UTF-8 sequence at the start of `s` (Unicode's well-formed table: no overlongs,
// no surrogates, nothing above U+10FFFF). `len` is the sequence length when valid, and the
// length of the maximal invalid subpart (at least 1) when invalid.
Scan scan(std::string_view s, std::size_t& len) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  int need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 < 0x80) {
    len = 1;
    return Scan::valid;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    len = 1;
    return Scan::invalid;
  }
  for (int i = 1; i <= need; ++i) {
    if (static_cast<std::size_t>(i) >= s.size()) {
      len = static_cast<std::size_t>(i);
      return Scan::incomplete;
    }
    const auto b = static_cast<unsigned char>(s[static_cast<std::size_t>(i)]);
    const unsigned char min = i == 1 ? lo : 0x80;
    const unsigned char max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) {
      len = static_cast<std::size_t>(i);
      return Scan::invalid;
    }
  }
  len = static_cast<std::size_t>(need) + 1;
  return Scan::valid;
}

// Appends the valid text of `bytes` to `out`; returns how many trailing bytes form an
// incomplete sequence (kept when !at_end, replaced when at_end).
std::size_t append_utf8(std::string_view bytes, std::string& out, bool at_end) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    std::size_t len = 0;
    switch (scan(bytes.substr(i), len)) {
      case Scan::valid:
        out.append(bytes.substr(i, len));
        break;
      case Scan::invalid:
        out.append(kReplacement);
        break;
      case Scan::incomplete:
        if (!at_end) return bytes.size() - i;
        out.append(kReplacement);
        len = bytes.size() - i;
        break;
    }
    i += len;
  }
  return 0;
}

}  // namespace

std::string sanitize_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  append_utf8(bytes, out, true);
  return out;
}

Completion::Completion(std::vector<std::string> stop) {
  for (auto& s : stop) {
    if (!s.empty()) stop_.push_back(std::move(s));
  }
}

std::string Completion::push(std::string_view bytes) {
  if (stopped_) return {};
  pending_bytes_.append(bytes);
  const std::size_t keep = append_utf8(pending_bytes_, held_, false);
  pending_bytes_.erase(0, pending_bytes_.size() - keep);
  return release(false);
}

std::string Completion::finish() {
  if (stopped_) return {};
  append_utf8(pending_bytes_, held_, true);
  pending_bytes_.clear();
  return release(true);
}

std::string Completion::release(bool at_end) {
  // The earliest stop string occurrence ends the text.
  std::size_t cut = std::string::npos;
  for (const auto& s : stop_) cut = std::min(cut, held_.find(s));
  std::string out;
  if (cut != std::string::npos) {
    out = held_.substr(0, cut);
    held_.clear();
    pending_bytes_.clear();
    stopped_ = true;
  } else {
    // Hold back the longest suffix that is a proper prefix of some stop string.
    std::size_t hold = 0;
    if (!at_end) {
      for (const auto& s : stop_) {
        for (std::size_t k = std::min(s.size() - 1, held_.size()); k > hold; --k) {
          if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
            hold = k;
            break;
          }
        }
      }
    }
    out = held_.substr(0, held_.size() - hold);
    held_.erase(0, held_.size() - hold);
  }
  text_ += out;
  return out;
}

}  // namespace drover::worker::tinyllm
