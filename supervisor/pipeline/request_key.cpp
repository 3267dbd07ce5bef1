#include "supervisor/pipeline/request_key.hpp"

#include <openssl/sha.h>

#include <array>

#include "proto/json_write.hpp"

namespace drover::supervisor {

std::optional<std::string> deterministic_key(const proto::GenerateParams& p) {
  if (p.temperature != 0.0 && !p.seed) return std::nullopt;
  // One canonical text per request: the fields in a fixed order, strings escaped, numbers in
  // their shortest round-trip spelling (so 0.5 and 5e-1 from a client give the same key).
  std::string text;
  text.reserve(96 + p.model.size() + p.prompt.size());
  text += R"({"max_tokens":)";
  proto::append_int(text, p.max_tokens);
  text += R"(,"model":)";
  proto::append_string(text, p.model);
  text += R"(,"prompt":)";
  proto::append_string(text, p.prompt);
  text += R"(,"seed":)";
  if (p.seed) {
    proto::append_uint(text, *p.seed);
  } else {
    text += "null";
  }
  text += R"(,"stop":[)";
  for (std::size_t i = 0; i < p.stop.size(); ++i) {
    if (i) text += ',';
    proto::append_string(text, p.stop[i]);
  }
  text += R"(],"temperature":)";
  proto::append_double(text, p.temperature);
  text += R"(,"top_p":)";
  proto::append_double(text, p.top_p);
  text += '}';
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
