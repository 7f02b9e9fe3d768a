// CUDA primitives of DCNv2 and their registration for the CUDA dispatch key.
//
// One thread per (image, deformable group, tap, output pixel): it plans the bilinear sample once
// (dcn_sampling.h, shared with the CPU kernels) and loops over the channels of its group.
// Indices are 32-bit when every tensor involved fits, 64-bit otherwise.
// col2im scatters into grad_input with atomics (nondeterministic; reported through
// alertNotDeterministic); half/bfloat16 scatter into a float buffer to keep the sums accurate.
//
// Only c10/cuda and ATen/cuda/Atomic.cuh are included: ATen/cuda/CUDAContext.h needs the cuBLAS
// and cuSPARSE headers, which this toolkit lacks. The GEMMs run in the driver through ATen.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "../dcn.h"

namespace dcn {
namespace {

constexpr int kThreads = 256;

// Number of blocks for `work` threads; the kernels use grid-stride loops (with a 64-bit counter,
// so the stride never overflows), hence capping is safe.
unsigned int blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535L * 32));
}

// Sizes of one image in the kernels' index type.
template <typename index_t>
struct Sizes {
  index_t C, K, dg, group_channels, plane, out_pixels;
  __device__ explicit Sizes(const ConvGeometry& geo)
      : C(static_cast<index_t>(geo.channels)),
        K(static_cast<index_t>(geo.kernel_h * geo.kernel_w)),
        dg(static_cast<index_t>(geo.deformable_groups)),
        group_channels(C / dg),
        plane(static_cast<index_t>(geo.height * geo.width)),
        out_pixels(static_cast<index_t>(geo.out_h * geo.out_w)) {}
};

// A flat work index split into (image, deformable group, tap, output pixel), pixel fastest so
// that neighbouring threads access neighbouring memory.
template <typename index_t>
struct WorkItem {
  index_t b, g, k, p;
  __device__ WorkItem(index_t item, const Sizes<index_t>& sz)
      : b(item / (sz.out_pixels * sz.K * sz.dg)),
        g((item / (sz.out_pixels * sz.K)) % sz.dg),
        k((item / sz.out_pixels) % sz.K),
        p(item % sz.out_pixels) {}
};

template <typename scalar_t, typename index_t>
__global__ void im2col_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask, scalar_t* __restrict__ columns, int64_t work,
                              ConvGeometry geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const Sizes<index_t> sz(geo);
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < work;
       item += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const WorkItem<index_t> w(static_cast<index_t>(item), sz);
    SamplePlan<acc_t, index_t> plan;
    plan_tap<false, true, scalar_t, index_t>(geo, offset, mask, w.b, w.g, w.k, w.p, plan);
    for (index_t cg = 0; cg < sz.group_channels; ++cg) {
      const index_t c = w.g * sz.group_channels + cg;
      const scalar_t* in_plane = input + (w.b * sz.C + c) * sz.plane;
      const acc_t value = plan_value(plan, in_plane);
      columns[column_row(w.b, c, w.k, sz.C, sz.K) * sz.out_pixels + w.p] = static_cast<scalar_t>(value);
    }
  }
}

template <typename scalar_t, typename grad_t, typename index_t>
__global__ void col2im_kernel(const scalar_t* __restrict__ grad_columns, const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask, grad_t* __restrict__ grad_input, int64_t work,
                              ConvGeometry geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const Sizes<index_t> sz(geo);
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < work;
       item += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const WorkItem<index_t> w(static_cast<index_t>(item), sz);
    SamplePlan<acc_t, index_t> plan;
    plan_tap<false, true, scalar_t, index_t>(geo, offset, mask, w.b, w.g, w.k, w.p, plan);
    for (index_t cg = 0; cg < sz.group_channels; ++cg) {
      const index_t c = w.g * sz.group_channels + cg;
      const acc_t gv = static_cast<acc_t>(grad_columns[column_row(w.b, c, w.k, sz.C, sz.K) * sz.out_pixels + w.p]);
      grad_t* grad_plane = grad_input + (w.b * sz.C + c) * sz.plane;
      for (int corner = 0; corner < 4; ++corner) {
        if (plan.w[corner] != acc_t(0)) {
          gpuAtomicAdd(grad_plane + plan.idx[corner], static_cast<grad_t>(plan.w[corner] * gv));
        }
      }
    }
  }
}

