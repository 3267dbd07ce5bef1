#include "worker/tools/model_generator.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <vector>

namespace drover::worker::tinyllm {
namespace {

constexpr std::string_view kCorpus =
#include "worker/tools/corpus.inc"
    ;

constexpr int kPrintableFirst = 0x20;
constexpr int kPrintableLast = 0x7E;
constexpr int kBaseVocab = kFirstByteToken + 256 + (kPrintableLast - kPrintableFirst + 1);  // 354

// splitmix64: tiny, fast, and the same sequence everywhere.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in (-a, a), from 24 random bits (exactly representable steps).
  float uniform(float a) {
    const double u = (static_cast<double>(next() >> 40) + 0.5) / 16777216.0;
    return static_cast<float>((2.0 * u - 1.0) * a);
  }

 private:
  std::uint64_t state_;
};

// Streams float32 values to a file through a buffer.
class FloatWriter {
 public:
  explicit FloatWriter(std::FILE* f) : f_(f) { buf_.reserve(1 << 16); }
  void put(float v) {
    buf_.push_back(v);
    if (buf_.size() == buf_.capacity()) flush();
  }
  bool flush() {
    if (!buf_.empty() && std::fwrite(buf_.data(), sizeof(float), buf_.size(), f_) != buf_.size())
      ok_ = false;
    buf_.clear();
    return ok_;
  }

 private:
  std::FILE* f_;
  std::vector<float> buf_;
  bool ok_ = true;
};

// The embedding and classifier of a bigram model of the built-in text (ModelSpec::bigram).
// Each token that occurs in the text as a predecessor gets its own axis of the embedding (a
// one-hot row); every other token shares one "generic" axis. The classifier row of token n
// holds, on the axis of predecessor p, kBigramBias + log P(n | p) for pairs seen in the text
// (0 for unseen pairs), and on the generic axis the same from unigram frequencies. RMSNorm
// multiplies a one-hot row by sqrt(dim), so the rows are divided by sqrt(dim) and the logits
// come out as those scores: seen continuations lead unseen ones by kBigramBias - |log P|.
struct BigramTables {
  std::vector<float> embedding;   // [vocab][dim]
  std::vector<float> classifier;  // [vocab][dim]
};

constexpr double kBigramBias = 12.0;

BigramTables bigram_tables(const ModelConfig& c, const Tokenizer& tok) {
  std::string text(kCorpus);
  for (char& ch : text) {
    if (ch == '\n') ch = ' ';
  }
  const std::vector<int> ids = tok.encode(text, false, false);
  const std::size_t v = static_cast<std::size_t>(c.vocab_size);
  const std::size_t d = static_cast<std::size_t>(c.dim);
  std::map<int, std::map<int, int>> pairs;
  std::map<int, int> unigram;
  for (std::size_t i = 0; i + 1 < ids.size(); ++i) ++pairs[ids[i]][ids[i + 1]];
  for (const int id : ids) ++unigram[id];
  // Axes: 0 is generic; predecessors by decreasing count get 1.., as long as axes last.
  std::vector<std::pair<int, int>> by_count;  // (-count, token)
  for (const auto& [p, next] : pairs) {
    int n = 0;
    for (const auto& [t, k] : next) n += k;
    by_count.emplace_back(-n, p);
  }
  std::sort(by_count.begin(), by_count.end());
  std::vector<int> axis(v, 0);
  for (std::size_t i = 0; i < by_count.size() && i + 1 < d; ++i) {
    axis[static_cast<std::size_t>(by_count[i].second)] = static_cast<int>(i) + 1;
  }
  BigramTables t;
  t.embedding.assign(v * d, 0.0f);
  t.classifier.assign(v * d, 0.0f);
  for (std::size_t tok_id = 0; tok_id < v; ++tok_id)
    t.embedding[tok_id * d + static_cast<std::size_t>(axis[tok_id])] = 1.0f;
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
  auto put = [&](const std::map<int, int>& next, std::size_t ax) {
    int total = 0;
    for (const auto& [n, k] : next) total += k;
    for (const auto& [n, k] : next) {
      const double score = kBigramBias + std::log(static_cast<double>(k) / total);
      t.classifier[static_cast<std::size_t>(n) * d + ax] = static_cast<float>(score * scale);
    }
  };
  put(unigram, 0);
  for (const auto& [p, next] : pairs) {
    if (axis[static_cast<std::size_t>(p)] != 0)
      put(next, static_cast<std::size_t>(axis[static_cast<std::size_t>(p)]));
  }
  return t;
}

}  // namespace

bool preset_spec(std::string_view name, ModelSpec& out) {
  ModelSpec s;
  ModelConfig& c = s.config;
  if (name == "shipped") {
    // ~3.2 M parameters, 13 MB: big enough that the matmuls dominate a forward pass (as in real
    // models), small enough to generate in a second and run at hundreds of tokens/s on a core.
    c = ModelConfig{256, 704, 4, 8, 4, 512, 512, false};
    s.seed = 20240501;
    s.bigram = true;
  } else if (name == "tiny") {
    // dim 48 = one 32-wide vector step + two 8-wide steps; 6 heads share 2 kv heads.
    c = ModelConfig{48, 72, 2, 6, 2, 384, 32, true};
    s.seed = 7;
  } else if (name == "tiny-unshared") {
    // dim 36 leaves a scalar tail; 3 heads share 1 kv head (multi-query); own classifier.
    c = ModelConfig{36, 52, 2, 3, 1, 360, 24, false};
    s.seed = 11;
  } else {
    return false;
  }
  out = s;
  return true;
}

