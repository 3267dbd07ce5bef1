#include "worker/backends/tinyllm/tokenizer.hpp"

#include <fmt/format.h>

#include <array>
#include <cstring>
#include <fstream>
#include <iterator>
#include <queue>

namespace drover::worker::tinyllm {
namespace {

// llama2.c only merges pairs whose score beats its initial best_score of -1e10.
constexpr float kMergeFloor = -1e10f;

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte a "<0xXX>" piece stands for, or -1.
int byte_piece_value(std::string_view p) {
  if (p.size() != 6 || !p.starts_with("<0x") || p[5] != '>') return -1;
  const int hi = hex_digit(p[3]);
  const int lo = hex_digit(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// The first tokens of an encoding, before merges: per UTF-8 code point its token, or its bytes
// as byte tokens (exactly llama2.c's loop, including its cap of 4 bytes per code point).
template <typename Lookup>
void split_code_points(std::string_view text, Lookup&& lookup, std::vector<int>& out) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = start + 1;
    while (end < text.size() && is_continuation(static_cast<unsigned char>(text[end])) &&
           end - start < 4) {
      ++end;
    }
    const std::string_view cp = text.substr(start, end - start);
    const int id = lookup(cp);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (unsigned char b : cp) out.push_back(kFirstByteToken + b);
    }
    start = end;
  }
}

}  // namespace

boost::system::result<Tokenizer, std::string> Tokenizer::from_vocab(std::vector<std::string> pieces,
                                                                    std::vector<float> scores) {
  using R = boost::system::result<Tokenizer, std::string>;
  if (pieces.size() != scores.size()) {
    return R(boost::system::in_place_error, "pieces and scores differ in length");
  }
  if (pieces.size() < static_cast<std::size_t>(kFirstByteToken + 256)) {
    return R(boost::system::in_place_error,
             fmt::format("vocabulary of {} tokens is smaller than the {} that <unk>, BOS, EOS and "
                         "the 256 byte tokens need",
                         pieces.size(), kFirstByteToken + 256));
  }
  Tokenizer t;
  t.pieces_ = std::move(pieces);
  t.scores_ = std::move(scores);
  t.byte_of_.assign(t.pieces_.size(), -1);
  t.index_.reserve(t.pieces_.size());
  for (std::size_t i = 0; i < t.pieces_.size(); ++i) {
    const std::string_view p = t.pieces_[i];
    t.index_.emplace(p, static_cast<int>(i));  // keeps the first (lowest) id of duplicates
    t.byte_of_[i] = byte_piece_value(p);
    t.max_token_length_ = std::max(t.max_token_length_, static_cast<int>(p.size()));
  }
  for (int b = 0; b < 256; ++b) {
    if (t.byte_of_[static_cast<std::size_t>(kFirstByteToken + b)] != b) {
      return R(boost::system::in_place_error,
               fmt::format("token {} is '{}', expected the byte token <0x{:02X}> (byte fallback "
                           "needs <0x00>..<0xFF> at ids 3..258)",
                           kFirstByteToken + b,
                           t.pieces_[static_cast<std::size_t>(kFirstByteToken + b)], b));
    }
  }
  t.space_token_ = t.lookup(" ");
  if (t.space_token_ < 0) {
    return R(boost::system::in_place_error, "vocabulary has no ' ' token (the dummy prefix)");
  }
  return t;
}

