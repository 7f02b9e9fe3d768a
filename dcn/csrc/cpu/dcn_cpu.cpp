// CPU primitives of DCNv2 and their registration for the CPU dispatch key.
//
// Work is split with at::parallel_for over partitions whose outputs are disjoint, so results are
// deterministic and need no atomics:
//   im2col        per (image, pixel tile, deformable group, tap): writes its own column entries;
//   col2im        per (image, deformable group, channel block): owns whole grad_input planes;
//   col2im_coord  per (image, deformable group, tap, pixel tile): owns its grad_offset/grad_mask.
// The sampling plans (corner indices and weights) of a pixel tile are computed once and reused for
// all channels of the deformable group (torchvision recomputes them for every channel).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "../dcn.h"

namespace dcn {
namespace {

// Output pixels planned together: small enough for the plans to stay in L1, large enough to
// amortise the per-channel loop overhead.
constexpr int64_t kTile = 64;

void check_cpu_dtype(const at::Tensor& t) {
  TORCH_CHECK_NOT_IMPLEMENTED(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
                              "dcn: the CPU kernels support float32 and float64, got ", t.scalar_type());
}

// Element strides of a 4-D tensor (image, channel, row, column): the forward reads channels_last
// inputs and strided offset/mask views (channel slices of one prediction) in place.
struct Strides {
  int64_t image, channel, row, col;
};

Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// Strides of a contiguous (N, channels, Ho, Wo) map (the backward's offsets and masks).
Strides output_map_strides(int64_t channels, const ConvGeometry& geo) {
  return {channels * geo.out_h * geo.out_w, geo.out_h * geo.out_w, geo.out_w, 1};
}

// Plans the samples of tap k of deformable group g for the output pixels [p0, p0 + count) of
// image b. The output position advances incrementally (no divisions per pixel). Stores the mask
// values in `masks` unless it is null.
template <bool kGrad, bool kFoldMask, typename scalar_t>
void plan_tile(const ConvGeometry& geo, const scalar_t* offset, const Strides& os, const scalar_t* mask,
               const Strides& ms, int64_t b, int64_t g, int64_t k, int64_t p0, int64_t count,
               SamplePlan<at::opmath_type<scalar_t>, int64_t>* plans, at::opmath_type<scalar_t>* masks) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = geo.kernel_h * geo.kernel_w;
  const int64_t dg = geo.deformable_groups;
  const scalar_t* dy = offset + b * os.image + offset_channel<int64_t>(0, g, k, dg, K) * os.channel;
  const scalar_t* dx = dy + os.channel;
  const scalar_t* m = mask + b * ms.image + mask_channel<int64_t>(0, g, k, dg, K) * ms.channel;
  const int64_t i = k / geo.kernel_w;
  const int64_t j = k % geo.kernel_w;
  int64_t oy = p0 / geo.out_w;
  int64_t ox = p0 % geo.out_w;
  for (int64_t t = 0; t < count; ++t) {
    const int64_t at_offset = oy * os.row + ox * os.col;
    const auto mv = static_cast<acc_t>(m[oy * ms.row + ox * ms.col]);
    plan_sample<kGrad>(geo, i, j, oy, ox, static_cast<acc_t>(dy[at_offset]), static_cast<acc_t>(dx[at_offset]),
                       kFoldMask ? mv : acc_t(1), plans[t]);
    if (masks != nullptr) {
      masks[t] = mv;
    }
    if (++ox == geo.out_w) {
      ox = 0;
      ++oy;
    }
  }
}

// The column entries of `count` planned samples for the `channels` channels of a deformable group
// from a channels_last image (`input` at the group's first channel, `pixel_stride` = C): pixel by
// pixel, each corner's channels read together (they lie together; channel by channel, every
// corner read would touch another cache line). Channel c's entries go to column row c * row_stride.
// The same sum as plan_value: corners with index -1 are never read.
template <typename scalar_t, typename acc_t>
void channels_last_columns(const SamplePlan<acc_t, int64_t>* plans, int64_t count, const scalar_t* input,
                           int64_t pixel_stride, int64_t channels, scalar_t* columns, int64_t row_stride) {
  constexpr int64_t kBlock = 8;
  for (int64_t c0 = 0; c0 < channels; c0 += kBlock) {
    const int64_t n = std::min(kBlock, channels - c0);
    for (int64_t t = 0; t < count; ++t) {
      acc_t sum[kBlock] = {};
      for (int corner = 0; corner < 4; ++corner) {
        const int64_t idx = plans[t].idx[corner];
        if (idx < 0) continue;
        const acc_t w = plans[t].w[corner];
        const scalar_t* px = input + idx * pixel_stride + c0;
        for (int64_t c = 0; c < n; ++c) sum[c] += w * static_cast<acc_t>(px[c]);
      }
      for (int64_t c = 0; c < n; ++c) columns[(c0 + c) * row_stride + t] = static_cast<scalar_t>(sum[c]);
    }
  }
}

// `input` is NCHW or channels_last (is.col = C, is.channel = 1).
template <typename scalar_t>
void im2col_kernel(const scalar_t* input, const Strides& is, const scalar_t* offset, const Strides& os,
                   const scalar_t* mask, const Strides& ms, scalar_t* columns, int64_t batch, const ConvGeometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = geo.kernel_h * geo.kernel_w;
  const int64_t dg = geo.deformable_groups;
  const int64_t group_channels = geo.channels / dg;
  const int64_t out_pixels = geo.out_h * geo.out_w;
  const int64_t tiles = (out_pixels + kTile - 1) / kTile;
  // Tile-major: all (group, tap) items of a pixel tile run back to back, so the tile's offsets and
  // masks are read from cache whatever their layout (channels_last keeps a pixel's 3*dg*K
  // predictions together: a (group, tap)-major order would stream them all from memory per tap).
  at::parallel_for(0, batch * tiles * dg * K, 1, [&](int64_t begin, int64_t end) {
    SamplePlan<acc_t, int64_t> plans[kTile];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t k = item % K;
      const int64_t g = (item / K) % dg;
      const int64_t tile = (item / (K * dg)) % tiles;
      const int64_t b = item / (K * dg * tiles);
      const int64_t p0 = tile * kTile;
      const int64_t count = std::min(kTile, out_pixels - p0);
      plan_tile<false, true>(geo, offset, os, mask, ms, b, g, k, p0, count, plans, static_cast<acc_t*>(nullptr));
      if (is.col != 1) {
        channels_last_columns(plans, count, input + b * is.image + g * group_channels * is.channel, is.col,
                              group_channels, columns + column_row(b, g * group_channels, k, geo.channels, K) * out_pixels + p0,
                              K * out_pixels);
        continue;
      }
      for (int64_t cg = 0; cg < group_channels; ++cg) {
        const int64_t c = g * group_channels + cg;
        const scalar_t* in_plane = input + b * is.image + c * is.channel;
        scalar_t* col = columns + column_row(b, c, k, geo.channels, K) * out_pixels + p0;
        for (int64_t t = 0; t < count; ++t) {
          col[t] = static_cast<scalar_t>(plan_value(plans[t], in_plane));
        }
      }
    }
  });
}

