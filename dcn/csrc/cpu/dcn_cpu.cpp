// CPU primitives of DCNv2 and their registration for the CPU dispatch key.
//
// Work is split with at::parallel_for over partitions whose outputs are disjoint, so results are
// deterministic and need no atomics:
//   im2col        per (image, deformable group, tap, pixel tile): writes its own column entries;
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

// Plans the samples of tap k of deformable group g for the output pixels [p0, p0 + count) of
// image b. The output position advances incrementally (no divisions per pixel). Stores the mask
// values in `masks` unless it is null.
template <bool kGrad, bool kFoldMask, typename scalar_t>
void plan_tile(const ConvGeometry& geo, const scalar_t* offset, const scalar_t* mask, int64_t b, int64_t g, int64_t k,
               int64_t p0, int64_t count, SamplePlan<at::opmath_type<scalar_t>, int64_t>* plans,
               at::opmath_type<scalar_t>* masks) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = geo.kernel_h * geo.kernel_w;
  const int64_t dg = geo.deformable_groups;
  const int64_t out_pixels = geo.out_h * geo.out_w;
  const scalar_t* dy = offset + offset_channel(b, g, k, dg, K) * out_pixels + p0;
  const scalar_t* dx = dy + out_pixels;
  const scalar_t* m = mask + mask_channel(b, g, k, dg, K) * out_pixels + p0;
  const int64_t i = k / geo.kernel_w;
  const int64_t j = k % geo.kernel_w;
  int64_t oy = p0 / geo.out_w;
  int64_t ox = p0 % geo.out_w;
  for (int64_t t = 0; t < count; ++t) {
    const auto mv = static_cast<acc_t>(m[t]);
    plan_sample<kGrad>(geo, i, j, oy, ox, static_cast<acc_t>(dy[t]), static_cast<acc_t>(dx[t]),
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

template <typename scalar_t>
void im2col_kernel(const scalar_t* input, const scalar_t* offset, const scalar_t* mask, scalar_t* columns,
                   int64_t batch, const ConvGeometry& geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = geo.kernel_h * geo.kernel_w;
  const int64_t dg = geo.deformable_groups;
  const int64_t group_channels = geo.channels / dg;
  const int64_t plane = geo.height * geo.width;
  const int64_t out_pixels = geo.out_h * geo.out_w;
  const int64_t tiles = (out_pixels + kTile - 1) / kTile;
  at::parallel_for(0, batch * dg * K * tiles, 1, [&](int64_t begin, int64_t end) {
    SamplePlan<acc_t, int64_t> plans[kTile];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t tile = item % tiles;
      const int64_t k = (item / tiles) % K;
      const int64_t g = (item / (tiles * K)) % dg;
      const int64_t b = item / (tiles * K * dg);
      const int64_t p0 = tile * kTile;
      const int64_t count = std::min(kTile, out_pixels - p0);
      plan_tile<false, true>(geo, offset, mask, b, g, k, p0, count, plans, static_cast<acc_t*>(nullptr));
      for (int64_t cg = 0; cg < group_channels; ++cg) {
        const int64_t c = g * group_channels + cg;
        const scalar_t* in_plane = input + (b * geo.channels + c) * plane;
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
          plan_tile<false, true>(geo, offset, mask, b, g, k, p0, count, plans, static_cast<acc_t*>(nullptr));
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
      plan_tile<true, false>(geo, offset, mask, b, g, k, p0, count, plans, masks);
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
    im2col_kernel<scalar_t>(input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(),
                            mask.const_data_ptr<scalar_t>(), columns.mutable_data_ptr<scalar_t>(), input.size(0),
                            geo);
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

constexpr Primitives kCpuPrimitives{im2col_cpu, col2im_cpu, col2im_coord_cpu};

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                       const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h,
                       int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
                       int64_t deformable_groups) {
  check_cpu_dtype(input);
  return modulated_deform_conv_forward(kCpuPrimitives, input, offset, mask, weight, bias, stride_h, stride_w, pad_h,
                                       pad_w, dil_h, dil_w, groups, deformable_groups);
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
}

}  // namespace dcn
