// Checkpoint: a llama2.c model file ("legacy" export, version 0), memory-mapped read-only.
//
// Layout (all little-endian, no padding):
//   header   7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//            (vocab_size < 0 means the classifier is stored separately, "unshared")
//   float32  token_embedding [vocab][dim]
//            rms_att [layers][dim]
//            wq [layers][dim][dim]          (rows: output features; head h = rows h*hs..)
//            wk [layers][kv_dim][dim]       kv_dim = dim * n_kv_heads / n_heads
//            wv [layers][kv_dim][dim]
//            wo [layers][dim][dim]
//            rms_ffn [layers][dim]
//            w1 [layers][hidden][dim], w2 [layers][dim][hidden], w3 [layers][hidden][dim]
//            rms_final [dim]
//            freq_cis_real, freq_cis_imag [seq_len][head_size/2] each (unused: RoPE is computed)
//            wcls [vocab][dim]              only when unshared; else wcls = token_embedding
// The file must be exactly this long: a short file is truncated, a long one is some other
// format, and both are refused with the expected and actual sizes.
//
// The mapping is MAP_SHARED and PROT_READ, so every worker that maps the same file shares the
// same page-cache pages: a second worker (or a reload) costs no I/O and no copy. Move-only; the
// weight pointers live as long as the Checkpoint. Immutable after open(): any thread may read.
#pragma once

#include <boost/system/result.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

namespace drover::worker::tinyllm {

struct ModelConfig {
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;  // always positive here; see shared_classifier
  int seq_len = 0;
  bool shared_classifier = true;

  int head_size() const { return dim / n_heads; }
  int kv_dim() const { return dim / n_heads * n_kv_heads; }
  // Number of float32 values after the header, for this config.
  std::uint64_t weight_floats() const;
  // Parameters of the network (the unused RoPE tables excluded).
  std::uint64_t parameter_count() const;
};

inline constexpr std::size_t kHeaderBytes = 7 * sizeof(std::int32_t);

// Checks a header's values (positive sizes, divisibility, limits). Returns an error message
// naming the field, or an empty string.
std::string validate_config(const ModelConfig& c);

// Pointers into the mapping. Per-layer tensors are stored consecutively: layer l of wq starts
// at wq + l * dim * dim, and so on.
struct Weights {
  const float* token_embedding = nullptr;
  const float* rms_att = nullptr;
  const float* wq = nullptr;
  const float* wk = nullptr;
  const float* wv = nullptr;
  const float* wo = nullptr;
  const float* rms_ffn = nullptr;
  const float* w1 = nullptr;
  const float* w2 = nullptr;
  const float* w3 = nullptr;
  const float* rms_final = nullptr;
  const float* wcls = nullptr;
};

class Checkpoint {
 public:
  // Maps `path`; the error names the file and what is wrong with it.
  static boost::system::result<Checkpoint, std::string> open(const std::string& path);

  Checkpoint(Checkpoint&& other) noexcept;
  Checkpoint& operator=(Checkpoint&& other) noexcept;
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;
  ~Checkpoint();

  const ModelConfig& config() const { return config_; }
  const Weights& weights() const { return weights_; }
  const std::string& path() const { return path_; }
  std::size_t file_bytes() const { return size_; }

  // Asks the kernel to read the whole file ahead (madvise WILLNEED); a hint, never fails.
  void prefetch() const;

 private:
  Checkpoint() = default;
  void reset() noexcept;

  std::string path_;
  void* map_ = nullptr;
  std::size_t size_ = 0;
  ModelConfig config_;
  Weights weights_;
};

}  // namespace drover::worker::tinyllm