boost::system::result<Tokenizer, std::string> build_tokenizer(int vocab_size) {
  using R = boost::system::result<Tokenizer, std::string>;
  if (vocab_size < kBaseVocab) {
    return R(
        boost::system::in_place_error,
        fmt::format("vocab_size {} is below the {} base tokens (specials, 256 bytes, printable "
                    "ASCII)",
                    vocab_size, kBaseVocab));
  }
  std::vector<std::string> pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};
  std::vector<float> scores = {0.0f, 0.0f, 0.0f};
  for (int b = 0; b < 256; ++b) {
    pieces.push_back(fmt::format("<0x{:02X}>", b));
    scores.push_back(0.0f);
  }
  std::map<std::string, int> ids;
  for (int ch = kPrintableFirst; ch <= kPrintableLast; ++ch) {
    ids.emplace(std::string(1, static_cast<char>(ch)), static_cast<int>(pieces.size()));
    pieces.emplace_back(1, static_cast<char>(ch));
    // Single characters are never the result of a merge; their scores only need to be below
    // every merge's.
    scores.push_back(-1e6f - static_cast<float>(ch));
  }

  // Words with their leading space, as sentencepiece sees them, and their counts.
  std::map<std::string, int> word_counts;
  {
    std::size_t i = 0;
    while (i < kCorpus.size()) {
      while (i < kCorpus.size() && std::isspace(static_cast<unsigned char>(kCorpus[i]))) ++i;
      std::size_t j = i;
      while (j < kCorpus.size() && !std::isspace(static_cast<unsigned char>(kCorpus[j]))) ++j;
      if (j > i) ++word_counts[" " + std::string(kCorpus.substr(i, j - i))];
      i = j;
    }
  }
  struct Word {
    std::vector<int> tokens;
    int count;
  };
  std::vector<Word> words;
  for (const auto& [w, n] : word_counts) {
    Word word{{}, n};
    for (char ch : w) word.tokens.push_back(ids.at(std::string(1, ch)));
    words.push_back(std::move(word));
  }

  int merges = 0;
  while (static_cast<int>(pieces.size()) < vocab_size) {
    std::map<std::pair<int, int>, int> pair_counts;
    for (const auto& w : words) {
      for (std::size_t i = 0; i + 1 < w.tokens.size(); ++i)
        pair_counts[{w.tokens[i], w.tokens[i + 1]}] += w.count;
    }
    // The most frequent pair; ties go to the smaller merged string, then the smaller ids.
    const std::pair<int, int>* best = nullptr;
    int best_count = 1;  // a merge must be seen at least twice
    std::string best_str;
    for (const auto& [pair, n] : pair_counts) {
      std::string s = pieces[static_cast<std::size_t>(pair.first)] +
                      pieces[static_cast<std::size_t>(pair.second)];
      if (n > best_count || (n == best_count && best != nullptr && s < best_str)) {
        best = &pair;
        best_count = n;
        best_str = std::move(s);
      }
    }
    if (best == nullptr) break;
    const auto [a, b] = *best;
    int merged;
    if (const auto it = ids.find(best_str); it != ids.end()) {
      merged = it->second;  // the same string reached through another split
    } else {
      merged = static_cast<int>(pieces.size());
      ids.emplace(best_str, merged);
      pieces.push_back(best_str);
      scores.push_back(-static_cast<float>(merges++));
    }
    for (auto& w : words) {
      std::vector<int> next;
      next.reserve(w.tokens.size());
      for (std::size_t i = 0; i < w.tokens.size(); ++i) {
        if (i + 1 < w.tokens.size() && w.tokens[i] == a && w.tokens[i + 1] == b) {
          next.push_back(merged);
          ++i;
        } else {
          next.push_back(w.tokens[i]);
        }
      }
      w.tokens = std::move(next);
    }
  }
  // The text ran out of pairs seen twice: fill the rest with unreachable placeholder pieces so
  // the vocabulary has the requested size.
  for (int k = 0; static_cast<int>(pieces.size()) < vocab_size; ++k) {
    pieces.push_back(fmt::format("<unused{}>", k));
    scores.push_back(-1e9f);
  }
  return Tokenizer::from_vocab(std::move(pieces), std::move(scores));
}