template <typename scalar_t>
void col2im_kernel(const scalar_t* grad_columns, const scalar_t* offset, const scalar_t* mask, scalar_t* grad_input,
                   int64_t batch, const ConvGeometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = geo.kernel_h * geo.kernel_w;
  const int64_t dg = geo.deformable_groups;
  const int64_t group_channels = geo.channels / dg;
  const int64_t plane = geo.height * geo.width;
  const int64_t out_pixels = geo.out_h * geo.out_w;
  const Strides os = output_map_strides(2 * dg * K, geo);
  const Strides ms = output_map_strides(dg * K, geo);
  // Split the channels of a group into blocks only when (image, group) pairs alone cannot keep
  // all threads busy: every block re-plans its samples.
  const int64_t pairs = batch * dg;
  const int64_t blocks = std::clamp<int64_t>((4 * at::get_num_threads() + pairs - 1) / pairs, 1, group_channels);
  const int64_t block_channels = (group_channels + blocks - 1) / blocks;
  at::parallel_for(0, pairs * blocks, 1, [&](int64_t begin, int64_t end) {
    SamplePlan<acc_t, int64_t> plans[kTile];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t block = item % blocks;
      const int64_t g = (item / blocks) % dg;
      const int64_t b = item / (blocks * dg);
      const int64_t c_begin = g * group_channels + block * block_channels;
      const int64_t c_end = std::min(c_begin + block_channels, (g + 1) * group_channels);
      if (c_begin >= c_end) {
        continue;
      }
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t p0 = 0; p0 < out_pixels; p0 += kTile) {
          const int64_t count = std::min(kTile, out_pixels - p0);
          plan_tile<false, true>(geo, offset, os, mask, ms, b, g, k, p0, count, plans, static_cast<acc_t*>(nullptr));
          for (int64_t c = c_begin; c < c_end; ++c) {
            scalar_t* grad_plane = grad_input + (b * geo.channels + c) * plane;
            const scalar_t* gcol = grad_columns + column_row(b, c, k, geo.channels, K) * out_pixels + p0;
            for (int64_t t = 0; t < count; ++t) {
              const acc_t gv = static_cast<acc_t>(gcol[t]);
              const auto& pl = plans[t];
              // Only corners that carry weight receive gradient (as DCNv2: outside ones are never touched).
              for (int corner = 0; corner < 4; ++corner) {
                if (pl.w[corner] != acc_t(0)) {
                  grad_plane[pl.idx[corner]] += static_cast<scalar_t>(pl.w[corner] * gv);
                }
              }
            }
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void col2im_coord_kernel(const scalar_t* grad_columns, const scalar_t* input, const scalar_t* offset,
                         const scalar_t* mask, scalar_t* grad_offset, scalar_t* grad_mask, int64_t batch,
                         const ConvGeometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = geo.kernel_h * geo.kernel_w;
  const int64_t dg = geo.deformable_groups;
  const int64_t group_channels = geo.channels / dg;
  const int64_t plane = geo.height * geo.width;
  const int64_t out_pixels = geo.out_h * geo.out_w;
  const Strides os = output_map_strides(2 * dg * K, geo);
  const Strides ms = output_map_strides(dg * K, geo);
  const int64_t tiles = (out_pixels + kTile - 1) / kTile;
  at::parallel_for(0, batch * dg * K * tiles, 1, [&](int64_t begin, int64_t end) {
    SamplePlan<acc_t, int64_t> plans[kTile];
    acc_t masks[kTile];
    acc_t acc_mask[kTile];
    acc_t acc_y[kTile];
    acc_t acc_x[kTile];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t tile = item % tiles;
      const int64_t k = (item / tiles) % K;
      const int64_t g = (item / (tiles * K)) % dg;
      const int64_t b = item / (tiles * K * dg);
      const int64_t p0 = tile * kTile;
      const int64_t count = std::min(kTile, out_pixels - p0);
      plan_tile<true, false>(geo, offset, os, mask, ms, b, g, k, p0, count, plans, masks);
      for (int64_t t = 0; t < count; ++t) {
        acc_mask[t] = acc_y[t] = acc_x[t] = acc_t(0);
      }
      for (int64_t cg = 0; cg < group_channels; ++cg) {
        const int64_t c = g * group_channels + cg;
        const scalar_t* in_plane = input + (b * geo.channels + c) * plane;
        const scalar_t* gcol = grad_columns + column_row(b, c, k, geo.channels, K) * out_pixels + p0;
        for (int64_t t = 0; t < count; ++t) {
          acc_t value, d_y, d_x;
          plan_value_and_grad(plans[t], in_plane, value, d_y, d_x);
          const acc_t gv = static_cast<acc_t>(gcol[t]);
          acc_mask[t] += gv * value;
          acc_y[t] += gv * d_y;
          acc_x[t] += gv * d_x;
        }
      }
      scalar_t* g_dy = grad_offset + offset_channel(b, g, k, dg, K) * out_pixels + p0;
      scalar_t* g_dx = g_dy + out_pixels;
      scalar_t* g_m = grad_mask + mask_channel(b, g, k, dg, K) * out_pixels + p0;
      for (int64_t t = 0; t < count; ++t) {
        g_dy[t] = static_cast<scalar_t>(acc_y[t] * masks[t]);
        g_dx[t] = static_cast<scalar_t>(acc_x[t] * masks[t]);
        g_m[t] = static_cast<scalar_t>(acc_mask[t]);
      }
    }
  });
}

void im2col_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& columns,
                const ConvGeometry& geo) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "dcn_im2col_cpu", [&] {
    im2col_kernel<scalar_t>(input.const_data_ptr<scalar_t>(), strides_of(input), offset.const_data_ptr<scalar_t>(),
                            strides_of(offset), mask.const_data_ptr<scalar_t>(), strides_of(mask),
                            columns.mutable_data_ptr<scalar_t>(), input.size(0), geo);
  });
}

