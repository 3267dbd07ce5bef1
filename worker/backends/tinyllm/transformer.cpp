#include "worker/backends/tinyllm/transformer.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "worker/backends/tinyllm/q8.hpp"

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

// K dot products of one weight row w with K vectors x[0..K-1]: out[k] = w . x[k]. Each weight
// vector is loaded once and multiplied into the K outputs while in a register (on x86-64-v3
// an FMA with the x operand read from memory), so a batch costs fewer loads per product than
// K separate dots. Every out[k] is computed by exactly the operations of the K = 1 case, in
// the same order — lanes i mod 8 of four accumulators, the same reduction, the same scalar
// tail — so the result does not depend on K or on which other vectors share the call.
template <int K>
__attribute__((always_inline)) inline void dots(const float* w, const float* const* x, int n,
                                                float* out) {
  Lanes acc[K][4] = {};
  int i = 0;
  for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      Lanes wj;
      std::memcpy(&wj, w + i + 8 * j, sizeof(Lanes));  // unaligned: weights start at byte 28
#pragma GCC unroll 4
      for (int k = 0; k < K; ++k) {
        Lanes xj;
        std::memcpy(&xj, x[k] + i + 8 * j, sizeof(Lanes));
        acc[k][j] += wj * xj;
      }
    }
  }
  for (; i + 8 <= n; i += 8) {
    Lanes w0;
    std::memcpy(&w0, w + i, sizeof(Lanes));
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
      Lanes x0;
      std::memcpy(&x0, x[k] + i, sizeof(Lanes));
      acc[k][0] += w0 * x0;
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < K; ++k) {
    const Lanes a = (acc[k][0] + acc[k][1]) + (acc[k][2] + acc[k][3]);
    float sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (int t = i; t < n; ++t) sum += w[t] * x[k][t];
    out[k] = sum;
  }
}

__attribute__((always_inline)) inline float dot(const float* a, const float* b, int n) {
  float out;
  dots<1>(a, &b, n, &out);
  return out;
}

// Calls emit(b, w . x[b]) for every vector b < batch, three at a time (12 accumulators and a
// weight vector fit the 16 AVX2 registers), then the remainder.
template <typename Emit>
__attribute__((always_inline)) inline void row_times_batch(const float* w, const float* const* x,
                                                           int batch, int n, Emit&& emit) {
  float r[3];
  int b = 0;
  for (; b + 3 <= batch; b += 3) {
    dots<3>(w, x + b, n, r);
    emit(b, r[0]);
    emit(b + 1, r[1]);
    emit(b + 2, r[2]);
  }
  if (batch - b == 2) {
    dots<2>(w, x + b, n, r);
    emit(b, r[0]);
    emit(b + 1, r[1]);
  } else if (batch - b == 1) {
    dots<1>(w, x + b, n, r);
    emit(b, r[0]);
  }
}

// out[b][r] = W[r] . x[b] for rows [begin, end) of a row-major (rows x n) matrix and every
// activation vector b < batch. Row-outer: a weight row is read from memory once and stays in
// L1 while every vector multiplies it.
DROVER_TINYLLM_CLONES
void matmul(float* const* out, const float* w, const float* const* x, int batch, int n, int begin,
            int end) {
  for (int r = begin; r < end; ++r) {
    row_times_batch(w + static_cast<std::size_t>(r) * n, x, batch, n,
                    [&](int b, float v) { out[b][r] = v; });
  }
}

// out[b][r] += W[r] . x[b] (the residual connections after wo and w2).
DROVER_TINYLLM_CLONES
void matmul_add(float* const* out, const float* w, const float* const* x, int batch, int n,
                int begin, int end) {
  for (int r = begin; r < end; ++r) {
    row_times_batch(w + static_cast<std::size_t>(r) * n, x, batch, n,
                    [&](int b, float v) { out[b][r] += v; });
  }
}

