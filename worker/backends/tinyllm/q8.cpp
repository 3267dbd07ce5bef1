#include "worker/backends/tinyllm/q8.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DROVER_Q8_AVX2 1
#endif

namespace drover::worker::tinyllm::q8 {

void quantize(const float* x, int n, int group_size, std::int8_t* q, float* scales) {
  for (int g = 0; g * group_size < n; ++g) {
    const float* xg = x + g * group_size;
    std::int8_t* qg = q + g * group_size;
    float max_abs = 0.0f;
    for (int i = 0; i < group_size; ++i) max_abs = std::max(max_abs, std::fabs(xg[i]));
    const float scale = max_abs / 127.0f;
    scales[g] = scale;
    for (int i = 0; i < group_size; ++i) {
      // |xg[i] / scale| <= 127: the cast cannot overflow.
      qg[i] = scale == 0.0f ? 0 : static_cast<std::int8_t>(std::round(xg[i] / scale));
    }
  }
}

namespace {

// Eight float accumulators summed in a fixed tree: both kernels end every dot product so.
inline float sum_lanes(const float* a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

namespace portable {

// The lane layout of the AVX2 kernel, in plain C++ (see q8.hpp).
template <int K, int kGroup>
inline void dots(const std::int8_t* w, const std::byte* ws, const std::int8_t* const* xq,
                 const float* const* xs, int n, int group_size, float* out) {
  const int gs = kGroup != 0 ? kGroup : group_size;
  float acc[K][8] = {};
  for (int g = 0; g * gs < n; ++g) {
    const int base = g * gs;
    std::int32_t lanes[K][8] = {};
    int i = 0;
    for (; i + 32 <= gs; i += 32) {
      for (int k = 0; k < K; ++k) {
        for (int j = 0; j < 32; ++j) {
          lanes[k][j / 4] += std::int32_t{w[base + i + j]} * std::int32_t{xq[k][base + i + j]};
        }
      }
    }
    for (; i + 16 <= gs; i += 16) {
      for (int k = 0; k < K; ++k) {
        for (int j = 0; j < 16; ++j) {
          lanes[k][j / 4] += std::int32_t{w[base + i + j]} * std::int32_t{xq[k][base + i + j]};
        }
      }
    }
    for (; i < gs; ++i) {
      for (int k = 0; k < K; ++k) lanes[k][0] += std::int32_t{w[base + i]} * xq[k][base + i];
    }
    const float wscale = scale_at(ws, static_cast<std::size_t>(g));
    for (int k = 0; k < K; ++k) {
      const float s = wscale * xs[k][g];
      for (int j = 0; j < 8; ++j) acc[k][j] = acc[k][j] + static_cast<float>(lanes[k][j]) * s;
    }
  }
  for (int k = 0; k < K; ++k) out[k] = sum_lanes(acc[k]);
}

#include "worker/backends/tinyllm/q8_rows.inc"

}  // namespace portable

#ifdef DROVER_Q8_AVX2
#pragma GCC push_options
#pragma GCC target("avx2")
namespace avx2 {

// Products of 32 int8 pairs summed into eight int32 lanes (lane j: bytes 4j..4j+3). vpmaddubsw
// multiplies unsigned by signed bytes, so the weights' signs move onto the activations:
// |w| * (x * sign(w)). Exact for every weight byte, including -128 (|-128| = 128 unsigned),
// because activations are in [-127, 127] (quantize() never makes -128), so x * sign(w) never
// overflows, and a pair sum is at most 2 * 128 * 127 < 32767 (no saturation).
inline __m256i dot32(__m256i w, __m256i x) {
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

inline __m128i dot16(__m128i w, __m128i x) {
  const __m128i pairs = _mm_maddubs_epi16(_mm_sign_epi8(w, w), _mm_sign_epi8(x, w));
  return _mm_madd_epi16(pairs, _mm_set1_epi16(1));
}

template <int K, int kGroup>
__attribute__((always_inline)) inline void dots(const std::int8_t* w, const std::byte* ws,
                                                const std::int8_t* const* xq,
                                                const float* const* xs, int n, int group_size,
                                                float* out) {
  const int gs = kGroup != 0 ? kGroup : group_size;
  __m256 acc[K];
#pragma GCC unroll 4
  for (int k = 0; k < K; ++k) acc[k] = _mm256_setzero_ps();
  for (int g = 0; g * gs < n; ++g) {
    const int base = g * gs;
    __m256i lanes[K];
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) lanes[k] = _mm256_setzero_si256();
    int i = 0;
    for (; i + 32 <= gs; i += 32) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + base + i));
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[k] + base + i));
        lanes[k] = _mm256_add_epi32(lanes[k], dot32(wv, xv));
      }
    }
    for (; i + 16 <= gs; i += 16) {
      const __m128i wv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + base + i));
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
        const __m128i xv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xq[k] + base + i));
        lanes[k] = _mm256_add_epi32(lanes[k], _mm256_zextsi128_si256(dot16(wv, xv)));
      }
    }
    if (i < gs) {
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
        std::int32_t tail = 0;
        for (int t = i; t < gs; ++t) tail += std::int32_t{w[base + t]} * xq[k][base + t];
        lanes[k] = _mm256_add_epi32(lanes[k], _mm256_setr_epi32(tail, 0, 0, 0, 0, 0, 0, 0));
      }
    }
    const float wscale = scale_at(ws, static_cast<std::size_t>(g));
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
      // A multiply and an add, not an FMA: the portable kernel rounds the same way.
      const __m256 s = _mm256_set1_ps(wscale * xs[k][g]);
      acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(_mm256_cvtepi32_ps(lanes[k]), s));
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < K; ++k) {
    alignas(32) float a[8];
    _mm256_store_ps(a, acc[k]);
    out[k] = sum_lanes(a);
  }
}

#include "worker/backends/tinyllm/q8_rows.inc"

}  // namespace avx2
#pragma GCC pop_options
#endif

constexpr Kernels kPortable{"portable", &portable::matmul, &portable::matmul_add,
                            &portable::swiglu};
#ifdef DROVER_Q8_AVX2
constexpr Kernels kAvx2{"avx2", &avx2::matmul, &avx2::matmul_add, &avx2::swiglu};
#endif

}  // namespace

const Kernels& kernels() {
#ifdef DROVER_Q8_AVX2
  static const Kernels& chosen = [] () -> const Kernels& {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? kAvx2 : kPortable;
  }();
  return chosen;
#else
  return kPortable;
#endif
}

const Kernels& portable_kernels() { return kPortable; }

}  // namespace drover::worker::tinyllm::q8
