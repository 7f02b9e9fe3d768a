// Interface between the device-agnostic driver (dcn.cpp) and the per-device primitives
// (cpu/dcn_cpu.cpp, cuda/dcn_cuda.cu).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <initializer_list>
#include <optional>
#include <tuple>

#include "dcn_sampling.h"

namespace dcn {

// The three sampling primitives of a device for the generic driver (dcn.cpp; the CUDA kernels and
// their emulation; the CPU has its own driver, cpu/dcn_cpu.cpp). All tensors are contiguous and
// cover one batch chunk:
//   input/grad_input (n, C, H, W), offset/grad_offset (n, dg*2*K, Ho, Wo),
//   mask/grad_mask (n, dg*K, Ho, Wo), columns (n, C*K, Ho*Wo) with row c*K + k.
struct Primitives {
  // columns = mask * bilinear(input) for every (channel, tap, output pixel).
  void (*im2col)(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                 const at::Tensor& columns, const ConvGeometry& geo);
  // grad_input (zero-initialised by the caller) += scatter of grad_columns through the samples.
  void (*col2im)(const at::Tensor& grad_columns, const at::Tensor& offset, const at::Tensor& mask,
                 const at::Tensor& grad_input, const ConvGeometry& geo);
  // grad_offset and grad_mask (fully overwritten) from grad_columns and the input.
  void (*col2im_coord)(const at::Tensor& grad_columns, const at::Tensor& input, const at::Tensor& offset,
                       const at::Tensor& mask, const at::Tensor& grad_offset, const at::Tensor& grad_mask,
                       const ConvGeometry& geo);
};

// Argument lists of the two op schemas (string literals to follow the op name); the emulated ops
// reuse them.
#define DCN_FORWARD_SCHEMA                                                \
  "(Tensor input, Tensor offset, Tensor mask, Tensor weight, Tensor? bias, " \
  "int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, " \
  "int groups, int deformable_groups) -> Tensor"
// output_mask = which of (grad_input, grad_offset and grad_mask, grad_weight) to compute; the
// others are returned undefined (None). grad_bias is always computed.
#define DCN_BACKWARD_SCHEMA                                                                      \
  "(Tensor grad_output, Tensor input, Tensor offset, Tensor mask, "                              \
  "Tensor weight, Tensor? bias, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, "  \
  "int dil_w, int groups, int deformable_groups, bool[3] output_mask) "                         \
  "-> (Tensor grad_input, Tensor grad_offset, Tensor grad_mask, Tensor grad_weight, Tensor grad_bias)"

// Inference entry point for a strip of output rows: offset and mask hold the rows
// [first_row, first_row + Hs) only, and those Hs rows of the output are written into out (the
// whole output). The full-size offset/mask maps then never exist (they have 3*dg*K channels: 216
// for ADFNet). No autograd.
#define DCN_ROWS_SCHEMA                                                   \
  "(Tensor input, Tensor offset, Tensor mask, Tensor weight, Tensor? bias, " \
  "int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, " \
  "int groups, int deformable_groups, int first_row, Tensor(a!) out) -> ()"

// Validates all arguments (shapes, dtypes, devices, hyper-parameters) and returns the geometry.
// With first_row >= 0, offset and mask cover only the output rows [first_row, first_row + their
// height) and the geometry returned is that strip's (the rows entry point).
ConvGeometry check_arguments(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                             const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h,
                             int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w,
                             int64_t groups, int64_t deformable_groups, int64_t first_row = -1);

// How the work is split under the column budget (DCN_COLUMN_BUDGET_MB, default 32 MB): `images`
// images per chunk while a whole image's columns fit, otherwise one image at a time in blocks of
// `rows` output rows, so the column buffer never exists at full resolution for large images.
struct Tiling {
  int64_t images;
  int64_t rows;
};
Tiling plan_tiling(int64_t batch, const ConvGeometry& geo, int64_t column_bytes_per_row);

// The geometry of output rows [row, row + rows) of `geo` (the padding shifted).
ConvGeometry row_block(const ConvGeometry& geo, int64_t row, int64_t rows);

// The first elements of a contiguous buffer viewed as a contiguous tensor of `sizes` (the buffer of
// a full block reused for the smaller last block).
at::Tensor front(const at::Tensor& buffer, at::IntArrayRef sizes);

// ValueError unless grad_output has input's dtype and device and the output's shape (batch, out_channels,
// out_h, out_w): the backward drivers' (CPU and generic) check.
void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input, const ConvGeometry& geo,
                       int64_t batch, int64_t out_channels);

// A dense channels_last tensor that is not also NCHW-contiguous.
bool is_channels_last(const at::Tensor& t);

// ValueError unless every tensor is on input's device. Device-specific entry points call it before
// building a device guard from input (a guard for the wrong device type would fail obscurely).
void check_same_device(const at::Tensor& input, std::initializer_list<const at::Tensor*> others,
                       const std::optional<at::Tensor>& bias);

at::Tensor modulated_deform_conv_forward(const Primitives& prims, const at::Tensor& input, const at::Tensor& offset,
                                         const at::Tensor& mask, const at::Tensor& weight,
                                         const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w,
                                         int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
                                         int64_t deformable_groups);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> modulated_deform_conv_backward(
    const Primitives& prims, const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& offset,
    const at::Tensor& mask, const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
    int64_t deformable_groups, std::array<bool, 3> output_mask);

}  // namespace dcn
