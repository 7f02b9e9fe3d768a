// CPU driver of the dynamic-filter op (math in ../dynamic_filter.h, kernels in kernels_impl.h, run
// in the instruction set chosen at run time).
//
// x, grad and the outputs keep x's layout: channels_last tensors (the layout in which oneDNN
// convolutions are fastest and allocate least) are read and written in place, anything else as
// NCHW. The kernels tensor is (B, 9C, H, W) with tap t of channel c at channel 9c + t, or
// (B, 9, C, H, W) "tap-major" (the CPU only): a tap's C channels together, which in channels_last
// lets the kernels load a tap's weights as one channel vector (adfnet's generated_filter makes
// them so, by reordering the rows of the 1x1 conv that generates them). Any kernels strides are
// read in place, and grad_kernels has the kernels' strides.
//
// Work is split over (image, row) with at::parallel_for; every output element is written by one
// task (all gathers), so results are deterministic. float32, float64 and bfloat16 (float
// accumulation); float16 runs through float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../dcn.h"
#include "../dynamic_filter.h"
#include "../dynamic_filter_op.h"
#include "aten_data.h"

namespace dcn {
namespace {

using cpu::BF16;
using cpu::Data;
using cpu::data;
using cpu::mutable_data;
using cpu::FilterGeometry;

const cpu::FilterKernels<float>& kernels_for(float*) { return cpu::kernels().filter_f32; }
const cpu::FilterKernels<double>& kernels_for(double*) { return cpu::kernels().filter_f64; }
const cpu::FilterKernels<BF16>& kernels_for(BF16*) { return cpu::kernels().filter_bf16; }


// x (or grad) in the layout the op works in: channels_last as it is, else contiguous NCHW.
at::Tensor in_layout(const at::Tensor& t, bool cl) {
  return t.contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

// Kernels as the kernels read them: NCHW work reads rows, so a row must be contiguous there.
at::Tensor readable_kernels(const at::Tensor& k, bool cl) { return cl || k.stride(-1) == 1 ? k : k.contiguous(); }

// The strides of a kernels tensor (4-D channel-major or 5-D tap-major) in `f`.
void set_kernel_strides(FilterGeometry& f, const at::Tensor& k) {
  if (k.dim() == 5) {
    f.k_tap = k.stride(1);
    f.k_chan = k.stride(2);
  } else {
    f.k_tap = k.stride(1);
    f.k_chan = 9 * k.stride(1);
  }
  f.k_row = k.stride(-2);
  f.k_col = k.stride(-1);
}

FilterGeometry geometry(const at::Tensor& x, const at::Tensor& k, const at::Tensor& out, int64_t dilation) {
  FilterGeometry f;
  f.channels = x.size(1);
  f.height = x.size(2);
  f.width = x.size(3);
  f.dilation = dilation;
  f.x_channel = x.stride(1);
  f.x_row = x.stride(2);
  f.x_col = x.stride(3);
  f.o_channel = out.stride(1);
  f.o_row = out.stride(2);
  f.o_col = out.stride(3);
  set_kernel_strides(f, k);
  return f;
}

// Work per (image, row) task: about 64k multiply-adds per grain.
int64_t row_grain(const FilterGeometry& f) {
  return std::max<int64_t>(1, (64 * 1024) / (dynamic_filter::kTaps * std::max<int64_t>(f.width * f.channels, 1)));
}

// Output rows [first_row, first_row + kernels' height) of the filter into `out` (B, C, those rows, W), which
// has the layout the kernels write: x's (channels_last or contiguous NCHW) or a view of such a tensor's rows.
void filter_rows_into(const at::Tensor& x_, const at::Tensor& kernels_, int64_t dilation, int64_t first_row,
                      const at::Tensor& out) {
  const bool cl = is_channels_last(x_);
  const at::Tensor x = in_layout(x_, cl);
  const at::Tensor kernels = readable_kernels(kernels_, cl);
  const FilterGeometry f = geometry(x, kernels, out, dilation);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "dynamic_filter_cpu", [&] {
    using T = typename Data<scalar_t>::type;
    const auto kernel = kernels_for(static_cast<T*>(nullptr)).forward;
    const T* xp = data<T>(x);
    const T* kp = data<T>(kernels);
    T* op = mutable_data<T>(out);
    cpu::for_image_ranges(x.size(0), out.size(2), row_grain(f), [&](int64_t b, int64_t r0, int64_t r1) {
      kernel(f, xp + b * x.stride(0), kp + b * kernels.stride(0), op + b * out.stride(0), first_row, r0, r1);
    });
  });
}

// Output rows [first_row, first_row + kernels' height) of the filter, in x's layout.
at::Tensor filter_rows(const at::Tensor& x, const at::Tensor& kernels, int64_t dilation, int64_t first_row) {
  if (x.scalar_type() == at::kHalf) {
    return filter_rows(x.to(at::kFloat), kernels.to(at::kFloat), dilation, first_row).to(at::kHalf);
  }
  const bool cl = is_channels_last(x);
  at::Tensor out = at::empty({x.size(0), x.size(1), kernels.size(-2), x.size(3)},
                             x.options().memory_format(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  filter_rows_into(x, kernels, dilation, first_row, out);
  return out;
}

at::Tensor forward_cpu(const at::Tensor& x, const at::Tensor& kernels, int64_t dilation) {
  check_dynamic_filter_args(x, kernels, dilation);
  return filter_rows(x, kernels, dilation, 0);
}

// The rows a strip's kernels cover, written into those rows of `out` (x's shape): inference assembles the
// whole output in place, strip by strip, instead of copying each strip into it.
void forward_rows_cpu(const at::Tensor& x, const at::Tensor& kernels, int64_t dilation, int64_t first_row,
                      const at::Tensor& out) {
  check_dynamic_filter_args(x, kernels, dilation, nullptr, first_row);
  TORCH_CHECK(out.sizes() == x.sizes() && out.scalar_type() == x.scalar_type() && out.device() == x.device(),
              "dynamic_filter_rows: out must match x in shape, dtype and device, got ", out.sizes(), " ",
              out.scalar_type(), " on ", out.device(), " for x ", x.sizes(), " ", x.scalar_type());
  const at::Tensor rows = out.narrow(2, first_row, kernels.size(-2));
  const bool cl = is_channels_last(x);
  if (x.scalar_type() == at::kHalf || !out.is_contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous)) {
    rows.copy_(filter_rows(x, kernels, dilation, first_row));  // not a layout the kernels write
    return;
  }
  filter_rows_into(x, kernels, dilation, first_row, rows);
}

// An uninitialised tensor with t's strides when they are dense (a tap-major view of a channels_last
// conv output is), else contiguous.
at::Tensor empty_with_strides_of(const at::Tensor& t) {
  return t.is_non_overlapping_and_dense() ? at::empty_strided(t.sizes(), t.strides(), t.options())
                                          : at::empty(t.sizes(), t.options());
}

std::tuple<at::Tensor, at::Tensor> gradients(const at::Tensor& grad_, const at::Tensor& x_, const at::Tensor& kernels_,
                                             int64_t dilation) {
  if (x_.scalar_type() == at::kHalf) {
    auto [gx, gk] = gradients(grad_.to(at::kFloat), x_.to(at::kFloat), kernels_.to(at::kFloat), dilation);
    return {gx.to(at::kHalf), gk.to(at::kHalf)};
  }
  const bool cl = is_channels_last(x_);
  const at::Tensor x = in_layout(x_, cl);
  const at::Tensor grad = in_layout(grad_, cl);
  const at::Tensor kernels = readable_kernels(kernels_, cl);
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_kernels = empty_with_strides_of(kernels);
  const FilterGeometry f = geometry(x, kernels, x, dilation);
  FilterGeometry fk = f;
  set_kernel_strides(fk, grad_kernels);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "dynamic_filter_backward_cpu", [&] {
    using T = typename Data<scalar_t>::type;
    const auto& k = kernels_for(static_cast<T*>(nullptr));
    const T* gp = data<T>(grad);
    const T* xp = data<T>(x);
    const T* kp = data<T>(kernels);
    T* gxp = mutable_data<T>(grad_x);
    T* gkp = mutable_data<T>(grad_kernels);
    const int64_t xs = x.stride(0), ks = kernels.stride(0), gks = grad_kernels.stride(0);
    cpu::for_image_ranges(x.size(0), x.size(2), row_grain(f), [&](int64_t b, int64_t r0, int64_t r1) {
      k.grad_input(f, gp + b * xs, kp + b * ks, gxp + b * xs, r0, r1);
      k.grad_kernels(fk, gp + b * xs, xp + b * xs, gkp + b * gks, r0, r1);
    });
  });
  return {grad_x, grad_kernels};
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& kernels,
                                                int64_t dilation) {
  check_dynamic_filter_args(x, kernels, dilation, &grad);
  return gradients(grad, x, kernels, dilation);
}

}  // namespace

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("dynamic_filter", &forward_cpu);
  m.impl("dynamic_filter_backward", &backward_cpu);
  m.impl("dynamic_filter_rows", &forward_rows_cpu);
}

}  // namespace dcn
