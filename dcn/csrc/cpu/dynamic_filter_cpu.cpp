// CPU kernels of the dynamic-filter op (math in ../dynamic_filter.h).
//
// Work is one output row (image, channel, row) at a time, rows split with at::parallel_for, so
// results are deterministic. A row is 9 shifted multiply-adds over the columns where the tap is
// inside the image (valid_columns), contiguous loops the compiler vectorises; the row accumulates
// in a small buffer of the accumulation type (float for bfloat16/half), nothing else is allocated.
//
// The forward also reads channels_last tensors in place (the layout in which oneDNN convolutions
// are fastest and allocate least) and then writes a channels_last output: one task per image row,
// per pixel the channels of its 9 neighbours (a zero row for taps outside the image).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../dynamic_filter.h"
#include "../dynamic_filter_op.h"

namespace dcn {
namespace {

using dynamic_filter::kTaps;
using dynamic_filter::shift;
using dynamic_filter::valid_columns;

// Rows per parallel task: about 64k multiply-adds, enough to amortise the scheduling.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, (64 * 1024) / (kTaps * std::max<int64_t>(width, 1))); }

// Calls fn(row, plane_index bc, h) for rows [0, planes * height) in parallel.
template <typename Fn>
void for_each_row(int64_t planes, int64_t height, int64_t width, const Fn& fn) {
  at::parallel_for(0, planes * height, row_grain(width), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) fn(r / height, r % height);
  });
}

// Row gather shared by the forward and the input gradient, which differ only in direction:
//   forward (kTransposed = false): out(h, w) = sum_t src(h + dy_t, w + dx_t) * k_t(h, w), src = x;
//   grad_x  (kTransposed = true):  out(h, w) = sum_t src(h - dy_t, w - dx_t) * k_t(h - dy_t, w - dx_t), src = g.
// The output (and, in the forward, the kernels) may cover only the rows [first_row, first_row + out_rows)
// of the `height` rows of src: inference strips.
template <bool kTransposed, typename scalar_t>
void gather_kernel(const scalar_t* __restrict src, const scalar_t* __restrict k, scalar_t* __restrict out,
                   int64_t planes, int64_t height, int64_t width, int64_t d, int64_t first_row, int64_t out_rows) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width;
  const int64_t out_plane = out_rows * width;
  const int64_t sign = kTransposed ? -1 : 1;
  at::parallel_for(0, planes * out_rows, row_grain(width), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(width);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t bc = r / out_rows;
      const int64_t h = r % out_rows;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      acc_t* __restrict a = acc.data();
      for (int64_t t = 0; t < kTaps; ++t) {
        const int64_t y = first_row + h + sign * shift(t / 3, d);
        if (y < 0 || y >= height) continue;
        const int64_t s = sign * shift(t % 3, d);
        int64_t w0, w1;
        valid_columns(s, width, &w0, &w1);
        const scalar_t* __restrict sr = src + bc * plane + y * width + s;
        const scalar_t* __restrict kr = k + (bc * kTaps + t) * out_plane + (kTransposed ? y * width + s : h * width);
        for (int64_t w = w0; w < w1; ++w) a[w] += static_cast<acc_t>(sr[w]) * static_cast<acc_t>(kr[w]);
      }
      scalar_t* __restrict o = out + bc * out_plane + h * width;
      for (int64_t w = 0; w < width; ++w) o[w] = static_cast<scalar_t>(a[w]);
    }
  });
}

template <typename scalar_t>
void forward_kernel_channels_last(const scalar_t* __restrict x, const scalar_t* __restrict k, scalar_t* __restrict out,
                                  int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t d,
                                  int64_t first_row, int64_t out_rows) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<scalar_t> zeros(channels, scalar_t(0));
  at::parallel_for(0, batch * out_rows, row_grain(width * channels), [&](int64_t begin, int64_t end) {
    const scalar_t* taps[kTaps];
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / out_rows;
      const int64_t h = r % out_rows;
      for (int64_t w = 0; w < width; ++w) {
        for (int64_t t = 0; t < kTaps; ++t) {
          const int64_t y = first_row + h + shift(t / 3, d);
          const int64_t xx = w + shift(t % 3, d);
          const bool inside = y >= 0 && y < height && xx >= 0 && xx < width;
          taps[t] = inside ? x + ((b * height + y) * width + xx) * channels : zeros.data();
        }
        const int64_t pixel = (b * out_rows + h) * width + w;
        const scalar_t* __restrict kp = k + pixel * kTaps * channels;
        scalar_t* __restrict o = out + pixel * channels;
        for (int64_t c = 0; c < channels; ++c) {
          acc_t sum = acc_t(0);
          for (int64_t t = 0; t < kTaps; ++t) sum += static_cast<acc_t>(taps[t][c]) * static_cast<acc_t>(kp[c * kTaps + t]);
          o[c] = static_cast<scalar_t>(sum);
        }
      }
    }
  });
}

