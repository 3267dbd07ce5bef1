// Checkpoint: a llama2.c model file, memory-mapped read-only. Two formats, told apart by the
// first four bytes (the model's file decides; nothing else selects the format):
//
// Version 0, llama2.c's "legacy" export: float32 weights. Layout (little-endian, no padding):
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
//
// Version 2, llama2.c's export.py --version 2 (what its runq.c reads): Q8_0 weights.
//   header   256 bytes: uint32 magic 0x616b3432 ("ak42"), int32 version 2, the 7 int32 above
//            (vocab_size positive), uint8 shared_classifier (0 or 1), int32 group_size (at byte
//            37, unaligned), zeros
//   float32  rms_att [layers][dim], rms_ffn [layers][dim], rms_final [dim]
//   then each matrix as int8 values followed by one float32 scale per group of group_size
//   consecutive values (value = q * scale; Q8_0: scale = max |w| / 127 over the group):
//            token_embedding, wq[l] for each layer, then wk[l], wv[l], wo[l], w1[l], w2[l],
//            w3[l] likewise, and wcls if not shared.
//   group_size must divide dim and hidden_dim, so every matrix row is whole groups.
//
// The file must be exactly as long as its header says: a short file is truncated, a long one
// is some other format, and both are refused with the expected and actual sizes.
//
// The mapping is MAP_SHARED and PROT_READ, so every worker that maps the same file shares the
// same page-cache pages: a second worker (or a reload) costs no I/O and no copy. Move-only; the
// weight pointers live as long as the Checkpoint. Immutable after open(): any thread may read.
#pragma once

#include <array>
#include <boost/system/result.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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
inline constexpr std::size_t kVersionedHeaderBytes = 256;
inline constexpr std::uint32_t kVersionedMagic = 0x616b3432;  // "ak42"

enum class WeightFormat { f32, q8_0 };

// One Q8_0 matrix in the mapping: int8 values, row-major, and one float32 scale per group. The
// scales may be unaligned (they follow an arbitrary number of int8 bytes): read them with
// memcpy.
struct Q8Tensor {
  const std::int8_t* q = nullptr;
  const std::byte* scales = nullptr;
};

// Checks a header's values (positive sizes, divisibility, limits). Returns an error message
// naming the field, or an empty string.
std::string validate_config(const ModelConfig& c);

// Pointers into the mapping. Per-layer tensors are stored consecutively: layer l of wq starts
// at wq + l * dim * dim, and so on. The RMSNorm gains are float32 in both formats; the
// matrices are the float pointers (f32) or the q8 tensors (q8_0: one per layer), and the
// other set is null/empty.
struct Weights {
  WeightFormat format = WeightFormat::f32;
  int group_size = 0;  // q8_0 only
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
  // q8_0 only.
  Q8Tensor q_token_embedding, q_wcls;  // q_wcls == q_token_embedding when shared
  std::vector<Q8Tensor> q_wq, q_wk, q_wv, q_wo, q_w1, q_w2, q_w3;
};

// The per-layer matrices in file order (both formats store wq, wk, wv, wo, w1, w2, w3, each
// for every layer in turn): where each lives in Weights, in either format, and its shape.
struct LayerMatrix {
  const float* Weights::*f32;
  std::vector<Q8Tensor> Weights::*q8;
  std::size_t rows, cols;
};
std::array<LayerMatrix, 7> layer_matrices(const ModelConfig& c);

// Q8_0 group-size rule: positive and a divisor of dim and hidden_dim. Returns an error message
// naming the values, or an empty string.
std::string validate_group_size(const ModelConfig& c, int group_size);

// Bytes after the 256-byte header of a version-2 file with this config and group size.
std::uint64_t q8_weight_bytes(const ModelConfig& c, int group_size);

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
  WeightFormat format() const { return weights_.format; }

  // Asks the kernel to read the whole file ahead (madvise WILLNEED); a hint, never fails.
  void prefetch() const;

 private:
  Checkpoint() = default;
  void reset() noexcept;
  // Header and layout of each format; an error message, or empty.
  std::string map_legacy();
  std::string map_versioned();

  std::string path_;
  void* map_ = nullptr;
  std::size_t size_ = 0;
  ModelConfig config_;
  Weights weights_;
};

// "f32", or "q8_0/G" with the group size G (init reply, logs).
std::string weights_name(const Checkpoint& cp);

}  // namespace drover::worker::tinyllm