void col2im_cpu(const at::Tensor& grad_columns, const at::Tensor& offset, const at::Tensor& mask,
                const at::Tensor& grad_input, const ConvGeometry& geo) {
  AT_DISPATCH_FLOATING_TYPES(grad_columns.scalar_type(), "dcn_col2im_cpu", [&] {
    col2im_kernel<scalar_t>(grad_columns.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(),
                            mask.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(),
                            grad_input.size(0), geo);
  });
}

void col2im_coord_cpu(const at::Tensor& grad_columns, const at::Tensor& input, const at::Tensor& offset,
                      const at::Tensor& mask, const at::Tensor& grad_offset, const at::Tensor& grad_mask,
                      const ConvGeometry& geo) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "dcn_col2im_coord_cpu", [&] {
    col2im_coord_kernel<scalar_t>(grad_columns.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(),
                                  offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
                                  grad_offset.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(),
                                  input.size(0), geo);
  });
}

constexpr Primitives kCpuPrimitives{im2col_cpu, col2im_cpu, col2im_coord_cpu, /*strided_im2col=*/true};

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                       const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h,
                       int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
                       int64_t deformable_groups) {
  check_cpu_dtype(input);
  return modulated_deform_conv_forward(kCpuPrimitives, input, offset, mask, weight, bias, stride_h, stride_w, pad_h,
                                       pad_w, dil_h, dil_w, groups, deformable_groups);
}

at::Tensor rows_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& weight,
                    const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                    int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups, int64_t deformable_groups,
                    int64_t first_row) {
  check_cpu_dtype(input);
  return modulated_deform_conv_rows(kCpuPrimitives, input, offset, mask, weight, bias, stride_h, stride_w, pad_h,
                                    pad_w, dil_h, dil_w, groups, deformable_groups, first_row);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w,
    int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups, int64_t deformable_groups,
    std::array<bool, 3> output_mask) {
  check_cpu_dtype(input);
  return modulated_deform_conv_backward(kCpuPrimitives, grad_output, input, offset, mask, weight, bias, stride_h,
                                        stride_w, pad_h, pad_w, dil_h, dil_w, groups, deformable_groups, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("modulated_deform_conv", &forward_cpu);
  m.impl("modulated_deform_conv_backward", &backward_cpu);
  m.impl("modulated_deform_conv_rows", &rows_cpu);
}

}  // namespace dcn
