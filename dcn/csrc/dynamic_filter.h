// Dynamic filtering (ADFNet's DConv and MDCB branches): per-pixel, per-channel 3x3 filtering with
// zero padding, shared verbatim by the CPU and CUDA kernels so that both implement one definition:
//
//   out[b, c, h, w] = sum_{t = 3i + j} x[b, c, h + d(i-1), w + d(j-1)] * k[b, 9c + t, h, w]
//
// (taps outside the image read 0). Both gradients are gathers, so no kernel needs atomics:
//
//   grad_k[b, 9c + t, h, w] = g[b, c, h, w] * x[b, c, h + d(i-1), w + d(j-1)]
//   grad_x[b, c, h, w]      = sum_t g[b, c, h - d(i-1), w - d(j-1)] * k[b, 9c + t, h - d(i-1), w - d(j-1)]
//
// Only plain functions on scalars and raw pointers live here (no tensors), so the same code
// compiles with g++ and nvcc. `acc_t` is the accumulation type (float for half/bfloat16).
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DF_HOST_DEVICE __host__ __device__
#define DF_INLINE __forceinline__
#else
#define DF_HOST_DEVICE
#define DF_INLINE inline
#endif

namespace dcn {
// One copy per instruction set in the CPU kernels (see DCN_ISA in dcn_sampling.h).
#ifdef DCN_ISA
inline namespace DCN_ISA {
#endif
namespace dynamic_filter {

constexpr int kTaps = 9;

// Signed displacement of tap index i (or j) in {0, 1, 2} at dilation d: -d, 0 or +d.
DF_HOST_DEVICE DF_INLINE int64_t shift(int64_t i, int64_t d) { return d * (i - 1); }

// Columns w in [*begin, *end) of a row of width `width` whose tap at horizontal shift `s` lands
// inside the row (w + s in [0, width)). The range may be empty.
DF_HOST_DEVICE DF_INLINE void valid_columns(int64_t s, int64_t width, int64_t* begin, int64_t* end) {
  *begin = s < 0 ? (-s < width ? -s : width) : 0;
  *end = s > 0 ? width - s : width;
  if (*end < *begin) *end = *begin;  // |s| >= width: empty, begin and end within [0, width]
}

// Filtered value at (h, w) of one channel: `x` is its H*W plane, `k` the first of its 9 kernel
// planes (plane stride `plane`).
template <typename acc_t, typename scalar_t>
DF_HOST_DEVICE DF_INLINE acc_t filter_at(const scalar_t* x, const scalar_t* k, int64_t plane, int64_t h, int64_t w,
                                         int64_t height, int64_t width, int64_t d) {
  acc_t sum = acc_t(0);
  for (int64_t t = 0; t < kTaps; ++t) {
    const int64_t y = h + shift(t / 3, d);
    const int64_t xx = w + shift(t % 3, d);
    if (y >= 0 && y < height && xx >= 0 && xx < width) {
      sum += static_cast<acc_t>(x[y * width + xx]) * static_cast<acc_t>(k[t * plane + h * width + w]);
    }
  }
  return sum;
}

// Gradient of tap t's kernel weight at (h, w): g * (the input value that tap read).
template <typename acc_t, typename scalar_t>
DF_HOST_DEVICE DF_INLINE acc_t grad_kernel_at(const scalar_t* g, const scalar_t* x, int64_t t, int64_t h, int64_t w,
                                              int64_t height, int64_t width, int64_t d) {
  const int64_t y = h + shift(t / 3, d);
  const int64_t xx = w + shift(t % 3, d);
  if (y < 0 || y >= height || xx < 0 || xx >= width) return acc_t(0);
  return static_cast<acc_t>(g[h * width + w]) * static_cast<acc_t>(x[y * width + xx]);
}

// Gradient of the input at (h, w): every output that read (h, w) through some tap, gathered.
template <typename acc_t, typename scalar_t>
DF_HOST_DEVICE DF_INLINE acc_t grad_input_at(const scalar_t* g, const scalar_t* k, int64_t plane, int64_t h, int64_t w,
                                             int64_t height, int64_t width, int64_t d) {
  acc_t sum = acc_t(0);
  for (int64_t t = 0; t < kTaps; ++t) {
    const int64_t y = h - shift(t / 3, d);
    const int64_t xx = w - shift(t % 3, d);
    if (y >= 0 && y < height && xx >= 0 && xx < width) {
      const int64_t p = y * width + xx;
      sum += static_cast<acc_t>(g[p]) * static_cast<acc_t>(k[t * plane + p]);
    }
  }
  return sum;
}

}  // namespace dynamic_filter
#ifdef DCN_ISA
}  // namespace DCN_ISA
#endif
}  // namespace dcn