boost::system::result<Tokenizer, std::string> Tokenizer::load(const std::string& path,
                                                              int vocab_size) {
  using R = boost::system::result<Tokenizer, std::string>;
  auto fail = [&path](std::string what) {
    return R(boost::system::in_place_error, fmt::format("tokenizer {}: {}", path, what));
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(fmt::format("cannot open: {}", std::strerror(errno)));
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t at = 0;
  auto read_i32 = [&](std::int32_t& v) {
    if (data.size() - at < 4) return false;
    std::memcpy(&v, data.data() + at, 4);
    at += 4;
    return true;
  };
  std::int32_t max_len = 0;
  if (!read_i32(max_len)) return fail("shorter than its 4-byte header");
  std::vector<std::string> pieces;
  std::vector<float> scores;
  pieces.reserve(static_cast<std::size_t>(vocab_size));
  scores.reserve(static_cast<std::size_t>(vocab_size));
  for (int i = 0; i < vocab_size; ++i) {
    float score = 0;
    std::int32_t len = 0;
    if (data.size() - at < 8) {
      return fail(fmt::format("ends after {} tokens; the model's vocab_size is {}", i, vocab_size));
    }
    std::memcpy(&score, data.data() + at, 4);
    at += 4;
    read_i32(len);
    if (len < 0 || static_cast<std::size_t>(len) > data.size() - at) {
      return fail(fmt::format("token {} has length {}, beyond the end of the file", i, len));
    }
    pieces.emplace_back(data.data() + at, static_cast<std::size_t>(len));
    scores.push_back(score);
    at += static_cast<std::size_t>(len);
  }
  if (at != data.size()) {
    return fail(
        fmt::format("{} bytes remain after the model's {} tokens: tokenizer and model do "
                    "not belong together",
                    data.size() - at, vocab_size));
  }
  auto t = from_vocab(std::move(pieces), std::move(scores));
  if (!t) return fail(t.error());
  t->max_token_length_ = std::max(t->max_token_length_, static_cast<int>(max_len));
  return t;
}

int Tokenizer::lookup(std::string_view piece) const {
  const auto it = index_.find(piece);
  return it == index_.end() ? -1 : it->second;
}

std::vector<int> Tokenizer::encode(std::string_view text, bool bos, bool eos) const {
  std::vector<int> tok;
  tok.reserve(text.size() + 3);
  if (bos) tok.push_back(kBosToken);
  if (!text.empty()) tok.push_back(space_token_);
  split_code_points(
      text, [this](std::string_view s) { return lookup(s); }, tok);

  // Merges over a doubly linked list. Node i keeps its original index, so list order is index
  // order and "leftmost pair" is "smallest left index". A heap entry is a candidate merge of
  // (left, next[left]); it is stale once either node has changed, which the stored ids reveal.
  const int n = static_cast<int>(tok.size());
  std::vector<int> next(static_cast<std::size_t>(n)), prev(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    next[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
    prev[static_cast<std::size_t>(i)] = i - 1;
  }
  struct Candidate {
    float score;
    int left;
    int left_id;
    int right_id;
    int merged_id;
  };
  auto worse = [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score < b.score;  // higher score first
    return a.left > b.left;                            // then the leftmost
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
  std::string buf;
  auto consider = [&](int left) {
    if (left < 0) return;
    const int right = next[static_cast<std::size_t>(left)];
    if (right < 0) return;
    const int a = tok[static_cast<std::size_t>(left)];
    const int b = tok[static_cast<std::size_t>(right)];
    buf.assign(pieces_[static_cast<std::size_t>(a)]);
    buf.append(pieces_[static_cast<std::size_t>(b)]);
    const int id = lookup(buf);
    if (id < 0) return;
    const float s = scores_[static_cast<std::size_t>(id)];
    if (!(s > kMergeFloor)) return;
    heap.push(Candidate{s, left, a, b, id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const auto l = static_cast<std::size_t>(c.left);
    const int right = next[l];
    if (tok[l] != c.left_id || right < 0 || tok[static_cast<std::size_t>(right)] != c.right_id) {
      continue;  // stale: one side was merged into something else since
    }
    // Removed nodes are marked with token -1, so a stale entry naming them fails the test above.
    tok[l] = c.merged_id;
    tok[static_cast<std::size_t>(right)] = -1;
    next[l] = next[static_cast<std::size_t>(right)];
    if (next[l] >= 0) prev[static_cast<std::size_t>(next[l])] = c.left;
    consider(prev[l]);
    consider(c.left);
  }
  std::vector<int> out;
  out.reserve(tok.size() + 1);
  for (int i = n > 0 ? 0 : -1; i >= 0; i = next[static_cast<std::size_t>(i)]) {
    out.push_back(tok[static_cast<std::size_t>(i)]);
  }
  if (eos) out.push_back(kEosToken);
  return out;
}

std::string_view Tokenizer::decode(int prev, int token) const {
  if (token == kBosToken || token == kEosToken) return {};
  const auto t = static_cast<std::size_t>(token);
  if (byte_of_[t] >= 0) {
    // The piece of byte b, as a view into a table of all 256 bytes.
    static constexpr auto kBytes = [] {
      std::array<char, 256> a{};
      for (int i = 0; i < 256; ++i) a[static_cast<std::size_t>(i)] = static_cast<char>(i);
      return a;
    }();
    return std::string_view(&kBytes[static_cast<std::size_t>(byte_of_[t])], 1);
  }
  std::string_view piece = pieces_[t];
  if (prev == kBosToken && piece.starts_with(' ')) piece.remove_prefix(1);
  return piece;
}

std::string Tokenizer::decode_all(std::span<const int> tokens) const {
  std::string out;
  int prev = -1;
  for (const int t : tokens) {
    out.append(decode(prev, t));
    prev = t;
  }
  return out;
}

bool Tokenizer::save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const std::int32_t max_len = max_token_length_;
  out.write(reinterpret_cast<const char*>(&max_len), 4);
  for (std::size_t i = 0; i < pieces_.size(); ++i) {
    const std::int32_t len = static_cast<std::int32_t>(pieces_[i].size());
    out.write(reinterpret_cast<const char*>(&scores_[i]), 4);
    out.write(reinterpret_cast<const char*>(&len), 4);
    out.write(pieces_[i].data(), len);
  }
  out.close();
  return static_cast<bool>(out);
}

std::vector<int> reference_encode(const Tokenizer& t, std::string_view text, bool bos, bool eos) {
  std::vector<int> tokens;
  if (bos) tokens.push_back(kBosToken);
  auto lookup = [&t](std::string_view s) {
    for (int i = 0; i < t.vocab_size(); ++i) {
      if (t.piece(i) == s) return i;
    }
    return -1;
  };
  if (!text.empty()) tokens.push_back(lookup(" "));
  split_code_points(text, lookup, tokens);
  for (;;) {
    float best_score = kMergeFloor;
    int best_id = -1;
    int best_idx = -1;
    for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
      const int id = lookup(t.piece(tokens[i]) + t.piece(tokens[i + 1]));
      if (id != -1 && t.score(id) > best_score) {
        best_score = t.score(id);
        best_id = id;
        best_idx = static_cast<int>(i);
      }
    }
    if (best_idx == -1) break;
    tokens[static_cast<std::size_t>(best_idx)] = best_id;
    tokens.erase(tokens.begin() + best_idx + 1);
  }
  if (eos) tokens.push_back(kEosToken);
  return tokens;
}

}  // namespace drover::worker::tinyllm
