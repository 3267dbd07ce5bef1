#include "worker/backends/tinyllm/checkpoint.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>

namespace drover::worker::tinyllm {

// The file format is little-endian float32/int32 and is mapped as it is.
static_assert(std::endian::native == std::endian::little, "tinyllm reads little-endian files");
static_assert(sizeof(float) == 4);

namespace {

// Upper bounds that keep every size computation far from overflow and reject garbage headers
// early; the largest llama2.c checkpoints (Llama 2 7B: dim 4096, hidden 11008, 32 layers,
// vocab 32000, seq 2048) are well inside them.
constexpr int kMaxDim = 1 << 16;
constexpr int kMaxHidden = 1 << 18;
constexpr int kMaxLayers = 1 << 10;
constexpr int kMaxVocab = 1 << 22;
constexpr int kMaxSeqLen = 1 << 20;

}  // namespace

std::uint64_t ModelConfig::weight_floats() const {
  const std::uint64_t d = static_cast<std::uint64_t>(dim);
  const std::uint64_t h = static_cast<std::uint64_t>(hidden_dim);
  const std::uint64_t l = static_cast<std::uint64_t>(n_layers);
  const std::uint64_t v = static_cast<std::uint64_t>(vocab_size);
  const std::uint64_t kv = static_cast<std::uint64_t>(kv_dim());
  const std::uint64_t hs = static_cast<std::uint64_t>(head_size());
  std::uint64_t n = v * d;                        // token embedding
  n += l * d;                                     // rms_att
  n += l * d * d + 2 * l * kv * d + l * d * d;    // wq, wk, wv, wo
  n += l * d;                                     // rms_ffn
  n += 3 * l * d * h;                             // w1, w2, w3
  n += d;                                         // rms_final
  n += static_cast<std::uint64_t>(seq_len) * hs;  // freq_cis_real + freq_cis_imag
  if (!shared_classifier) n += v * d;
  return n;
}

std::uint64_t ModelConfig::parameter_count() const {
  return weight_floats() -
         static_cast<std::uint64_t>(seq_len) * static_cast<std::uint64_t>(head_size());
}

std::string validate_config(const ModelConfig& c) {
  auto range = [](const char* name, int value, int lo, int hi) -> std::string {
    if (value < lo || value > hi)
      return fmt::format("{} = {} is outside [{}, {}]", name, value, lo, hi);
    return {};
  };
  for (auto msg :
       {range("dim", c.dim, 2, kMaxDim), range("hidden_dim", c.hidden_dim, 1, kMaxHidden),
        range("n_layers", c.n_layers, 1, kMaxLayers), range("n_heads", c.n_heads, 1, c.dim),
        range("n_kv_heads", c.n_kv_heads, 1, c.n_heads),
        range("|vocab_size|", c.vocab_size, 1, kMaxVocab),
        range("seq_len", c.seq_len, 1, kMaxSeqLen)}) {
    if (!msg.empty()) return msg;
  }
  if (c.dim % c.n_heads != 0) {
    return fmt::format("dim = {} is not a multiple of n_heads = {}", c.dim, c.n_heads);
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    return fmt::format("n_heads = {} is not a multiple of n_kv_heads = {}", c.n_heads,
                       c.n_kv_heads);
  }
  if (c.head_size() % 2 != 0) {
    return fmt::format("head size dim / n_heads = {} must be even for RoPE", c.head_size());
  }
  return {};
}

std::array<LayerMatrix, 7> layer_matrices(const ModelConfig& c) {
  const auto d = static_cast<std::size_t>(c.dim);
  const auto h = static_cast<std::size_t>(c.hidden_dim);
  const auto kv = static_cast<std::size_t>(c.kv_dim());
  return {{{&Weights::wq, &Weights::q_wq, d, d},
           {&Weights::wk, &Weights::q_wk, kv, d},
           {&Weights::wv, &Weights::q_wv, kv, d},
           {&Weights::wo, &Weights::q_wo, d, d},
           {&Weights::w1, &Weights::q_w1, h, d},
           {&Weights::w2, &Weights::q_w2, d, h},
           {&Weights::w3, &Weights::q_w3, h, d}}};
}

std::string validate_group_size(const ModelConfig& c, int group_size) {
  if (group_size <= 0 || c.dim % group_size != 0 || c.hidden_dim % group_size != 0) {
    return fmt::format(
        "group_size = {} must be positive and divide dim = {} and hidden_dim = {} (every matrix "
        "row is whole groups)",
        group_size, c.dim, c.hidden_dim);
  }
  return {};
}

std::uint64_t q8_weight_bytes(const ModelConfig& c, int group_size) {
  const std::uint64_t d = static_cast<std::uint64_t>(c.dim);
  const std::uint64_t h = static_cast<std::uint64_t>(c.hidden_dim);
  const std::uint64_t l = static_cast<std::uint64_t>(c.n_layers);
  const std::uint64_t v = static_cast<std::uint64_t>(c.vocab_size);
  const std::uint64_t kv = static_cast<std::uint64_t>(c.kv_dim());
  std::uint64_t values = v * d + l * (2 * d * d + 2 * kv * d + 3 * d * h);
  if (!c.shared_classifier) values += v * d;
  const std::uint64_t scales = values / static_cast<std::uint64_t>(group_size);
  return (2 * l * d + d) * sizeof(float) + values + scales * sizeof(float);
}

namespace {

// The 7 int32 sizes both headers share; vocab_size as stored (the legacy format signs it).
ModelConfig read_sizes(const void* at) {
  std::int32_t h[7];
  std::memcpy(h, at, sizeof(h));
  ModelConfig c;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.vocab_size = h[5];
  c.seq_len = h[6];
  return c;
}

// `format` names the format the header claims; `extra` adds header fields of that format.
std::string size_mismatch(std::size_t size, const ModelConfig& c, std::uint64_t expected,
                          std::string_view format, std::string_view extra) {
  return fmt::format(
      "size {} bytes does not match its header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, "
      "n_kv_heads {}, vocab_size {}{}, seq_len {}{}), which needs {} bytes{}",
      size, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
      c.shared_classifier ? "" : " unshared", c.seq_len, extra, expected,
      size < expected ? " (truncated?)" : fmt::format(" (not the {}?)", format));
}

}  // namespace

boost::system::result<Checkpoint, std::string> Checkpoint::open(const std::string& path) {
  using R = boost::system::result<Checkpoint, std::string>;
  auto fail = [&path](std::string what) {
    return R(boost::system::in_place_error, fmt::format("model {}: {}", path, what));
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(fmt::format("cannot open: {}", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return fail(fmt::format("cannot stat: {}", std::strerror(err)));
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size < kHeaderBytes) {
    ::close(fd);
    return fail(
        fmt::format("{} bytes is shorter than the {}-byte llama2.c header", size, kHeaderBytes));
  }
  // MAP_SHARED + PROT_READ: pages come straight from the page cache and are shared by every
  // process mapping this file; nothing is copied and nothing can be written through them.
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file referenced
  if (map == MAP_FAILED) return fail(fmt::format("mmap failed: {}", std::strerror(map_err)));

  Checkpoint cp;
  cp.path_ = path;
  cp.map_ = map;
  cp.size_ = size;
  std::uint32_t magic = 0;
  std::memcpy(&magic, map, sizeof(magic));
  auto err = magic == kVersionedMagic ? cp.map_versioned() : cp.map_legacy();
  if (!err.empty()) return fail(std::move(err));
  return cp;
}

std::string Checkpoint::map_legacy() {
  config_ = read_sizes(map_);
  ModelConfig& c = config_;
  c.shared_classifier = c.vocab_size > 0;
  c.vocab_size = c.vocab_size == INT32_MIN ? 0 : std::abs(c.vocab_size);
  if (auto msg = validate_config(c); !msg.empty()) {
    return fmt::format(
        "not a llama2.c checkpoint: neither the magic 'ak42' of a versioned export nor a legacy "
        "header: {}",
        msg);
  }
  const std::uint64_t expected = kHeaderBytes + c.weight_floats() * sizeof(float);
  if (expected != size_) return size_mismatch(size_, c, expected, "llama2.c legacy format", "");

  const float* p = reinterpret_cast<const float*>(static_cast<const char*>(map_) + kHeaderBytes);
  const std::size_t d = static_cast<std::size_t>(c.dim);
  const std::size_t h = static_cast<std::size_t>(c.hidden_dim);
  const std::size_t l = static_cast<std::size_t>(c.n_layers);
  const std::size_t kv = static_cast<std::size_t>(c.kv_dim());
  const std::size_t v = static_cast<std::size_t>(c.vocab_size);
  Weights& w = weights_;
  w.token_embedding = p;
  p += v * d;
  w.rms_att = p;
  p += l * d;
  w.wq = p;
  p += l * d * d;
  w.wk = p;
  p += l * kv * d;
  w.wv = p;
  p += l * kv * d;
  w.wo = p;
  p += l * d * d;
  w.rms_ffn = p;
  p += l * d;
  w.w1 = p;
  p += l * h * d;
  w.w2 = p;
  p += l * d * h;
  w.w3 = p;
  p += l * h * d;
  w.rms_final = p;
  p += d;
  p += static_cast<std::size_t>(c.seq_len) * static_cast<std::size_t>(c.head_size());  // freq_cis
  w.wcls = c.shared_classifier ? w.token_embedding : p;
  return {};
}

std::string Checkpoint::map_versioned() {
  if (size_ < kVersionedHeaderBytes) {
    return fmt::format("{} bytes is shorter than the {}-byte header of a versioned llama2.c export",
                       size_, kVersionedHeaderBytes);
  }
  const auto* base = static_cast<const std::byte*>(map_);
  std::int32_t version = 0;
  std::memcpy(&version, base + 4, sizeof(version));
  if (version != 2) {
    return fmt::format(
        "llama2.c export version {} is not supported (tinyllm reads version 0, the legacy "
        "float32 export, and version 2, Q8_0)",
        version);
  }
  config_ = read_sizes(base + 8);
  ModelConfig& c = config_;
  const auto shared = static_cast<std::uint8_t>(base[36]);
  std::int32_t group_size = 0;
  std::memcpy(&group_size, base + 37, sizeof(group_size));
  if (auto msg = validate_config(c); !msg.empty()) return "version 2 header: " + msg;
  if (shared > 1) {
    return fmt::format("version 2 header: shared_classifier = {} is not 0 or 1", shared);
  }
  c.shared_classifier = shared == 1;
  if (auto msg = validate_group_size(c, group_size); !msg.empty()) {
    return "version 2 header: " + msg;
  }
  const std::uint64_t expected = kVersionedHeaderBytes + q8_weight_bytes(c, group_size);
  if (expected != size_) {
    return size_mismatch(size_, c, expected, "llama2.c version 2 format",
                         fmt::format(", Q8_0 group_size {}", group_size));
  }

  Weights& w = weights_;
  w.format = WeightFormat::q8_0;
  w.group_size = group_size;
  const std::size_t d = static_cast<std::size_t>(c.dim);
  const std::size_t l = static_cast<std::size_t>(c.n_layers);
  const auto* f = reinterpret_cast<const float*>(base + kVersionedHeaderBytes);
  w.rms_att = f;
  w.rms_ffn = f + l * d;
  w.rms_final = f + 2 * l * d;
  const std::byte* p = reinterpret_cast<const std::byte*>(f + 2 * l * d + d);
  auto next = [&p, group_size](std::size_t rows, std::size_t cols) {
    Q8Tensor t{reinterpret_cast<const std::int8_t*>(p), p + rows * cols};
    p += rows * cols + rows * cols / static_cast<std::size_t>(group_size) * sizeof(float);
    return t;
  };
  const std::size_t v = static_cast<std::size_t>(c.vocab_size);
  w.q_token_embedding = next(v, d);
  for (const LayerMatrix& m : layer_matrices(c)) {
    for (std::size_t i = 0; i < l; ++i) (w.*m.q8).push_back(next(m.rows, m.cols));
  }
  w.q_wcls = c.shared_classifier ? w.q_token_embedding : next(v, d);
  return {};
}

Checkpoint::Checkpoint(Checkpoint&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      config_(other.config_),
      weights_(std::exchange(other.weights_, Weights{})) {}

Checkpoint& Checkpoint::operator=(Checkpoint&& other) noexcept {
  if (this != &other) {
    reset();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    size_ = std::exchange(other.size_, 0);
    config_ = other.config_;
    weights_ = std::exchange(other.weights_, Weights{});
  }
  return *this;
}

Checkpoint::~Checkpoint() { reset(); }

void Checkpoint::reset() noexcept {
  if (map_ != nullptr) ::munmap(map_, size_);
  map_ = nullptr;
  size_ = 0;
}

void Checkpoint::prefetch() const {
  if (map_ != nullptr) ::madvise(map_, size_, MADV_WILLNEED);
}

std::string weights_name(const Checkpoint& cp) {
  if (cp.format() == WeightFormat::f32) return "f32";
  return fmt::format("q8_0/{}", cp.weights().group_size);
}

}  // namespace drover::worker::tinyllm
