// Host-side interface of the dynamic-filter op (schemas in dynamic_filter.cpp, kernels in
// cpu/dynamic_filter_cpu.cpp and cuda/dynamic_filter_cuda.cu, math in dynamic_filter.h).
#pragma once

#include <ATen/core/Tensor.h>

// Argument lists of the two op schemas (string literals to follow the op name), shared with the
// emulated ops (emulation/dynamic_filter_cuda_emulated.cpp) so that both pairs take the same arguments.
#define DF_FORWARD_SCHEMA "(Tensor x, Tensor kernels, int dilation) -> Tensor"
#define DF_BACKWARD_SCHEMA \
  "(Tensor grad, Tensor x, Tensor kernels, int dilation) -> (Tensor grad_x, Tensor grad_kernels)"

// Inference strips: kernels (B, 9C, Hs, W) for the output rows [first_row, first_row + Hs) only,
// x whole; writes those rows of out (x's shape) (CPU).
#define DF_ROWS_SCHEMA "(Tensor x, Tensor kernels, int dilation, int first_row, Tensor(a!) out) -> ()"

namespace dcn {

// Checks x (B, C, H, W), kernels (B, 9C, H, W) or tap-major (B, 9, C, H, W) (the CPU kernels only) on one device with one dtype, dilation >= 1 and,
// when given, grad (B, C, H, W); raises a message naming the mismatch otherwise. With
// first_row >= 0 the kernels cover the rows [first_row, first_row + Hs) of x only.
void check_dynamic_filter_args(const at::Tensor& x, const at::Tensor& kernels, int64_t dilation,
                               const at::Tensor* grad = nullptr, int64_t first_row = -1);

}  // namespace dcn
