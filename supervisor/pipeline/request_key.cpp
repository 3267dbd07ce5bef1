#include "supervisor/pipeline/request_key.hpp"

#include <openssl/sha.h>

#include <array>

namespace drover::supervisor {

std::optional<std::string> deterministic_key(const proto::GenerateParams& p) {
  if (p.temperature != 0.0 && !p.seed) return std::nullopt;
  // nlohmann's dump() of an object is canonical: keys sorted, numbers in one spelling.
  proto::json canonical = {{"model", p.model},
                           {"prompt", p.prompt},
                           {"max_tokens", p.max_tokens},
                           {"temperature", p.temperature},
                           {"top_p", p.top_p},
                           {"stop", p.stop},
                           {"seed", p.seed ? proto::json(*p.seed) : proto::json(nullptr)}};
  const std::string text = canonical.dump();
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(digest.size() * 2);
  for (unsigned char b : digest) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 0xf]);
  }
  return hex;
}

}  // namespace drover::supervisor
