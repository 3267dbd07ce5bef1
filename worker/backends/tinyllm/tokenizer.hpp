// Tokenizer: llama2.c's tokenizer.bin and its BPE, with the same results as llama2.c's
// encode() and decode() (run.c), so prompts map to the token ids the model was trained on.
//
// File format: int32 max_token_length, then for each of the model's vocab_size tokens:
// float32 score, int32 byte length, the bytes (no terminator). The file carries no count: the
// checkpoint's vocab_size says how many entries there are, and the file must end right after
// them.
//
// Vocabulary conventions (those of the Llama 2 sentencepiece export): 0 <unk>, 1 BOS, 2 EOS,
// 3..258 the byte tokens <0x00>..<0xFF>; a token " " must exist (the dummy prefix).
//
// Encoding (llama2.c encode()): optional BOS; then, if the text is not empty, the " " token
// (sentencepiece's add_dummy_prefix); then one token per UTF-8 code point found in the vocab,
// or its bytes as byte tokens (id = byte + 3) when it is not; then, repeatedly, the adjacent
// pair whose concatenation is a token with the highest score is merged (ties: the leftmost
// pair) until no pair merges; optional EOS. This implementation finds the same merges with a
// heap instead of a rescan per merge (O(n log n) instead of O(n^2)); the unit tests check it
// against the direct transcription. Unlike C strings, the text may contain NUL bytes, which
// become <0x00>.
//
// Decoding (llama2.c decode()): a token's piece is its bytes; right after BOS a leading space
// is dropped; a piece <0xXX> is that single byte. BOS and EOS decode to nothing here (run.c
// stops at BOS and never prints it). Pieces are raw bytes and need not be valid UTF-8 alone.
//
// Immutable after load(): any thread may call it.
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace drover::worker::tinyllm {

inline constexpr int kUnkToken = 0;
inline constexpr int kBosToken = 1;
inline constexpr int kEosToken = 2;
inline constexpr int kFirstByteToken = 3;  // <0x00>; <0xFF> is 258

class Tokenizer {
 public:
  // Reads `path`, which must hold exactly `vocab_size` entries (the model's).
  static boost::system::result<Tokenizer, std::string> load(const std::string& path,
                                                            int vocab_size);
  // Builds a tokenizer from pieces and scores (tests and the model generator).
  static boost::system::result<Tokenizer, std::string> from_vocab(std::vector<std::string> pieces,
                                                                  std::vector<float> scores);

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  int max_token_length() const { return max_token_length_; }
  const std::string& piece(int id) const { return pieces_[static_cast<std::size_t>(id)]; }
  float score(int id) const { return scores_[static_cast<std::size_t>(id)]; }

  std::vector<int> encode(std::string_view text, bool bos, bool eos) const;

  // The bytes token `token` contributes after `prev` (prev < 0: none). REQUIRES: valid ids.
  std::string_view decode(int prev, int token) const;
  // Concatenated decode() of a sequence (BOS at the start strips the next leading space).
  // REQUIRES: valid ids.
  std::string decode_all(std::span<const int> tokens) const;

  // Writes the tokenizer.bin format.
  bool save(const std::string& path) const;

 private:
  int lookup(std::string_view piece) const;  // -1 when absent; the lowest id for duplicates

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string_view, int> index_;  // views into pieces_
  std::vector<int> byte_of_;  // token id -> byte for <0xXX> tokens, -1 otherwise
  int max_token_length_ = 0;
  int space_token_ = -1;
};

// llama2.c's encode() transcribed directly (rescans all pairs for each merge). For tests.
std::vector<int> reference_encode(const Tokenizer& t, std::string_view text, bool bos, bool eos);

}  // namespace drover::worker::tinyllm
