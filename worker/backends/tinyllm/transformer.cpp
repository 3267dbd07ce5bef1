#include "worker/backends/tinyllm/transformer.hpp"

#include <cassert>
#include <cmath>
#include <cstring>

namespace drover::worker::tinyllm {
namespace {

// Dot products and matrix-vector rows, compiled twice: for x86-64-v3 (AVX2 + FMA) and for the
// baseline, picked once at load time by the dynamic linker (GCC function multi-versioning), so
// one binary is fast on current servers and still runs on any x86-64.
// Not under TSan: the ifunc resolver runs during relocation, before the TSan runtime is up,
// and its instrumented code crashes there.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define DROVER_TINYLLM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DROVER_TINYLLM_CLONES
#endif

// Eight lanes, four accumulators: 32 products per iteration, reduced in a fixed order so a
// given build and CPU always gives the same bits. GCC vector extensions keep this portable.
typedef float Lanes __attribute__((vector_size(32)));

__attribute__((always_inline)) inline float dot(const float* a, const float* b, int n) {
  Lanes acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    Lanes a0, a1, a2, a3, b0, b1, b2, b3;
    std::memcpy(&a0, a + i, sizeof(Lanes));  // unaligned loads: weights start at byte 28
    std::memcpy(&a1, a + i + 8, sizeof(Lanes));
    std::memcpy(&a2, a + i + 16, sizeof(Lanes));
    std::memcpy(&a3, a + i + 24, sizeof(Lanes));
    std::memcpy(&b0, b + i, sizeof(Lanes));
    std::memcpy(&b1, b + i + 8, sizeof(Lanes));
    std::memcpy(&b2, b + i + 16, sizeof(Lanes));
    std::memcpy(&b3, b + i + 24, sizeof(Lanes));
    acc0 += a0 * b0;
    acc1 += a1 * b1;
    acc2 += a2 * b2;
    acc3 += a3 * b3;
  }
  for (; i + 8 <= n; i += 8) {
    Lanes a0, b0;
    std::memcpy(&a0, a + i, sizeof(Lanes));
    std::memcpy(&b0, b + i, sizeof(Lanes));
    acc0 += a0 * b0;
  }
  const Lanes acc = (acc0 + acc1) + (acc2 + acc3);
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// out[r] = W[r] . x for rows [begin, end) of a row-major (rows x n) matrix.
DROVER_TINYLLM_CLONES
void matvec(float* out, const float* w, const float* x, int n, int begin, int end) {
  for (int r = begin; r < end; ++r) out[r] = dot(w + static_cast<std::size_t>(r) * n, x, n);
}

// out[r] += W[r] . x (the residual connections after wo and w2).
DROVER_TINYLLM_CLONES
void matvec_add(float* out, const float* w, const float* x, int n, int begin, int end) {
  for (int r = begin; r < end; ++r) out[r] += dot(w + static_cast<std::size_t>(r) * n, x, n);
}

// hb[r] = silu(W1[r] . x) * (W3[r] . x): SwiGLU, in run.c's order of operations.
DROVER_TINYLLM_CLONES
void swiglu(float* hb, const float* w1, const float* w3, const float* x, int n, int begin,
            int end) {
  for (int r = begin; r < end; ++r) {
    const std::size_t off = static_cast<std::size_t>(r) * n;
    float a = dot(w1 + off, x, n);
    const float b = dot(w3 + off, x, n);
    a = a * (1.0f / (1.0f + std::exp(-a)));
    hb[r] = a * b;
  }
}

DROVER_TINYLLM_CLONES
float dot_product(const float* a, const float* b, int n) { return dot(a, b, n); }

void rmsnorm(float* out, const float* x, const float* weight, int size) {
  float ss = 0.0f;
  for (int j = 0; j < size; ++j) ss += x[j] * x[j];
  ss /= static_cast<float>(size);
  ss += 1e-5f;
  ss = 1.0f / std::sqrt(ss);
  for (int j = 0; j < size; ++j) out[j] = weight[j] * (ss * x[j]);
}

void softmax_in_place(float* x, int size) {
  float max_val = x[0];
  for (int i = 1; i < size; ++i) max_val = x[i] > max_val ? x[i] : max_val;
  float sum = 0.0f;
  for (int i = 0; i < size; ++i) {
    x[i] = std::exp(x[i] - max_val);
    sum += x[i];
  }
  for (int i = 0; i < size; ++i) x[i] /= sum;
}

}  // namespace

Transformer::Sequence::Sequence(const ModelConfig& c)
    : x_(static_cast<std::size_t>(c.dim)),
      xb_(static_cast<std::size_t>(c.dim)),
      hb_(static_cast<std::size_t>(c.hidden_dim)),
      q_(static_cast<std::size_t>(c.dim)),
      att_(static_cast<std::size_t>(c.n_heads) * static_cast<std::size_t>(c.seq_len)),
      logits_(static_cast<std::size_t>(c.vocab_size)) {
  const std::size_t cache = static_cast<std::size_t>(c.n_layers) *
                            static_cast<std::size_t>(c.seq_len) *
                            static_cast<std::size_t>(c.kv_dim());
  // new float[] without () leaves the pages untouched (and unallocated by the kernel) until
  // written; every read of the cache is of a position written earlier.
  key_cache_.reset(new float[cache]);
  value_cache_.reset(new float[cache]);
}

Transformer::Transformer(const Checkpoint& checkpoint, int threads)
    : config_(checkpoint.config()), w_(checkpoint.weights()), pool_(threads) {
  // RoPE rotations, computed exactly as run.c computes them per step (float powf/cosf/sinf),
  // once per (position, pair) instead of per step.
  const int hs = config_.head_size();
  const std::size_t half = static_cast<std::size_t>(hs / 2);
  rope_cos_.resize(static_cast<std::size_t>(config_.seq_len) * half);
  rope_sin_.resize(rope_cos_.size());
  for (int pos = 0; pos < config_.seq_len; ++pos) {
    for (int head_dim = 0; head_dim < hs; head_dim += 2) {
      const float freq =
          1.0f / std::pow(10000.0f, static_cast<float>(head_dim) / static_cast<float>(hs));
      const float val = static_cast<float>(pos) * freq;
      const std::size_t at =
          static_cast<std::size_t>(pos) * half + static_cast<std::size_t>(head_dim / 2);
      rope_cos_[at] = std::cos(val);
      rope_sin_[at] = std::sin(val);
    }
  }
}

std::span<float> Transformer::forward(Sequence& s, int token, int pos, bool want_logits) {
  assert(token >= 0 && token < config_.vocab_size);
  assert(pos == s.next_pos_ && pos < config_.seq_len);
  const ModelConfig& c = config_;
  const int dim = c.dim;
  const int kv_dim = c.kv_dim();
  const int kv_mul = c.n_heads / c.n_kv_heads;
  const int hidden = c.hidden_dim;
  const int hs = c.head_size();
  const std::size_t d = static_cast<std::size_t>(dim);
  const std::size_t kvd = static_cast<std::size_t>(kv_dim);
  const std::size_t hd = static_cast<std::size_t>(hidden);
  float* x = s.x_.data();
  float* xb = s.xb_.data();
  float* q = s.q_.data();
  float* hb = s.hb_.data();

  std::memcpy(x, w_.token_embedding + static_cast<std::size_t>(token) * d, d * sizeof(float));
  const float* rc =
      rope_cos_.data() + static_cast<std::size_t>(pos) * static_cast<std::size_t>(hs / 2);
  const float* rs =
      rope_sin_.data() + static_cast<std::size_t>(pos) * static_cast<std::size_t>(hs / 2);
  const float sqrt_hs = std::sqrt(static_cast<float>(hs));

  for (int l = 0; l < c.n_layers; ++l) {
    const std::size_t ul = static_cast<std::size_t>(l);
    rmsnorm(xb, x, w_.rms_att + ul * d, dim);

    // q, k, v in one parallel loop over the rows of [wq; wk; wv]; k and v go straight into the
    // cache at this position.
    const std::size_t loff = ul * static_cast<std::size_t>(c.seq_len) * kvd;
    float* k = s.key_cache_.get() + loff + static_cast<std::size_t>(pos) * kvd;
    float* v = s.value_cache_.get() + loff + static_cast<std::size_t>(pos) * kvd;
    const float* wq = w_.wq + ul * d * d;
    const float* wk = w_.wk + ul * kvd * d;
    const float* wv = w_.wv + ul * kvd * d;
    pool_.run(dim + 2 * kv_dim, [&](int begin, int end) {
      auto part = [&](float* out, const float* w, int lo, int hi, int base) {
        const int b = std::max(begin, lo), e = std::min(end, hi);
        if (b < e) matvec(out, w, xb, dim, b - base, e - base);
      };
      part(q, wq, 0, dim, 0);
      part(k, wk, dim, dim + kv_dim, dim);
      part(v, wv, dim + kv_dim, dim + 2 * kv_dim, dim + kv_dim);
    });

    // RoPE: rotate each (even, odd) pair of q and k by the angle of its position in the head.
    for (int i = 0; i < dim; i += 2) {
      const int pair = (i % hs) / 2;
      const float fcr = rc[pair];
      const float fci = rs[pair];
      const float q0 = q[i], q1 = q[i + 1];
      q[i] = q0 * fcr - q1 * fci;
      q[i + 1] = q0 * fci + q1 * fcr;
      if (i < kv_dim) {
        const float k0 = k[i], k1 = k[i + 1];
        k[i] = k0 * fcr - k1 * fci;
        k[i + 1] = k0 * fci + k1 * fcr;
      }
    }

    // Attention, one head per task; query heads h share key/value head h / kv_mul.
    const float* key_layer = s.key_cache_.get() + loff;
    const float* value_layer = s.value_cache_.get() + loff;
    pool_.run(c.n_heads, [&](int begin, int end) {
      for (int h = begin; h < end; ++h) {
        const float* qh = q + static_cast<std::size_t>(h) * static_cast<std::size_t>(hs);
        float* att =
            s.att_.data() + static_cast<std::size_t>(h) * static_cast<std::size_t>(c.seq_len);
        const std::size_t kv_off =
            static_cast<std::size_t>(h / kv_mul) * static_cast<std::size_t>(hs);
        for (int t = 0; t <= pos; ++t) {
          att[t] =
              dot_product(qh, key_layer + static_cast<std::size_t>(t) * kvd + kv_off, hs) / sqrt_hs;
        }
        softmax_in_place(att, pos + 1);
        float* out = xb + static_cast<std::size_t>(h) * static_cast<std::size_t>(hs);
        std::memset(out, 0, static_cast<std::size_t>(hs) * sizeof(float));
        for (int t = 0; t <= pos; ++t) {
          const float* vt = value_layer + static_cast<std::size_t>(t) * kvd + kv_off;
          const float a = att[t];
          for (int i = 0; i < hs; ++i) out[i] += a * vt[i];
        }
      }
    });

    // Output projection and residual: x += wo . xb.
    const float* wo = w_.wo + ul * d * d;
    pool_.run(dim, [&](int begin, int end) { matvec_add(x, wo, xb, dim, begin, end); });

    // Feed-forward: x += w2 . (silu(w1 . xb) * (w3 . xb)), xb = rmsnorm(x).
    rmsnorm(xb, x, w_.rms_ffn + ul * d, dim);
    const float* w1 = w_.w1 + ul * hd * d;
    const float* w3 = w_.w3 + ul * hd * d;
    pool_.run(hidden, [&](int begin, int end) { swiglu(hb, w1, w3, xb, dim, begin, end); });
    const float* w2 = w_.w2 + ul * d * hd;
    pool_.run(dim, [&](int begin, int end) { matvec_add(x, w2, hb, hidden, begin, end); });
  }
  s.next_pos_ = pos + 1;
  if (!want_logits) return {};

  rmsnorm(x, x, w_.rms_final, dim);
  float* logits = s.logits_.data();
  pool_.run(c.vocab_size, [&](int begin, int end) { matvec(logits, w_.wcls, x, dim, begin, end); });
  return s.logits_;
}

}  // namespace drover::worker::tinyllm
