// CUDA kernels of the dynamic-filter op: one thread per output element, the math of each element
// from ../dynamic_filter.h (shared with the CPU kernels). All three kernels are gathers: no
// atomics, deterministic. half/bfloat16 accumulate in float. Indices are 64-bit throughout (the
// per-element work is 9 multiply-adds; the index math is not worth a 32-bit path).
//
// The file also compiles without CUDA, as the `dcn::dynamic_filter_emulated` ops: see
// gpu_runtime.h and ../emulation/dynamic_filter_cuda_emulated.cpp.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../dynamic_filter.h"
#include "../dynamic_filter_op.h"
#include "gpu_runtime.h"

namespace dcn {
namespace {

using dynamic_filter::kTaps;

constexpr int kThreads = 256;

void check_channel_major(const at::Tensor& kernels) {
  TORCH_CHECK(kernels.dim() == 4, "dynamic_filter: tap-major (B, 9, C, H, W) kernels are read by the CPU kernels only");
}

// out[bc, h, w] for every element (bc = image * C + channel).
template <typename scalar_t>
DCN_KERNEL void forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ k,
                               scalar_t* __restrict__ out, int64_t n, int64_t height, int64_t width, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width;
  for (int64_t i = gpu::first_item(); i < n; i += gpu::item_stride()) {
    const int64_t bc = i / plane;
    const int64_t p = i % plane;
    out[i] = static_cast<scalar_t>(dynamic_filter::filter_at<acc_t>(x + bc * plane, k + bc * kTaps * plane, plane,
                                                                     p / width, p % width, height, width, d));
  }
}

// grad_x[bc, h, w] for every element.
template <typename scalar_t>
DCN_KERNEL void grad_input_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ k,
                                  scalar_t* __restrict__ gx, int64_t n, int64_t height, int64_t width, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width;
  for (int64_t i = gpu::first_item(); i < n; i += gpu::item_stride()) {
    const int64_t bc = i / plane;
    const int64_t p = i % plane;
    gx[i] = static_cast<scalar_t>(dynamic_filter::grad_input_at<acc_t>(g + bc * plane, k + bc * kTaps * plane, plane,
                                                                        p / width, p % width, height, width, d));
  }
}

// grad_k[bc * 9 + t, h, w] for every element.
template <typename scalar_t>
DCN_KERNEL void grad_kernels_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                    scalar_t* __restrict__ gk, int64_t n, int64_t height, int64_t width, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width;
  for (int64_t i = gpu::first_item(); i < n; i += gpu::item_stride()) {
    const int64_t row = i / plane;  // bc * 9 + t
    const int64_t p = i % plane;
    const int64_t bc = row / kTaps;
    gk[i] = static_cast<scalar_t>(dynamic_filter::grad_kernel_at<acc_t>(g + bc * plane, x + bc * plane, row % kTaps,
                                                                         p / width, p % width, height, width, d));
  }
}

at::Tensor dynamic_filter_cuda(const at::Tensor& x_, const at::Tensor& kernels_, int64_t dilation) {
  check_dynamic_filter_args(x_, kernels_, dilation);  // before the guard reads x's device
  check_channel_major(kernels_);
  const gpu::DeviceGuard guard(x_.device());
  const at::Tensor x = x_.contiguous();
  const at::Tensor kernels = kernels_.contiguous();
  at::Tensor out = at::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "dynamic_filter_cuda", [&] {
    gpu::launch(forward_kernel<scalar_t>, gpu::blocks_for(n, kThreads), kThreads, x.const_data_ptr<scalar_t>(),
                kernels.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, x.size(2), x.size(3),
                dilation);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> dynamic_filter_backward_cuda(const at::Tensor& grad_, const at::Tensor& x_,
                                                                const at::Tensor& kernels_, int64_t dilation) {
  check_dynamic_filter_args(x_, kernels_, dilation, &grad_);
  check_channel_major(kernels_);
  const gpu::DeviceGuard guard(x_.device());
  const at::Tensor grad = grad_.contiguous();
  const at::Tensor x = x_.contiguous();
  const at::Tensor kernels = kernels_.contiguous();
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_kernels = at::empty_like(kernels);
  const int64_t n = x.numel();
  if (n == 0) return {grad_x, grad_kernels};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "dynamic_filter_backward_cuda", [&] {
    gpu::launch(grad_input_kernel<scalar_t>, gpu::blocks_for(n, kThreads), kThreads, grad.const_data_ptr<scalar_t>(),
                kernels.const_data_ptr<scalar_t>(), grad_x.mutable_data_ptr<scalar_t>(), n, x.size(2), x.size(3),
                dilation);
    gpu::launch(grad_kernels_kernel<scalar_t>, gpu::blocks_for(kTaps * n, kThreads), kThreads,
                grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                grad_kernels.mutable_data_ptr<scalar_t>(), kTaps * n, x.size(2), x.size(3), dilation);
  });
  return {grad_x, grad_kernels};
}

}  // namespace

#if !defined(DCN_CUDA_EMULATION)
TORCH_LIBRARY_IMPL(dcn, CUDA, m) {
  m.impl("dynamic_filter", &dynamic_filter_cuda);
  m.impl("dynamic_filter_backward", &dynamic_filter_backward_cuda);
}
#endif

}  // namespace dcn
