// CUDA primitives of DCNv2 and their registration for the CUDA dispatch key.
//
// One thread per (image, deformable group, channel block, tap, output pixel): it plans the bilinear
// sample once (dcn_sampling.h, shared with the CPU kernels) and loops over the channels of its
// block. Channel blocks split a group's channels only when the work is too small to fill a large
// GPU (im2col and col2im; col2im_coord sums over the channels of a group, so it keeps one block).
// Indices are 32-bit when every tensor involved fits, 64-bit otherwise.
// col2im scatters into grad_input with atomics (nondeterministic; reported through
// alertNotDeterministic); half/bfloat16 scatter into a float buffer to keep the sums accurate.
// Sampling coordinates, weights and sums are formed in at::opmath_type (float for half/bfloat16).
//
// The file also compiles without CUDA, as the `cuda_emulated` backend: see gpu_runtime.h and
// ../emulation/dcn_cuda_emulated.cpp. The GEMMs run in the driver (dcn.cpp) through ATen.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "../dcn.h"
#include "gpu_runtime.h"

namespace dcn {
namespace {

constexpr int kThreads = 256;
// Enough threads to fill the largest GPUs (H200: 132 SMs x 2048 resident threads ~ 2^18).
constexpr int64_t kTargetThreads = int64_t{1} << 18;
// A channel block re-plans its samples, so it keeps at least this many channels.
constexpr int64_t kMinBlockChannels = 2;

// Test knob, read on every launch (cheap): DCN_CUDA_INDEX64=1 takes the 64-bit index path even
// when 32 bits suffice (DCN_CUDA_MAX_BLOCKS, which caps the grid, is read by gpu::blocks_for).
bool force_index64() {
  const char* env = std::getenv("DCN_CUDA_INDEX64");
  return env != nullptr && env[0] == '1';
}

unsigned int blocks_for(int64_t work) { return gpu::blocks_for(work, kThreads); }

// How the channels of a deformable group are split between threads.
struct ChannelBlocks {
  int64_t count;  // blocks per group
  int64_t channels;  // channels per block (the last one may have fewer)
};

ChannelBlocks channel_blocks(int64_t work, int64_t group_channels) {
  const int64_t most = std::max<int64_t>((group_channels + kMinBlockChannels - 1) / kMinBlockChannels, 1);
  const int64_t wanted = std::clamp<int64_t>((kTargetThreads + work - 1) / work, 1, most);
  const int64_t channels = (group_channels + wanted - 1) / wanted;
  return {(group_channels + channels - 1) / channels, channels};
}

// Sizes of one image in the kernels' index type.
template <typename index_t>
struct Sizes {
  index_t C, K, dg, group_channels, plane, out_pixels, blocks, block_channels;
  DCN_HOST_DEVICE Sizes(const ConvGeometry& geo, ChannelBlocks cb)
      : C(static_cast<index_t>(geo.channels)),
        K(static_cast<index_t>(geo.kernel_h * geo.kernel_w)),
        dg(static_cast<index_t>(geo.deformable_groups)),
        group_channels(C / dg),
        plane(static_cast<index_t>(geo.height * geo.width)),
        out_pixels(static_cast<index_t>(geo.out_h * geo.out_w)),
        blocks(static_cast<index_t>(cb.count)),
        block_channels(static_cast<index_t>(cb.channels)) {}
};

// A flat work index split into (image, deformable group, channel block, tap, output pixel), pixel
// fastest so that neighbouring threads access neighbouring memory; [c_begin, c_end) are its channels.
template <typename index_t>
struct WorkItem {
  index_t b, g, k, p, c_begin, c_end;
  DCN_HOST_DEVICE WorkItem(index_t item, const Sizes<index_t>& sz) {
    p = item % sz.out_pixels;
    item /= sz.out_pixels;
    k = item % sz.K;
    item /= sz.K;
    const index_t block = item % sz.blocks;
    item /= sz.blocks;
    g = item % sz.dg;
    b = item / sz.dg;
    c_begin = g * sz.group_channels + block * sz.block_channels;
    c_end = min_index(c_begin + sz.block_channels, (g + 1) * sz.group_channels);
  }
  DCN_HOST_DEVICE static index_t min_index(index_t a, index_t b) { return a < b ? a : b; }
};

template <typename scalar_t, typename index_t>
DCN_KERNEL void im2col_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask, scalar_t* __restrict__ columns, int64_t work,
                              ConvGeometry geo, ChannelBlocks cb) {
  using acc_t = at::opmath_type<scalar_t>;
  const Sizes<index_t> sz(geo, cb);
  for (int64_t item = gpu::first_item(); item < work; item += gpu::item_stride()) {
    const WorkItem<index_t> w(static_cast<index_t>(item), sz);
    SamplePlan<acc_t, index_t> plan;
    plan_tap<false, true, scalar_t, index_t>(geo, offset, mask, w.b, w.g, w.k, w.p, plan);
    for (index_t c = w.c_begin; c < w.c_end; ++c) {
      const acc_t value = plan_value(plan, input + (w.b * sz.C + c) * sz.plane);
      columns[column_row(w.b, c, w.k, sz.C, sz.K) * sz.out_pixels + w.p] = static_cast<scalar_t>(value);
    }
  }
}

template <typename scalar_t, typename grad_t, typename index_t>
DCN_KERNEL void col2im_kernel(const scalar_t* __restrict__ grad_columns, const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask, grad_t* __restrict__ grad_input, int64_t work,
                              ConvGeometry geo, ChannelBlocks cb) {
  using acc_t = at::opmath_type<scalar_t>;
  const Sizes<index_t> sz(geo, cb);
  for (int64_t item = gpu::first_item(); item < work; item += gpu::item_stride()) {
    const WorkItem<index_t> w(static_cast<index_t>(item), sz);
    SamplePlan<acc_t, index_t> plan;
    plan_tap<false, true, scalar_t, index_t>(geo, offset, mask, w.b, w.g, w.k, w.p, plan);
    for (index_t c = w.c_begin; c < w.c_end; ++c) {
      const acc_t gv = static_cast<acc_t>(grad_columns[column_row(w.b, c, w.k, sz.C, sz.K) * sz.out_pixels + w.p]);
      grad_t* grad_plane = grad_input + (w.b * sz.C + c) * sz.plane;
      for (int corner = 0; corner < 4; ++corner) {
        if (plan.w[corner] != acc_t(0)) {
          gpu::atomic_add(grad_plane + plan.idx[corner], static_cast<grad_t>(plan.w[corner] * gv));
        }
      }
    }
  }
}

template <typename scalar_t, typename index_t>
DCN_KERNEL void col2im_coord_kernel(const scalar_t* __restrict__ grad_columns, const scalar_t* __restrict__ input,
                                    const scalar_t* __restrict__ offset, const scalar_t* __restrict__ mask,
                                    scalar_t* __restrict__ grad_offset, scalar_t* __restrict__ grad_mask, int64_t work,
                                    ConvGeometry geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const Sizes<index_t> sz(geo, ChannelBlocks{1, geo.channels / geo.deformable_groups});
  for (int64_t item = gpu::first_item(); item < work; item += gpu::item_stride()) {
    const WorkItem<index_t> w(static_cast<index_t>(item), sz);
    SamplePlan<acc_t, index_t> plan;
    const acc_t m = plan_tap<true, false, scalar_t, index_t>(geo, offset, mask, w.b, w.g, w.k, w.p, plan);
    acc_t acc_mask = 0, acc_y = 0, acc_x = 0;
    for (index_t c = w.c_begin; c < w.c_end; ++c) {
      const acc_t gv = static_cast<acc_t>(grad_columns[column_row(w.b, c, w.k, sz.C, sz.K) * sz.out_pixels + w.p]);
      acc_t value, d_y, d_x;
      plan_value_and_grad(plan, input + (w.b * sz.C + c) * sz.plane, value, d_y, d_x);
      acc_mask += gv * value;
      acc_y += gv * d_y;
      acc_x += gv * d_x;
    }
    const index_t dy_channel = offset_channel(w.b, w.g, w.k, sz.dg, sz.K);
    grad_offset[dy_channel * sz.out_pixels + w.p] = static_cast<scalar_t>(acc_y * m);
    grad_offset[(dy_channel + 1) * sz.out_pixels + w.p] = static_cast<scalar_t>(acc_x * m);
    grad_mask[mask_channel(w.b, w.g, w.k, sz.dg, sz.K) * sz.out_pixels + w.p] = static_cast<scalar_t>(acc_mask);
  }
}

// Calls fn(int32_t{}) when every flat index (the tensors' sizes and the work items) fits in int32,
// else fn(int64_t{}).
template <typename Fn>
void with_index_type(std::initializer_list<int64_t> numels, const Fn& fn) {
  bool fits = !force_index64();
  for (const int64_t n : numels) {
    fits = fits && n <= std::numeric_limits<int32_t>::max();
  }
  if (fits) {
    fn(int32_t{0});
  } else {
    fn(int64_t{0});
  }
}

// (image, deformable group, tap, output pixel) items of a chunk.
int64_t work_items(const at::Tensor& offset, const ConvGeometry& geo) {
  return offset.size(0) * geo.deformable_groups * geo.kernel_h * geo.kernel_w * geo.out_h * geo.out_w;
}

void im2col_cuda(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& columns,
                 const ConvGeometry& geo) {
  const int64_t items = work_items(offset, geo);
  if (items == 0) {
    return;
  }
  const ChannelBlocks cb = channel_blocks(items, geo.channels / geo.deformable_groups);
  const int64_t work = items * cb.count;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcn_im2col_cuda", [&] {
    with_index_type({input.numel(), offset.numel(), columns.numel(), work}, [&](auto zero_index) {
      using index_t = decltype(zero_index);
      gpu::launch(im2col_kernel<scalar_t, index_t>, blocks_for(work), kThreads, input.const_data_ptr<scalar_t>(),
                  offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
                  columns.mutable_data_ptr<scalar_t>(), work, geo, cb);
    });
  });
}