std::string write_model(const ModelSpec& spec, const std::string& model_path,
                        const std::string& tokenizer_path) {
  const ModelConfig& c = spec.config;
  if (auto msg = validate_config(c); !msg.empty()) return "invalid model spec: " + msg;
  if (spec.bigram && c.shared_classifier)
    return "invalid model spec: bigram needs an unshared classifier";
  auto tokenizer = build_tokenizer(c.vocab_size);
  if (!tokenizer) return tokenizer.error();
  // Both files are written under temporary names and renamed into place: a worker that has the
  // old model mapped keeps its (unlinked) file intact instead of faulting on a truncated one.
  const std::string suffix = fmt::format(".tmp.{}", ::getpid());
  const std::string tokenizer_tmp = tokenizer_path + suffix;
  if (!tokenizer->save(tokenizer_tmp) ||
      std::rename(tokenizer_tmp.c_str(), tokenizer_path.c_str()) != 0) {
    std::remove(tokenizer_tmp.c_str());
    return fmt::format("cannot write {}", tokenizer_path);
  }
  const std::string model_tmp = model_path + suffix;
  auto fail = [&model_tmp, &model_path] {
    std::remove(model_tmp.c_str());
    return fmt::format("cannot write {}", model_path);
  };
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(model_tmp.c_str(), "wb"),
                                                       &std::fclose);
  if (!file) return fail();
  const std::int32_t header[7] = {c.dim,        c.hidden_dim,
                                  c.n_layers,   c.n_heads,
                                  c.n_kv_heads, c.shared_classifier ? c.vocab_size : -c.vocab_size,
                                  c.seq_len};
  if (std::fwrite(header, sizeof(header), 1, file.get()) != 1) return fail();

  SplitMix64 rng(spec.seed);
  FloatWriter out(file.get());
  const std::uint64_t d = static_cast<std::uint64_t>(c.dim);
  const std::uint64_t h = static_cast<std::uint64_t>(c.hidden_dim);
  const std::uint64_t l = static_cast<std::uint64_t>(c.n_layers);
  const std::uint64_t v = static_cast<std::uint64_t>(c.vocab_size);
  const std::uint64_t kv = static_cast<std::uint64_t>(c.kv_dim());
  // Uniform(-a, a) has standard deviation a / sqrt(3).
  auto tensor = [&](std::uint64_t count, float stddev) {
    const float a = stddev * std::sqrt(3.0f);
    for (std::uint64_t i = 0; i < count; ++i) out.put(rng.uniform(a));
  };
  auto gains = [&](std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) out.put(1.0f + rng.uniform(0.1f));
  };
  const float in_dim = 1.0f / std::sqrt(static_cast<float>(c.dim));
  const float in_hidden = 1.0f / std::sqrt(static_cast<float>(c.hidden_dim));
  // Residual branches scaled down by sqrt(2 * layers), as in GPT-2's initialisation, so the
  // residual stream stays of order one through the layers.
  const float branch = 1.0f / std::sqrt(2.0f * static_cast<float>(c.n_layers));
  // Embeddings (and a shared classifier) scaled so logits spread over a few units: sampling
  // at temperature 1 is neither uniform nor greedy.
  const float embed = 2.0f * in_dim;
  BigramTables bigram;
  float quiet = 1.0f;
  if (spec.bigram) {
    bigram = bigram_tables(c, *tokenizer);
    // Residual branches ~1% of the embedding, so the bigram scores reach the classifier nearly
    // untouched while every layer still runs on real, non-zero weights.
    quiet = 0.01f;
  }
  auto table = [&](const std::vector<float>& values) {
    for (const float x : values) out.put(x);
  };
  if (spec.bigram) {
    table(bigram.embedding);
  } else {
    tensor(v * d, embed);  // token embedding
  }
  gains(l * d);                                   // rms_att
  tensor(l * d * d, in_dim);                      // wq
  tensor(l * kv * d, in_dim);                     // wk
  tensor(l * kv * d, in_dim);                     // wv
  tensor(l * d * d, in_dim * branch * quiet);     // wo
  gains(l * d);                                   // rms_ffn
  tensor(l * h * d, in_dim);                      // w1
  tensor(l * d * h, in_hidden * branch * quiet);  // w2
  tensor(l * h * d, in_dim);                      // w3
  if (spec.bigram) {
    for (std::uint64_t i = 0; i < d; ++i) out.put(1.0f);  // rms_final: keep the scores as they are
  } else {
    gains(d);  // rms_final
  }
  // freq_cis_real and freq_cis_imag, as llama2.c's legacy export writes them.
  const int hs = c.head_size();
  for (int part = 0; part < 2; ++part) {
    for (int pos = 0; pos < c.seq_len; ++pos) {
      for (int i = 0; i < hs / 2; ++i) {
        const double freq = 1.0 / std::pow(10000.0, 2.0 * i / hs);
        const double angle = pos * freq;
        out.put(static_cast<float>(part == 0 ? std::cos(angle) : std::sin(angle)));
      }
    }
  }
  if (spec.bigram) {
    table(bigram.classifier);  // wcls
  } else if (!c.shared_classifier) {
    tensor(v * d, embed);  // wcls
  }
  if (!out.flush() || std::fclose(file.release()) != 0) return fail();
  if (std::rename(model_tmp.c_str(), model_path.c_str()) != 0) return fail();
  return {};
}

}  // namespace drover::worker::tinyllm
