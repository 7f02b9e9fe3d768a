// Sampling math of DCNv2 (modulated deformable convolution), shared verbatim by the CPU and
// CUDA kernels so that both backends implement one definition of the semantics:
//
//   * sampling point of tap (i, j) for output (oy, ox):
//       y = (oy*stride_h - pad_h + i*dil_h) + dy,   x = (ox*stride_w - pad_w + j*dil_w) + dx
//     (integer part first, then the offset is added in floating point: in float for half and
//     bfloat16 tensors, whose own precision keeps no fractional bit of a coordinate >= 1024);
//   * a sample contributes only inside the open band -1 < y < H, -1 < x < W; inside it each of
//     the four bilinear corners that falls outside [0, H-1] x [0, W-1] reads 0;
//   * the gradient with respect to the sampling point (dy and dx) is 0 outside that band too
//     (the DCNv2/mmcv guard; torchvision returns a one-sided derivative at exactly -1).
//
// Only plain functions on scalars and raw pointers live here (no tensors, no std containers), so
// the same code compiles with g++ and nvcc. Everything is templated on the accumulation type
// (`at::opmath_type<scalar_t>`, i.e. float for half/bfloat16) and on the index type (int32 or
// int64 on CUDA, int64 on CPU).
#pragma once

#include <ATen/OpMathType.h>

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DCN_HOST_DEVICE __host__ __device__
#define DCN_INLINE __forceinline__
#define DCN_UNROLL _Pragma("unroll")
#else
#define DCN_HOST_DEVICE
#define DCN_INLINE inline
#define DCN_UNROLL
#endif

