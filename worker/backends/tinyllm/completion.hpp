// Completion: turns the byte pieces a generation decodes into the text a client receives.
//  - UTF-8: pieces are raw bytes (a byte-fallback token is one byte of a character), so bytes
//    are held until they complete a character; invalid sequences become U+FFFD (one per
//    maximal invalid subpart), so every chunk and the final text are valid UTF-8 (JSON needs it).
//  - Stop strings: the text ends right before the first occurrence of any stop string, which is
//    not returned. Text that might be the start of a stop string is held back until it is
//    known not to be, so the streamed chunks never contain text the final result drops, and
//    their concatenation always equals the final text. Empty stop strings are ignored.
// One per generation; not thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace drover::worker::tinyllm {

class Completion {
 public:
  explicit Completion(std::vector<std::string> stop);

  // Adds decoded bytes; returns the text that is now final (possibly empty). After a stop
  // string has appeared, stopped() is true and further calls return nothing.
  std::string push(std::string_view bytes);
  // The generation ended (length, cancel or end of sequence): returns the text held back.
  std::string finish();

  bool stopped() const { return stopped_; }
  // Everything push() and finish() have returned so far.
  const std::string& text() const { return text_; }

 private:
  std::string release(bool at_end);

  std::vector<std::string> stop_;
  std::string pending_bytes_;  // an incomplete UTF-8 sequence at the end of the bytes so far
  std::string held_;           // valid text that may still turn out to begin a stop string
  std::string text_;
  bool stopped_ = false;
};

// Valid UTF-8 for any bytes: each maximal invalid subpart becomes U+FFFD.
std::string sanitize_utf8(std::string_view bytes);

}  // namespace drover::worker::tinyllm