template <typename scalar_t>
void grad_kernels_kernel(const scalar_t* __restrict g, const scalar_t* __restrict x, scalar_t* __restrict gk,
                         int64_t planes, int64_t height, int64_t width, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = height * width;
  for_each_row(planes, height, width, [&](int64_t bc, int64_t h) {
    const scalar_t* __restrict gr = g + bc * plane + h * width;
    for (int64_t t = 0; t < kTaps; ++t) {
      scalar_t* __restrict dst = gk + (bc * kTaps + t) * plane + h * width;
      const int64_t y = h + shift(t / 3, d);
      int64_t w0 = 0, w1 = 0;
      if (y >= 0 && y < height) valid_columns(shift(t % 3, d), width, &w0, &w1);
      std::fill(dst, dst + w0, scalar_t(0));
      const scalar_t* __restrict xr = x + bc * plane + y * width + shift(t % 3, d);
      for (int64_t w = w0; w < w1; ++w) dst[w] = static_cast<scalar_t>(static_cast<acc_t>(gr[w]) * static_cast<acc_t>(xr[w]));
      std::fill(dst + w1, dst + width, scalar_t(0));
    }
  });
}

// Output rows [first_row, first_row + kernels.size(2)) of the filter (all rows: first_row = 0 and
// kernels as tall as x), written in x's layout when that is channels_last.
at::Tensor filter_rows(const at::Tensor& x_, const at::Tensor& kernels_, int64_t dilation, int64_t first_row) {
  const int64_t rows = kernels_.size(2);
  if (!x_.is_contiguous() && x_.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    const at::Tensor kernels = kernels_.contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor out = at::empty({x_.size(0), x_.size(1), rows, x_.size(3)},
                               x_.options().memory_format(at::MemoryFormat::ChannelsLast));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x_.scalar_type(), "dynamic_filter_cpu", [&] {
      forward_kernel_channels_last<scalar_t>(x_.const_data_ptr<scalar_t>(), kernels.const_data_ptr<scalar_t>(),
                                             out.mutable_data_ptr<scalar_t>(), x_.size(0), x_.size(1), x_.size(2),
                                             x_.size(3), dilation, first_row, rows);
    });
    return out;
  }
  const at::Tensor x = x_.contiguous();
  const at::Tensor kernels = kernels_.contiguous();
  at::Tensor out = at::empty({x.size(0), x.size(1), rows, x.size(3)}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "dynamic_filter_cpu", [&] {
    gather_kernel<false, scalar_t>(x.const_data_ptr<scalar_t>(), kernels.const_data_ptr<scalar_t>(),
                                   out.mutable_data_ptr<scalar_t>(), x.size(0) * x.size(1), x.size(2), x.size(3),
                                   dilation, first_row, rows);
  });
  return out;
}

at::Tensor forward_cpu(const at::Tensor& x, const at::Tensor& kernels, int64_t dilation) {
  check_dynamic_filter_args(x, kernels, dilation);
  return filter_rows(x, kernels, dilation, 0);
}

at::Tensor forward_rows_cpu(const at::Tensor& x, const at::Tensor& kernels, int64_t dilation, int64_t first_row) {
  check_dynamic_filter_args(x, kernels, dilation, nullptr, first_row);
  return filter_rows(x, kernels, dilation, first_row);
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_, const at::Tensor& x_,
                                                const at::Tensor& kernels_, int64_t dilation) {
  check_dynamic_filter_args(x_, kernels_, dilation, &grad_);
  const at::Tensor grad = grad_.contiguous();
  const at::Tensor x = x_.contiguous();
  const at::Tensor kernels = kernels_.contiguous();
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_kernels = at::empty_like(kernels);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "dynamic_filter_backward_cpu", [&] {
    const int64_t planes = x.size(0) * x.size(1);
    gather_kernel<true, scalar_t>(grad.const_data_ptr<scalar_t>(), kernels.const_data_ptr<scalar_t>(),
                                  grad_x.mutable_data_ptr<scalar_t>(), planes, x.size(2), x.size(3), dilation, 0,
                                  x.size(2));
    grad_kernels_kernel<scalar_t>(grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                  grad_kernels.mutable_data_ptr<scalar_t>(), planes, x.size(2), x.size(3), dilation);
  });
  return {grad_x, grad_kernels};
}

}  // namespace

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("dynamic_filter", &forward_cpu);
  m.impl("dynamic_filter_backward", &backward_cpu);
  m.impl("dynamic_filter_rows", &forward_rows_cpu);
}

}  // namespace dcn