void col2im_cuda(const at::Tensor& grad_columns, const at::Tensor& offset, const at::Tensor& mask,
                 const at::Tensor& grad_input, const ConvGeometry& geo) {
  const int64_t items = work_items(offset, geo);
  if (items == 0) {
    return;
  }
  const ChannelBlocks cb = channel_blocks(items, geo.channels / geo.deformable_groups);
  const int64_t work = items * cb.count;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_columns.scalar_type(), "dcn_col2im_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // Half/bfloat16 atomics are slow and lose precision: accumulate in float, then cast.
    constexpr bool kReduced = !std::is_same_v<acc_t, scalar_t>;
    const at::Tensor target = kReduced ? at::zeros(grad_input.sizes(), grad_input.options().dtype(at::kFloat))
                                       : grad_input;
    with_index_type({grad_input.numel(), offset.numel(), grad_columns.numel(), work}, [&](auto zero_index) {
      using index_t = decltype(zero_index);
      gpu::launch(col2im_kernel<scalar_t, acc_t, index_t>, blocks_for(work), kThreads,
                  grad_columns.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(),
                  mask.const_data_ptr<scalar_t>(), target.mutable_data_ptr<acc_t>(), work, geo, cb);
    });
    if (kReduced) {
      grad_input.add_(target);
    }
  });
}