namespace dcn {
// Geometry of one convolution (sizes of a single image; the batch is handled by the callers).
struct ConvGeometry {
  int64_t channels;  // input channels C
  int64_t height, width;  // input H, W
  int64_t out_h, out_w;  // output Ho, Wo
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dil_h, dil_w;
  int64_t deformable_groups;
};

// The CPU kernels compile this header once per instruction set (cpu/kernels_<isa>.cpp, each with its
// own compiler flags): DCN_ISA names an inline namespace, so that their copies of the inline
// functions below are distinct symbols and the linker never hands one ISA's copy to another's caller.
#ifdef DCN_ISA
inline namespace DCN_ISA {
#endif

// floor(v) for v > -1 (inside the sampling band): truncation, one less where it rounded up. The
// same value as floor there, without a libm call (floorf is one on x86-64 without SSE4.1, and it
// was most of the CPU cost of planning a sample).
template <typename index_t, typename acc_t>
DCN_HOST_DEVICE DCN_INLINE index_t floor_in_band(acc_t v) {
  const index_t t = static_cast<index_t>(v);
  return static_cast<acc_t>(t) > v ? t - 1 : t;
}

// One bilinear sample, planned once and reused for every channel of a deformable group: the flat
// indices of the 4 corners in an H*W plane and their weights. Corners outside the image, and all
// corners of a sample outside the band, have index -1 and weight 0 and are never read (reading
// them as 0 * value would turn an inf or NaN elsewhere in the plane into NaN). With kGrad the
// derivatives of the weights with respect to y (wy) and x (wx) are filled as well (0 outside the
// band: the DCNv2 offset-gradient guard).
template <typename acc_t, typename index_t>
struct SamplePlan {
  index_t idx[4];
  acc_t w[4];
  acc_t wy[4];
  acc_t wx[4];
};

// Sampling coordinate along one axis: integer part first, then + offset (the order DCNv2 uses,
// so that a zero offset lands exactly on the integer grid, e.g. on -1 with padding 1).
template <typename acc_t>
DCN_HOST_DEVICE DCN_INLINE acc_t sample_coord(int64_t out_pos, int64_t stride, int64_t pad, int64_t tap,
                                              int64_t dil, acc_t offset) {
  return static_cast<acc_t>(out_pos * stride - pad + tap * dil) + offset;
}

// The corners of the bilinear samples in `inside` (lanes inside the band), from the coordinates
// (y, x), their floors (y0f, x0f as floats, y0, x0 as indices) and the plane size: corner indices
// y * row + x * col (row = W, col = 1: flat indices in the plane; -1 for a corner outside the image
// or a lane outside the band), value weights scaled by `scale`, and with kGrad the weight
// derivatives with respect to y and x (0 where idx is -1).
// Corner order: (y0, x0), (y0, x1), (y1, x0), (y1, x1).
//
// Generic over lanes: V (float-like), I (index-like) and M (comparison result) are scalars here
// (make_plan, for the CUDA and scalar CPU kernels) or SIMD vectors (the CPU's vectorised planner,
// cpu/vec.h), so that both compute one definition. They need arithmetic, comparisons, `&` on M
// and select(M, a, b) (for scalars below; for SIMD types found by argument-dependent lookup).
template <typename T>
DCN_HOST_DEVICE DCN_INLINE T select(bool m, T a, T b) {
  return m ? a : b;
}

template <bool kGrad, typename V, typename I, typename M>
DCN_HOST_DEVICE DCN_INLINE void plan_corners(M inside, V y, V x, V y0f, V x0f, I y0, I x0, I H, I W, I row, I col,
                                             V scale, I* idx, V* w, V* wy, V* wx) {
  const V ly = y - y0f;  // distance from the low row
  const V lx = x - x0f;
  const V hy = V(1) - ly;
  const V hx = V(1) - lx;
  const M row0 = inside & (y0 >= I(0));  // y0 <= H-1 always holds inside the band
  const M row1 = inside & (y0 + I(1) <= H - I(1));  // y1 >= 0 always holds inside the band
  const M col0 = inside & (x0 >= I(0));
  const M col1 = inside & (x0 + I(1) <= W - I(1));
  const I at = y0 * row + x0 * col;
  const M in0 = row0 & col0;
  const M in1 = row0 & col1;
  const M in2 = row1 & col0;
  const M in3 = row1 & col1;
  idx[0] = select(in0, at, I(-1));
  idx[1] = select(in1, at + col, I(-1));
  idx[2] = select(in2, at + row, I(-1));
  idx[3] = select(in3, at + row + col, I(-1));
  w[0] = select(in0, scale * hy * hx, V(0));
  w[1] = select(in1, scale * hy * lx, V(0));
  w[2] = select(in2, scale * ly * hx, V(0));
  w[3] = select(in3, scale * ly * lx, V(0));
  if constexpr (kGrad) {
    wy[0] = select(in0, -hx, V(0));
    wx[0] = select(in0, -hy, V(0));
    wy[1] = select(in1, -lx, V(0));
    wx[1] = select(in1, hy, V(0));
    wy[2] = select(in2, hx, V(0));
    wx[2] = select(in2, -ly, V(0));
    wy[3] = select(in3, lx, V(0));
    wx[3] = select(in3, ly, V(0));
  }
}

// The open band of a sample (written so that a NaN coordinate lies outside).
template <typename V>
DCN_HOST_DEVICE DCN_INLINE auto in_band(V y, V x, V H, V W) {
  return (y > V(-1)) & (y < H) & (x > V(-1)) & (x < W);
}

// Fills `plan` for the point (y, x) of an H x W plane; `scale` multiplies the value weights w
// (used to fold the modulation mask in). Weight derivatives are left unscaled.
template <bool kGrad, typename acc_t, typename index_t>
DCN_HOST_DEVICE DCN_INLINE void make_plan(acc_t y, acc_t x, index_t H, index_t W, acc_t scale,
                                          SamplePlan<acc_t, index_t>& plan) {
  // Outside the open band nothing is sampled and the coordinate gradient is 0.
  if (!in_band(y, x, static_cast<acc_t>(H), static_cast<acc_t>(W))) {
DCN_UNROLL
    for (int c = 0; c < 4; ++c) {
      plan.idx[c] = index_t(-1);
      plan.w[c] = acc_t(0);
      if constexpr (kGrad) {
        plan.wy[c] = acc_t(0);
        plan.wx[c] = acc_t(0);
      }
    }
    return;
  }
  const index_t y0 = floor_in_band<index_t>(y);
  const index_t x0 = floor_in_band<index_t>(x);
  plan_corners<kGrad>(true, y, x, static_cast<acc_t>(y0), static_cast<acc_t>(x0), y0, x0, H, W, W, index_t(1), scale,
                      plan.idx, plan.w, plan.wy, plan.wx);
}

// Plans the sample of kernel tap (i, j) for output pixel (oy, ox), given the tap's offsets and the
// scale folded into the value weights (the mask, or 1).
template <bool kGrad, typename acc_t, typename index_t>
DCN_HOST_DEVICE DCN_INLINE void plan_sample(const ConvGeometry& geo, index_t i, index_t j, index_t oy, index_t ox,
                                            acc_t dy, acc_t dx, acc_t scale, SamplePlan<acc_t, index_t>& plan) {
  const acc_t y = sample_coord<acc_t>(oy, geo.stride_h, geo.pad_h, i, geo.dil_h, dy);
  const acc_t x = sample_coord<acc_t>(ox, geo.stride_w, geo.pad_w, j, geo.dil_w, dx);
  make_plan<kGrad>(y, x, static_cast<index_t>(geo.height), static_cast<index_t>(geo.width), scale, plan);
}

// Channel of dy for tap k of deformable group g in image b (dx is the next channel): per group a
// block of 2*K channels, interleaved (dy, dx) per tap k = i*kw + j.
template <typename index_t>
DCN_HOST_DEVICE DCN_INLINE index_t offset_channel(index_t b, index_t g, index_t k, index_t dg, index_t K) {
  return (b * dg + g) * 2 * K + 2 * k;
}

// Channel of the mask of tap k of deformable group g in image b: per group a block of K channels.
template <typename index_t>
DCN_HOST_DEVICE DCN_INLINE index_t mask_channel(index_t b, index_t g, index_t k, index_t dg, index_t K) {
  return (b * dg + g) * K + k;
}

// Row of the column buffer (N, C*K, Ho*Wo) holding channel c, tap k of image b.
template <typename index_t>
DCN_HOST_DEVICE DCN_INLINE index_t column_row(index_t b, index_t c, index_t k, index_t C, index_t K) {
  return (b * C + c) * K + k;
}

// Plans the sample of tap k (row-major over the kernel) of deformable group g for output pixel p
// of image b, reading its offsets and mask from the (N, dg*2*K, Ho, Wo) offset and (N, dg*K, Ho, Wo)
// mask tensors. Returns the mask value; folds it into the value weights when kFoldMask.
template <bool kGrad, bool kFoldMask, typename scalar_t, typename index_t>
DCN_HOST_DEVICE DCN_INLINE at::opmath_type<scalar_t> plan_tap(
    const ConvGeometry& geo, const scalar_t* offset, const scalar_t* mask, index_t b, index_t g, index_t k,
    index_t p, SamplePlan<at::opmath_type<scalar_t>, index_t>& plan) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t K = static_cast<index_t>(geo.kernel_h * geo.kernel_w);
  const index_t dg = static_cast<index_t>(geo.deformable_groups);
  const index_t out_pixels = static_cast<index_t>(geo.out_h * geo.out_w);
  const index_t kw = static_cast<index_t>(geo.kernel_w);
  const index_t wo = static_cast<index_t>(geo.out_w);
  const index_t dy_channel = offset_channel(b, g, k, dg, K);
  const acc_t dy = static_cast<acc_t>(offset[dy_channel * out_pixels + p]);
  const acc_t dx = static_cast<acc_t>(offset[(dy_channel + 1) * out_pixels + p]);
  const acc_t m = static_cast<acc_t>(mask[mask_channel(b, g, k, dg, K) * out_pixels + p]);
  plan_sample<kGrad>(geo, k / kw, k % kw, p / wo, p % wo, dy, dx, kFoldMask ? m : acc_t(1), plan);
  return m;
}

// Bilinear value of a plane at a planned sample (weights as planned, i.e. masked if folded).
template <typename scalar_t, typename acc_t, typename index_t>
DCN_HOST_DEVICE DCN_INLINE acc_t plan_value(const SamplePlan<acc_t, index_t>& plan, const scalar_t* plane) {
  acc_t value = acc_t(0);
DCN_UNROLL
  for (int c = 0; c < 4; ++c) {
    if (plan.idx[c] >= 0) {
      value += plan.w[c] * static_cast<acc_t>(plane[plan.idx[c]]);
    }
  }
  return value;
}

// Value and derivatives with respect to y and x of the bilinear sample of one plane.
template <typename scalar_t, typename acc_t, typename index_t>
DCN_HOST_DEVICE DCN_INLINE void plan_value_and_grad(const SamplePlan<acc_t, index_t>& plan, const scalar_t* plane,
                                                    acc_t& value, acc_t& d_y, acc_t& d_x) {
  value = acc_t(0);
  d_y = acc_t(0);
  d_x = acc_t(0);
DCN_UNROLL
  for (int c = 0; c < 4; ++c) {
    if (plan.idx[c] < 0) {
      continue;
    }
    const acc_t v = static_cast<acc_t>(plane[plan.idx[c]]);
    value += plan.w[c] * v;
    d_y += plan.wy[c] * v;
    d_x += plan.wx[c] * v;
  }
}

#ifdef DCN_ISA
}  // namespace DCN_ISA
#endif
}  // namespace dcn