// hb[b][r] = silu(W1[r] . x[b]) * (W3[r] . x[b]): SwiGLU, in run.c's order of operations.
// hb[b][r] holds W1[r] . x[b] until W3's row has been multiplied.
DROVER_TINYLLM_CLONES
void swiglu(float* const* hb, const float* w1, const float* w3, const float* const* x, int batch,
            int n, int begin, int end) {
  for (int r = begin; r < end; ++r) {
    const std::size_t off = static_cast<std::size_t>(r) * n;
    row_times_batch(w1 + off, x, batch, n, [&](int b, float v) { hb[b][r] = v; });
    row_times_batch(w3 + off, x, batch, n, [&](int b, float c) {
      float a = hb[b][r];
      a = a * (1.0f / (1.0f + std::exp(-a)));
      hb[b][r] = a * c;
    });
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

// A weight matrix (of one layer) in the checkpoint's format: float32 or Q8_0.
struct Matrix {
  const float* f = nullptr;
  Q8Tensor q;
};

Matrix layer_matrix(const float* f, std::size_t size, const std::vector<Q8Tensor>& q,
                    std::size_t l) {
  return {f != nullptr ? f + l * size : nullptr, q.empty() ? Q8Tensor{} : q[l]};
}

// The input rows of a matmul: float32 vectors, or (Q8_0 models) their quantization.
struct Operand {
  const float* const* f = nullptr;
  q8::Inputs q{nullptr, nullptr};
};

// out[b][r] (+)= W[r] . x[b] for rows [begin, end) and every input b < batch.
void project(float* const* out, const Matrix& w, const Operand& x, int batch, int n,
             int group_size, int begin, int end, bool add) {
  if (x.q.q != nullptr) {
    const q8::Kernels& k = q8::kernels();
    (add ? k.matmul_add : k.matmul)(out, w.q, x.q, batch, n, group_size, begin, end);
  } else if (add) {
    matmul_add(out, w.f, x.f, batch, n, begin, end);
  } else {
    matmul(out, w.f, x.f, batch, n, begin, end);
  }
}

}  // namespace

Transformer::Sequence::Sequence(const ModelConfig& c) {
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

void Transformer::reserve(std::size_t rows) {
  if (rows <= capacity_) return;
  const ModelConfig& c = config_;
  const auto d = static_cast<std::size_t>(c.dim);
  x_.resize(rows * d);
  xb_.resize(rows * d);
  q_.resize(rows * d);
  hb_.resize(rows * static_cast<std::size_t>(c.hidden_dim));
  att_.resize(rows * static_cast<std::size_t>(c.n_heads) * static_cast<std::size_t>(c.seq_len));
  logits_row_.resize(rows);
  if (w_.format == WeightFormat::q8_0) {
    const auto widest = static_cast<std::size_t>(std::max(c.dim, c.hidden_dim));
    xq_.resize(rows * widest);
    xs_.resize(rows * widest / static_cast<std::size_t>(w_.group_size));
    xq_row_.resize(rows);
    xs_row_.resize(rows);
  }
  capacity_ = rows;
}

std::span<float> Transformer::logits(std::size_t row) {
  assert(row < logits_row_.size());
  const std::ptrdiff_t at = logits_row_[row];
  if (at < 0) return {};
  const auto v = static_cast<std::size_t>(config_.vocab_size);
  return {logits_.data() + static_cast<std::size_t>(at) * v, v};
}

std::span<float> Transformer::forward(Sequence& seq, int token, int pos, bool want_logits) {
  const Row row{&seq, token, pos, want_logits};
  forward(std::span<const Row>(&row, 1));
  return logits(0);
}

void Transformer::forward(std::span<const Row> rows) {
  const ModelConfig& c = config_;
  const int batch = static_cast<int>(rows.size());
  const std::size_t nb = rows.size();
  const int dim = c.dim;
  const int kv_dim = c.kv_dim();
  const int kv_mul = c.n_heads / c.n_kv_heads;
  const int hidden = c.hidden_dim;
  const int hs = c.head_size();
  const std::size_t d = static_cast<std::size_t>(dim);
  const std::size_t kvd = static_cast<std::size_t>(kv_dim);
  const std::size_t hd = static_cast<std::size_t>(hidden);
  const std::size_t sl = static_cast<std::size_t>(c.seq_len);
  const std::size_t half = static_cast<std::size_t>(hs / 2);
  const float sqrt_hs = std::sqrt(static_cast<float>(hs));
  reserve(nb);
  logits_row_.assign(nb, -1);
  if (rows.empty()) return;

  const bool q8 = w_.format == WeightFormat::q8_0;
  const int gs = w_.group_size;
  // A matmul's input rows `in` (n values each) as its Operand: for Q8_0, quantized into xq_.
  auto operand = [&](const std::vector<const float*>& in, int n) {
    Operand op;
    op.f = in.data();
    if (!q8) return op;
    const auto widest = static_cast<std::size_t>(std::max(dim, hidden));
    for (std::size_t b = 0; b < in.size(); ++b) {
      std::int8_t* q = xq_.data() + b * widest;
      float* s = xs_.data() + b * widest / static_cast<std::size_t>(gs);
      q8::quantize(in[b], n, gs, q, s);
      xq_row_[b] = q;
      xs_row_[b] = s;
    }
    op.q = {xq_row_.data(), xs_row_.data()};
    return op;
  };

  // Row b's activation vectors, as the pointer arrays the matmuls take.
  std::vector<float*> x(nb), xb(nb), q(nb), hb(nb), k(nb), v(nb);
  std::vector<const float*> xb_in(nb), hb_in(nb);
  for (std::size_t b = 0; b < nb; ++b) {
    const Row& r = rows[b];
    assert(r.token >= 0 && r.token < c.vocab_size);
    assert(r.pos == r.seq->next_pos_ && r.pos < c.seq_len);
    r.seq->next_pos_ = r.pos + 1;  // the next row of this sequence, if any, is at pos + 1
    x[b] = x_.data() + b * d;
    xb[b] = xb_.data() + b * d;
    q[b] = q_.data() + b * d;
    hb[b] = hb_.data() + b * hd;
    xb_in[b] = xb[b];
    hb_in[b] = hb[b];
    const auto token = static_cast<std::size_t>(r.token);
    if (q8) {
      // runq.c's dequantize(), for this row only.
      const std::int8_t* qe = w_.q_token_embedding.q + token * d;
      const std::size_t groups = token * d / static_cast<std::size_t>(gs);
      for (std::size_t i = 0; i < d; ++i) {
        x[b][i] = static_cast<float>(qe[i]) *
                  q8::scale_at(w_.q_token_embedding.scales,
                               groups + i / static_cast<std::size_t>(gs));
      }
    } else {
      std::memcpy(x[b], w_.token_embedding + token * d, d * sizeof(float));
    }
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const std::size_t ul = static_cast<std::size_t>(l);
    for (std::size_t b = 0; b < nb; ++b) rmsnorm(xb[b], x[b], w_.rms_att + ul * d, dim);

    // q, k, v in one parallel loop over the rows of [wq; wk; wv]; k and v go straight into
    // each sequence's cache at the row's position.
    const std::size_t loff = ul * sl * kvd;
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t at = loff + static_cast<std::size_t>(rows[b].pos) * kvd;
      k[b] = rows[b].seq->key_cache_.get() + at;
      v[b] = rows[b].seq->value_cache_.get() + at;
    }
    const Matrix wq = layer_matrix(w_.wq, d * d, w_.q_wq, ul);
    const Matrix wk = layer_matrix(w_.wk, kvd * d, w_.q_wk, ul);
    const Matrix wv = layer_matrix(w_.wv, kvd * d, w_.q_wv, ul);
    const Operand att_in = operand(xb_in, dim);
    pool_.run(dim + 2 * kv_dim, [&](int begin, int end) {
      auto part = [&](float* const* out, const Matrix& w, int lo, int hi, int base) {
        const int b = std::max(begin, lo), e = std::min(end, hi);
        if (b < e) project(out, w, att_in, batch, dim, gs, b - base, e - base, false);
      };
      part(q.data(), wq, 0, dim, 0);
      part(k.data(), wk, dim, dim + kv_dim, dim);
      part(v.data(), wv, dim + kv_dim, dim + 2 * kv_dim, dim + kv_dim);
    });

    // RoPE: rotate each (even, odd) pair of q and k by the angle of its position in the head.
    for (std::size_t b = 0; b < nb; ++b) {
      const float* rc = rope_cos_.data() + static_cast<std::size_t>(rows[b].pos) * half;
      const float* rs = rope_sin_.data() + static_cast<std::size_t>(rows[b].pos) * half;
      float* qb = q[b];
      float* kb = k[b];
      for (int i = 0; i < dim; i += 2) {
        const int pair = (i % hs) / 2;
        const float fcr = rc[pair];
        const float fci = rs[pair];
        const float q0 = qb[i], q1 = qb[i + 1];
        qb[i] = q0 * fcr - q1 * fci;
        qb[i + 1] = q0 * fci + q1 * fcr;
        if (i < kv_dim) {
          const float k0 = kb[i], k1 = kb[i + 1];
          kb[i] = k0 * fcr - k1 * fci;
          kb[i + 1] = k0 * fci + k1 * fcr;
        }
      }
    }

    // Attention, one (row, head) per task; query heads h share key/value head h / kv_mul. A
    // row reads only positions <= its own, all written by now (earlier passes, or this pass's
    // earlier rows of the same sequence).
    pool_.run(batch * c.n_heads, [&](int begin, int end) {
      for (int task = begin; task < end; ++task) {
        const std::size_t b = static_cast<std::size_t>(task / c.n_heads);
        const int h = task % c.n_heads;
        const int pos = rows[b].pos;
        const float* key_layer = rows[b].seq->key_cache_.get() + loff;
        const float* value_layer = rows[b].seq->value_cache_.get() + loff;
        const float* qh = q[b] + static_cast<std::size_t>(h) * static_cast<std::size_t>(hs);
        float* att = att_.data() + (b * static_cast<std::size_t>(c.n_heads) +
                                    static_cast<std::size_t>(h)) * sl;
        const std::size_t kv_off =
            static_cast<std::size_t>(h / kv_mul) * static_cast<std::size_t>(hs);
        for (int t = 0; t <= pos; ++t) {
          att[t] =
              dot_product(qh, key_layer + static_cast<std::size_t>(t) * kvd + kv_off, hs) / sqrt_hs;
        }
        softmax_in_place(att, pos + 1);
        float* out = xb[b] + static_cast<std::size_t>(h) * static_cast<std::size_t>(hs);
        std::memset(out, 0, static_cast<std::size_t>(hs) * sizeof(float));
        for (int t = 0; t <= pos; ++t) {
          const float* vt = value_layer + static_cast<std::size_t>(t) * kvd + kv_off;
          const float a = att[t];
          for (int i = 0; i < hs; ++i) out[i] += a * vt[i];
        }
      }
    });

    // Output projection and residual: x += wo . xb.
    const Matrix wo = layer_matrix(w_.wo, d * d, w_.q_wo, ul);
    const Operand wo_in = operand(xb_in, dim);
    pool_.run(dim, [&](int begin, int end) {
      project(x.data(), wo, wo_in, batch, dim, gs, begin, end, true);
    });

    // Feed-forward: x += w2 . (silu(w1 . xb) * (w3 . xb)), xb = rmsnorm(x).
    for (std::size_t b = 0; b < nb; ++b) rmsnorm(xb[b], x[b], w_.rms_ffn + ul * d, dim);
    const Matrix w1 = layer_matrix(w_.w1, hd * d, w_.q_w1, ul);
    const Matrix w3 = layer_matrix(w_.w3, hd * d, w_.q_w3, ul);
    const Operand ffn_in = operand(xb_in, dim);
    pool_.run(hidden, [&](int begin, int end) {
      if (q8) {
        q8::kernels().swiglu(hb.data(), w1.q, w3.q, ffn_in.q, batch, dim, gs, begin, end);
      } else {
        swiglu(hb.data(), w1.f, w3.f, xb_in.data(), batch, dim, begin, end);
      }
    });
    const Matrix w2 = layer_matrix(w_.w2, d * hd, w_.q_w2, ul);
    const Operand w2_in = operand(hb_in, hidden);
    pool_.run(dim, [&](int begin, int end) {
      project(x.data(), w2, w2_in, batch, hidden, gs, begin, end, true);
    });
  }

  // The classifier, for the rows that want logits only.
  std::vector<float*> out;
  std::vector<const float*> in;
  for (std::size_t b = 0; b < nb; ++b) {
    if (!rows[b].want_logits) continue;
    logits_row_[b] = static_cast<std::ptrdiff_t>(out.size());
    rmsnorm(x[b], x[b], w_.rms_final, dim);
    in.push_back(x[b]);
    out.push_back(nullptr);
  }
  if (out.empty()) return;
  const auto vocab = static_cast<std::size_t>(c.vocab_size);
  if (logits_.size() < out.size() * vocab) logits_.resize(out.size() * vocab);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = logits_.data() + i * vocab;
  const Matrix wcls{w_.wcls, w_.q_wcls};
  const Operand cls_in = operand(in, dim);
  pool_.run(c.vocab_size, [&](int begin, int end) {
    project(out.data(), wcls, cls_in, static_cast<int>(out.size()), dim, gs, begin, end, false);
  });
}

}  // namespace drover::worker::tinyllm