void col2im_coord_cuda(const at::Tensor& grad_columns, const at::Tensor& input, const at::Tensor& offset,
                       const at::Tensor& mask, const at::Tensor& grad_offset, const at::Tensor& grad_mask,
                       const ConvGeometry& geo) {
  const int64_t work = work_items(offset, geo);
  if (work == 0) {
    return;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcn_col2im_coord_cuda", [&] {
    with_index_type({input.numel(), offset.numel(), grad_columns.numel(), work}, [&](auto zero_index) {
      using index_t = decltype(zero_index);
      gpu::launch(col2im_coord_kernel<scalar_t, index_t>, blocks_for(work), kThreads,
                  grad_columns.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(),
                  offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
                  grad_offset.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), work, geo);
    });
  });
}

constexpr Primitives kCudaPrimitives{im2col_cuda, col2im_cuda, col2im_coord_cuda};

at::Tensor forward_cuda(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                        const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h,
                        int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
                        int64_t deformable_groups) {
  check_same_device(input, {&offset, &mask, &weight}, bias);  // before the guard reads input's device
  const gpu::DeviceGuard guard(input.device());
  return modulated_deform_conv_forward(kCudaPrimitives, input, offset, mask, weight, bias, stride_h, stride_w, pad_h,
                                       pad_w, dil_h, dil_w, groups, deformable_groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w,
    int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups, int64_t deformable_groups,
    std::array<bool, 3> output_mask) {
  check_same_device(input, {&grad_output, &offset, &mask, &weight}, bias);
  const gpu::DeviceGuard guard(input.device());
  // grad_input is summed with atomics in an unspecified order; the other gradients are deterministic.
  if (output_mask[0]) {
    at::globalContext().alertNotDeterministic("dcn::modulated_deform_conv_backward (CUDA)");
  }
  return modulated_deform_conv_backward(kCudaPrimitives, grad_output, input, offset, mask, weight, bias, stride_h,
                                        stride_w, pad_h, pad_w, dil_h, dil_w, groups, deformable_groups, output_mask);
}

}  // namespace

#if !defined(DCN_CUDA_EMULATION)
TORCH_LIBRARY_IMPL(dcn, CUDA, m) {
  m.impl("modulated_deform_conv", &forward_cuda);
  m.impl("modulated_deform_conv_backward", &backward_cuda);
}
#endif

}  // namespace dcn
