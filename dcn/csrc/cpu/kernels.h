// The CPU kernels that are compiled once per instruction set (kernels_baseline.cpp, kernels_avx2.cpp,
// kernels_avx512.cpp: one source, kernels_impl.h, built with each set's compiler flags) and the
// table through which the drivers (dcn_cpu.cpp, dynamic_filter_cpu.cpp) call the set chosen at run
// time (capability.cpp). One build runs on any x86-64 CPU: only the chosen set's code executes.
//
// The interface is plain data: raw pointers, strides and sizes. The kernels include no ATen code
// (an inline ATen function compiled with AVX-512 flags could be picked by the linker for baseline
// callers); the drivers split the work with at::parallel_for and call a kernel per range of items.
#pragma once

#include <cstdint>

#include "../dcn_sampling.h"

namespace dcn {
namespace cpu {

// bfloat16 as stored: the upper 16 bits of a float32 (the same bits as c10::BFloat16).
struct BF16 {
  uint16_t bits;
};

// A DCN call on channels_last data, one batch chunk or block of output rows (geo is the block's).
//   input  (b, c, y, x) at b * in_image + (y * W + x) * in_pixel + c;
//   offset sample s = g * K + k of output pixel (oy, ox): dy at off + b * off_image + oy * off_row +
//          ox * off_col + 2 * s, dx at + 1 (the channel order of DCNv2, channels contiguous);
//   mask   sample s at mask + b * mask_image + oy * mask_row + ox * mask_col + s;
//   columns: per convolution group grp a matrix of K * Cg columns (Cg = C / groups) with one row per
//          output pixel, the groups col_group elements apart; the kernels get a pointer to the row of
//          their first pixel. Pixel p's entry for tap k and channel c of group grp is at
//          grp * col_group + (p - first pixel) * K * Cg + k * Cg + (c - grp * Cg) (groups = 1: one
//          (pixels, K * C) matrix, entry k * C + c);
//   tap_y[s], tap_x[s]: i * dil_h and j * dil_w of sample s's tap k = i * kw + j (padded with zeros
//          to a multiple of 16 entries);
//   with single_run (each deformable group inside one convolution group, e.g. groups = 1), sample
//          s reads the channels [channel[s], channel[s] + C / dg) and its columns start at
//          group[s] * col_group + column[s] in its pixel's row.
template <typename T>
struct DcnArgs {
  ConvGeometry geo;
  int64_t groups;
  const T* input;
  int64_t in_image, in_pixel;
  const T* offset;
  int64_t off_image, off_row, off_col;
  const T* mask;
  int64_t mask_image, mask_row, mask_col;
  const int32_t* tap_y;
  const int32_t* tap_x;
  int64_t col_group;
  bool single_run;
  const int64_t* channel;
  const int64_t* group;
  const int64_t* column;
};

// Plain float accumulators for the input gradient: float for float and bfloat16, double for double.
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

template <typename T>
struct DcnKernels {
  // Columns of the output pixels [p0, p1) of image b (columns: the row of pixel p0).
  void (*im2col)(const DcnArgs<T>& a, T* columns, int64_t b, int64_t p0, int64_t p1);
  // grad_input (channels_last like the input, accumulator type, pixel stride C) += the scatter of the
  // column gradients of image b (grad_columns: the row of its pixel 0) through the samples of
  // deformable group g.
  void (*col2im)(const DcnArgs<T>& a, const T* grad_columns, typename Acc<T>::type* grad_input, int64_t b,
                 int64_t g);
  // Offset and mask gradients of the output pixels [p0, p1) of image b (grad_columns: the row of
  // pixel p0; grad_offset and grad_mask have any strides {image, channel, row, col}).
  void (*col2im_coord)(const DcnArgs<T>& a, const T* grad_columns, T* grad_offset, const int64_t* go_strides,
                       T* grad_mask, const int64_t* gm_strides, int64_t b, int64_t p0, int64_t p1);
  // The forward of output pixels [p0, p1) of image b with the GEMM fused in (one convolution group,
  // channels_last output): out (the image's (pixels, cout) rows) = columns x weight_t (K * C, cout) +
  // bias (may be null). The columns of fused_pixels pixels at a time go to `scratch` (fused_pixels
  // rows of K * C, zeroed by the caller once) and are multiplied while they are in the L1 cache.
  // nullptr where this set has no such kernel for T; cout must be a multiple of fused_cout.
  void (*forward_fused)(const DcnArgs<T>& a, const T* weight_t, const T* bias, int64_t cout, T* out, T* scratch,
                        int64_t b, int64_t p0, int64_t p1);
  int64_t fused_pixels;
  int64_t fused_cout;
};

// The dynamic filter (dynamic_filter.h) on one image:
//   x, grad, grad_x (c, y, x) at c * x_channel + y * x_row + x * x_col (channels_last: x_channel = 1;
//          NCHW: x_col = 1); the forward's output (rows of the call only) likewise with o_*;
//   kernels: tap t of channel c at row y (the forward: of its output rows), column x at
//          k + c * k_chan + t * k_tap + y * k_row + x * k_col (tap-major kernels: k_chan = 1).
struct FilterGeometry {
  int64_t channels, height, width;
  int64_t dilation;
  int64_t x_channel, x_row, x_col;
  int64_t o_channel, o_row, o_col;
  int64_t k_chan, k_tap, k_row, k_col;
};

template <typename T>
struct FilterKernels {
  // out rows [r0, r1) of the first_row-relative output rows, from x rows around them.
  void (*forward)(const FilterGeometry& f, const T* x, const T* k, T* out, int64_t first_row, int64_t r0,
                  int64_t r1);
  // grad_x rows [r0, r1) (kernels and grad cover all rows).
  void (*grad_input)(const FilterGeometry& f, const T* grad, const T* k, T* grad_x, int64_t r0, int64_t r1);
  // grad_kernels rows [r0, r1), in the kernels' layout.
  void (*grad_kernels)(const FilterGeometry& f, const T* grad, const T* x, T* grad_k, int64_t r0, int64_t r1);
};

struct KernelTable {
  const char* name;
  DcnKernels<float> dcn_f32;
  DcnKernels<double> dcn_f64;
  DcnKernels<BF16> dcn_bf16;
  FilterKernels<float> filter_f32;
  FilterKernels<double> filter_f64;
  FilterKernels<BF16> filter_bf16;
};

// One table per instruction set compiled in (x86-64 only, besides the baseline).
extern const KernelTable kBaselineKernels;
#if defined(__x86_64__) || defined(_M_X64)
#define DCN_CPU_DISPATCH 1
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
#endif

// The table of the instruction set chosen now (capability.cpp).
const KernelTable& kernels();

}  // namespace cpu
}  // namespace dcn
