// Q8_0: llama2.c runq.c's group-wise int8 quantization, and the int8 matrix kernels of the
// Transformer's Q8_0 path.
//
// A vector of n values is quantized in groups of group_size consecutive values: each group has
// one float32 scale = max |x| / 127 and int8 values q = round(x / scale) in [-127, 127], so
// x ~ q * scale with an error of at most scale / 2 per value. Weights are quantized once, by
// drover-make-model (or llama2.c's export.py --version 2); activations before every matmul.
// A matmul output element is then, as in runq.c, the sum over groups of
// (int32 dot product of the group's int8 values) * weight scale * activation scale.
//
// Kernels: the int8 dot products run with AVX2 (vpmaddubsw/vpmaddwd: 32 products per
// instruction pair) when the CPU has it, else in portable C++; the choice is made once per
// process. GCC does not vectorise the plain int8 loop into these instructions (at -O2 it is
// not vectorised at all; at -O3 it becomes 16-bit multiplies and widening, no faster than the
// float32 kernels), hence the intrinsics.
//
// Exactness: the int32 group sums are exact, and the float part is the same operations in the
// same order in both kernels and whatever the batch: per group, the eight int32 lanes (lane j
// holds the products of bytes 4j..4j+3 of each 32-byte block, and 16-byte blocks and the
// scalar tail go to lanes 0-3 and 0) are converted to float, multiplied by
// (weight scale * activation scale) and added to eight float accumulators; at the end the
// accumulators are summed in a fixed tree. So a row's output is bit-identical at any batch
// size, with any thread count, and between the AVX2 and the portable kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "worker/backends/tinyllm/checkpoint.hpp"

namespace drover::worker::tinyllm::q8 {

// Quantizes x[0..n) (n a multiple of group_size) into q[0..n) and scales[0..n/group_size).
// A group of zeros gets scale 0 and q 0 (runq.c would divide by zero there).
void quantize(const float* x, int n, int group_size, std::int8_t* q, float* scales);

// scales[i] of a mapped tensor (the file does not align them).
inline float scale_at(const std::byte* scales, std::size_t i) {
  float f;
  __builtin_memcpy(&f, scales + i * sizeof(float), sizeof(float));
  return f;
}

// The quantized activations of the rows of one matmul: row b is q[b] (n int8 values) with
// scales s[b] (n / group_size).
struct Inputs {
  const std::int8_t* const* q;
  const float* const* s;
};

// Rows [begin, end) of a row-major (rows x n) Q8_0 matrix w times every input row b < batch.
struct Kernels {
  const char* name;
  // out[b][r] = W[r] . x[b]
  void (*matmul)(float* const* out, Q8Tensor w, Inputs x, int batch, int n, int group_size,
                 int begin, int end);
  // out[b][r] += W[r] . x[b]
  void (*matmul_add)(float* const* out, Q8Tensor w, Inputs x, int batch, int n, int group_size,
                     int begin, int end);
  // hb[b][r] = silu(W1[r] . x[b]) * (W3[r] . x[b])
  void (*swiglu)(float* const* hb, Q8Tensor w1, Q8Tensor w3, Inputs x, int batch, int n,
                 int group_size, int begin, int end);
};

// The fastest kernels this CPU runs ("avx2" or "portable").
const Kernels& kernels();
// The portable C++ kernels (tests compare them with kernels()).
const Kernels& portable_kernels();

}  // namespace drover::worker::tinyllm::q8