template <typename scalar_t, typename index_t>
__global__ void col2im_coord_kernel(const scalar_t* __restrict__ grad_columns, const scalar_t* __restrict__ input,
                                    const scalar_t* __restrict__ offset, const scalar_t* __restrict__ mask,
                                    scalar_t* __restrict__ grad_offset, scalar_t* __restrict__ grad_mask, int64_t work,
                                    ConvGeometry geo) {
  using acc_t = at::opmath_type<scalar_t>;
  const Sizes<index_t> sz(geo);
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < work;
       item += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const WorkItem<index_t> w(static_cast<index_t>(item), sz);
    SamplePlan<acc_t, index_t> plan;
    const acc_t m = plan_tap<true, false, scalar_t, index_t>(geo, offset, mask, w.b, w.g, w.k, w.p, plan);
    acc_t acc_mask = 0, acc_y = 0, acc_x = 0;
    for (index_t cg = 0; cg < sz.group_channels; ++cg) {
      const index_t c = w.g * sz.group_channels + cg;
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

// 32-bit indexing is enough when every flat index of the tensors involved fits in int32.
bool fits_int32(std::initializer_list<int64_t> numels) {
  for (const int64_t n : numels) {
    if (n > std::numeric_limits<int32_t>::max()) {
      return false;
    }
  }
  return true;
}

int64_t work_items(const at::Tensor& offset, const ConvGeometry& geo) {
  return offset.size(0) * geo.deformable_groups * geo.kernel_h * geo.kernel_w * geo.out_h * geo.out_w;
}

void im2col_cuda(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& columns,
                 const ConvGeometry& geo) {
  const int64_t work = work_items(offset, geo);
  if (work == 0) {
    return;
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcn_im2col_cuda", [&] {
    const auto launch = [&](auto zero_index) {
      using index_t = decltype(zero_index);
      im2col_kernel<scalar_t, index_t><<<blocks_for(work), kThreads, 0, stream>>>(
          input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
          columns.mutable_data_ptr<scalar_t>(), work, geo);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (fits_int32({input.numel(), offset.numel(), columns.numel()})) {
      launch(int32_t{0});
    } else {
      launch(int64_t{0});
    }
  });
}

void col2im_cuda(const at::Tensor& grad_columns, const at::Tensor& offset, const at::Tensor& mask,
                 const at::Tensor& grad_input, const ConvGeometry& geo) {
  const int64_t work = work_items(offset, geo);
  if (work == 0) {
    return;
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_columns.scalar_type(), "dcn_col2im_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // Half/bfloat16 atomics are slow and lose precision: accumulate in float, then cast.
    constexpr bool kReduced = !std::is_same_v<acc_t, scalar_t>;
    const at::Tensor target = kReduced ? at::zeros(grad_input.sizes(), grad_input.options().dtype(at::kFloat))
                                       : grad_input;
    const auto launch = [&](auto zero_index) {
      using index_t = decltype(zero_index);
      col2im_kernel<scalar_t, acc_t, index_t><<<blocks_for(work), kThreads, 0, stream>>>(
          grad_columns.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
          target.mutable_data_ptr<acc_t>(), work, geo);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (fits_int32({grad_input.numel(), offset.numel(), grad_columns.numel()})) {
      launch(int32_t{0});
    } else {
      launch(int64_t{0});
    }
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
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcn_col2im_coord_cuda", [&] {
    const auto launch = [&](auto zero_index) {
      using index_t = decltype(zero_index);
      col2im_coord_kernel<scalar_t, index_t><<<blocks_for(work), kThreads, 0, stream>>>(
          grad_columns.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(),
          mask.const_data_ptr<scalar_t>(), grad_offset.mutable_data_ptr<scalar_t>(),
          grad_mask.mutable_data_ptr<scalar_t>(), work, geo);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (fits_int32({input.numel(), offset.numel(), grad_columns.numel()})) {
      launch(int32_t{0});
    } else {
      launch(int64_t{0});
    }
  });
}

constexpr Primitives kCudaPrimitives{im2col_cuda, col2im_cuda, col2im_coord_cuda};

at::Tensor forward_cuda(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                        const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h,
                        int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
                        int64_t deformable_groups) {
  const c10::cuda::CUDAGuard guard(input.device());
  return modulated_deform_conv_forward(kCudaPrimitives, input, offset, mask, weight, bias, stride_h, stride_w, pad_h,
                                       pad_w, dil_h, dil_w, groups, deformable_groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w,
    int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups, int64_t deformable_groups) {
  const c10::cuda::CUDAGuard guard(input.device());
  // grad_input is summed with atomics in an unspecified order.
  at::globalContext().alertNotDeterministic("dcn::modulated_deform_conv_backward (CUDA)");
  return modulated_deform_conv_backward(kCudaPrimitives, grad_output, input, offset, mask, weight, bias, stride_h,
                                        stride_w, pad_h, pad_w, dil_h, dil_w, groups, deformable_groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(dcn, CUDA, m) {
  m.impl("modulated_deform_conv", &forward_cuda);
  m.impl("modulated_deform_conv_backward", &backward_cuda);
}

}  // namespace dcn
