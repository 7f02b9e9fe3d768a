// The CPU driver of DCNv2 and its registration for the CPU dispatch key.
//
// The CPU works on channels_last data with pixel-major columns (kernels.h): an input, offsets,
// masks and gradients that are channels_last are read and written in place (inference and
// training in channels_last never copy them); others are reordered once per call. A block's
// columns form a (pixels, K * C) matrix, so the GEMM writes a channels_last output directly
// (columns x weight^T) or an NCHW one (weight x columns^T); the weight is reordered to tap-major
// (Cout, K, C) to match. The sampling runs in the kernels of the instruction set chosen at run time
// (capability.cpp), split with at::parallel_for over partitions whose outputs are disjoint, so results
// are deterministic and need no atomics:
//   im2col        per (image, range of output pixels);
//   col2im        per (image, deformable group): owns the group's channels of grad_input;
//   col2im_coord  per (image, range of output pixels): owns their offset and mask gradients.
// float32, float64 and bfloat16 (sampling and sums in float, the GEMMs in bfloat16 with float
// accumulation, the input gradient scattered into a float buffer).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../dcn.h"
#include "aten_data.h"

namespace dcn {
namespace {

using cpu::BF16;
using cpu::Data;
using cpu::data;
using cpu::mutable_data;
using cpu::DcnArgs;

void check_cpu_dtype(const at::Tensor& t) {
  TORCH_CHECK_NOT_IMPLEMENTED(
      t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble || t.scalar_type() == at::kBFloat16,
      "dcn: the CPU kernels support float32, float64 and bfloat16, got ", t.scalar_type());
}

// The kernels of the chosen instruction set.
const cpu::DcnKernels<float>& kernels_for(float*) { return cpu::kernels().dcn_f32; }
const cpu::DcnKernels<double>& kernels_for(double*) { return cpu::kernels().dcn_f64; }
const cpu::DcnKernels<BF16>& kernels_for(BF16*) { return cpu::kernels().dcn_bf16; }


// The input as the kernels read it: channels_last (a copy unless it is already).
at::Tensor channels_last(const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

// Offsets and masks as the kernels read them: any strides, but a pixel's channels contiguous.
at::Tensor pixel_channels(const at::Tensor& t) {
  return t.size(1) == 1 || t.stride(1) == 1 ? t : t.contiguous(at::MemoryFormat::ChannelsLast);
}

// Per-sample tables of a call (s = g * K + k): the tap's i * dil_h and j * dil_w (padded to a
// multiple of 16 for the vector planner's loads) and, when every deformable group lies inside one
// convolution group, its first channel, convolution group and column offset (see DcnArgs).
struct SampleTables {
  std::vector<int32_t> y, x;
  bool single_run;
  std::vector<int64_t> channel, group, column;
  SampleTables(const ConvGeometry& geo, int64_t groups) {
    const int64_t K = geo.kernel_h * geo.kernel_w;
    const int64_t samples = geo.deformable_groups * K;
    const int64_t cpg = geo.channels / geo.deformable_groups;
    const int64_t cg = geo.channels / groups;
    single_run = cg % cpg == 0;
    const int64_t padded = (samples + 15) / 16 * 16;
    y.assign(padded, 0);
    x.assign(padded, 0);
    channel.assign(samples, 0);
    group.assign(samples, 0);
    column.assign(samples, 0);
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t k = s % K;
      y[s] = static_cast<int32_t>(k / geo.kernel_w * geo.dil_h);
      x[s] = static_cast<int32_t>(k % geo.kernel_w * geo.dil_w);
      channel[s] = s / K * cpg;
      group[s] = channel[s] / cg;
      column[s] = k * cg + channel[s] - group[s] * cg;
    }
  }
};

// Kernel arguments for images [start, ...) of a call and output rows [row, row + rows) (geo is the block's).
// col_group: elements between the convolution groups' column matrices (see DcnArgs).
template <typename T>
DcnArgs<T> make_args(const ConvGeometry& geo, int64_t groups, const at::Tensor& input, const at::Tensor& offset,
                     const at::Tensor& mask, const SampleTables& taps, int64_t start, int64_t row, int64_t col_group) {
  DcnArgs<T> a;
  a.geo = geo;
  a.groups = groups;
  a.col_group = col_group;
  a.input = data<T>(input) + start * input.stride(0);
  a.in_image = input.stride(0);
  a.in_pixel = input.stride(3);
  a.offset = data<T>(offset) + start * offset.stride(0) + row * offset.stride(2);
  a.off_image = offset.stride(0);
  a.off_row = offset.stride(2);
  a.off_col = offset.stride(3);
  a.mask = data<T>(mask) + start * mask.stride(0) + row * mask.stride(2);
  a.mask_image = mask.stride(0);
  a.mask_row = mask.stride(2);
  a.mask_col = mask.stride(3);
  a.tap_y = taps.y.data();
  a.tap_x = taps.x.data();
  a.single_run = taps.single_run;
  a.channel = taps.channel.data();
  a.group = taps.group.data();
  a.column = taps.column.data();
  return a;
}

// Output pixels per parallel task of the samplers (im2col, col2im_coord).
constexpr int64_t kPixelGrain = 64;

// columns (n * groups, P, K * C / groups) of images [start, start + n), output rows [row, row + block.out_h).
void im2col(const ConvGeometry& block, int64_t groups, const at::Tensor& input, const at::Tensor& offset,
            const at::Tensor& mask, const SampleTables& taps, int64_t start, int64_t n, int64_t row,
            const at::Tensor& columns) {
  const int64_t pixels = block.out_h * block.out_w;
  const int64_t image_columns = pixels * columns.size(2) * groups;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, input.scalar_type(), "dcn_im2col_cpu", [&] {
    using T = typename Data<scalar_t>::type;
    const DcnArgs<T> a = make_args<T>(block, groups, input, offset, mask, taps, start, row, pixels * columns.size(2));
    const auto kernel = kernels_for(static_cast<T*>(nullptr)).im2col;
    T* cols = mutable_data<T>(columns);
    cpu::for_image_ranges(n, pixels, kPixelGrain, [&](int64_t b, int64_t p0, int64_t p1) {
      kernel(a, cols + b * image_columns + p0 * columns.size(2), b, p0, p1);
    });
  });
}

// Output pixels per tile of the channels_last forward: the tile's columns (512 KB) stay in the
// core's L2 cache between the sampler writing them and the GEMM reading them.
constexpr int64_t kTileBytes = 512 << 10;

// The fused forward reads the whole weight from the L2 cache once per register block of pixels:
// beyond about 1 MiB (3x3, more than about 160 channels in and out) the library GEMM, which blocks
// the weight, is faster (measured, 8 deformable groups: 160 channels 15 % faster fused, 192 channels
// 11 % slower, 256 channels twice as slow).
constexpr int64_t kFusedWeightBytes = 1 << 20;

// The channels_last forward (one group): each task samples a tile of output pixels into its own
// small column buffer and multiplies it into the output at once, so the columns never leave the
// cache (whole-image columns went through memory twice, which made the sampler memory-bound).
// The bias is added to each tile's rows while they are in cache. In float32, where the chosen
// instruction set has the fused forward (kernels.h), a tile is only the unit of parallel work:
// the kernel samples and multiplies a few pixels at a time in the L1 cache instead.
void forward_tiles(const ConvGeometry& geo, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                   const at::Tensor& weight, const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  const int64_t batch = input.size(0);
  const int64_t pixels = geo.out_h * geo.out_w;
  const int64_t kc = weight.size(2);
  const int64_t tile = std::max<int64_t>(16, kTileBytes / (kc * input.element_size()));
  const int64_t tiles = (pixels + tile - 1) / tile;
  const SampleTables taps(geo, 1);
  const at::Tensor weight_t = weight[0].t();  // (K * C, Cout)
  const at::Tensor out = output.permute({0, 2, 3, 1}).view({batch * pixels, output.size(1)});
  std::vector<at::Tensor> buffers(at::get_num_threads());
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, input.scalar_type(), "dcn_forward_tiles_cpu", [&] {
    using T = typename Data<scalar_t>::type;
    const DcnArgs<T> a = make_args<T>(geo, 1, input, offset, mask, taps, 0, 0, tile * kc);
    const auto& kernels = kernels_for(static_cast<T*>(nullptr));
    const int64_t cout = output.size(1);
    if (kernels.forward_fused != nullptr && cout % kernels.fused_cout == 0 &&
        kc * cout * input.element_size() <= kFusedWeightBytes) {
      const at::Tensor wt = weight_t.contiguous();
      const at::Tensor b_vec = bias.has_value() ? bias->contiguous() : at::Tensor();
      const T* bias_data = b_vec.defined() ? data<T>(b_vec) : nullptr;
      T* out_data = mutable_data<T>(output);
      at::parallel_for(0, batch * tiles, 1, [&](int64_t begin, int64_t end) {
        at::Tensor& buffer = buffers[at::get_thread_num()];
        if (!buffer.defined()) buffer = at::zeros({kernels.fused_pixels, kc}, input.options());
        for (int64_t item = begin; item < end; ++item) {
          const int64_t b = item / tiles;
          const int64_t p0 = item % tiles * tile;
          kernels.forward_fused(a, data<T>(wt), bias_data, cout, out_data + b * output.stride(0), mutable_data<T>(buffer),
                                b, p0, std::min(pixels, p0 + tile));
        }
      });
      return;
    }
    const auto kernel = kernels.im2col;
    at::parallel_for(0, batch * tiles, 1, [&](int64_t begin, int64_t end) {
      // Worker threads do not inherit the caller's dispatch state (inference mode, autograd below this
      // op): the GEMM goes straight to its CPU kernel.
      const at::AutoDispatchBelowADInplaceOrView below_autograd;
      at::Tensor& buffer = buffers[at::get_thread_num()];
      if (!buffer.defined()) buffer = at::empty({tile, kc}, input.options());
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / tiles;
        const int64_t p0 = item % tiles * tile;
        const int64_t count = std::min(tile, pixels - p0);
        kernel(a, mutable_data<T>(buffer), b, p0, p0 + count);
        at::Tensor rows = out.narrow(0, b * pixels + p0, count);
        at::mm_out(rows, buffer.narrow(0, 0, count), weight_t);
        if (bias.has_value()) {
          rows.add_(*bias);  // (addmm copies the bias into the rows first: slower in bfloat16)
        }
      }
    });
  });
}

// Rows [row, row + count) of images [start, start + n) of a dense channels_last (N, C, H, W) tensor as an
// (n, count * W, C) view.
at::Tensor pixels_by_channels(const at::Tensor& t, int64_t start, int64_t n, int64_t row, int64_t count) {
  return t.narrow(0, start, n).narrow(2, row, count).permute({0, 2, 3, 1}).view({n, count * t.size(3), t.size(1)});
}

// `matrix` (G, rows, cols) repeated for each of n images: (n * G, rows, cols), for one batched GEMM
// per chunk (the weight is small next to the columns, so the copy is cheap).
at::Tensor per_image(const at::Tensor& matrix, int64_t n) {
  return matrix.unsqueeze(0).expand({n, -1, -1, -1}).reshape({-1, matrix.size(1), matrix.size(2)});
}

// weight (Cout, Cg, kh, kw) as the (groups, Cout / groups, K * Cg) matrices of the tap-major columns.
at::Tensor tap_major_weight(const at::Tensor& weight, int64_t groups) {
  const int64_t out = weight.size(0) / groups;
  const int64_t cg = weight.size(1);
  const int64_t taps = weight.size(2) * weight.size(3);
  return weight.reshape({groups, out, cg, taps}).transpose(2, 3).contiguous().view({groups, out, taps * cg});
}

// The output is channels_last for a channels_last input (one group: a single GEMM writes it).
bool channels_last_output(const at::Tensor& input, int64_t groups) { return groups == 1 && is_channels_last(input); }

// `into`, when given, is where the output goes (rows of a larger channels_last output of one image; see
// rows_cpu); otherwise a new tensor.
at::Tensor forward_geometry(const ConvGeometry& geo, const at::Tensor& input_, const at::Tensor& offset_,
                            const at::Tensor& mask_, const at::Tensor& weight_, const std::optional<at::Tensor>& bias,
                            int64_t groups, const std::optional<at::Tensor>& into = std::nullopt) {
  check_cpu_dtype(input_);
  const bool cl_out = channels_last_output(input_, groups);
  const at::Tensor input = channels_last(input_);
  const at::Tensor offset = pixel_channels(offset_);
  const at::Tensor mask = pixel_channels(mask_);
  const int64_t batch = input.size(0);
  const int64_t out_channels = weight_.size(0);
  const int64_t group_out = out_channels / groups;
  const int64_t kc = geo.kernel_h * geo.kernel_w * geo.channels;
  const int64_t group_kc = kc / groups;
  at::Tensor output = into.has_value() ? *into
                                       : at::empty({batch, out_channels, geo.out_h, geo.out_w},
                                                   input.options().memory_format(cl_out ? at::MemoryFormat::ChannelsLast
                                                                                        : at::MemoryFormat::Contiguous));
  if (batch == 0) {
    return output;
  }
  const at::Tensor weight = tap_major_weight(weight_, groups);
  if (cl_out) {
    forward_tiles(geo, input, offset, mask, weight, bias, output);
    return output;
  }
  const SampleTables taps(geo, groups);
  const Tiling tiling = plan_tiling(batch, geo, kc * geo.out_w * input.element_size());
  const at::Tensor columns = at::empty({tiling.images * groups, tiling.rows * geo.out_w, group_kc}, input.options());
  // A block's NCHW result goes to a small buffer first: the output rows of one channel are not
  // contiguous across channels.
  const at::Tensor block_out = tiling.rows < geo.out_h
                                   ? at::empty({groups, group_out, tiling.rows * geo.out_w}, input.options())
                                   : at::Tensor();
  for (int64_t start = 0; start < batch; start += tiling.images) {
    const int64_t n = std::min(tiling.images, batch - start);
    for (int64_t row = 0; row < geo.out_h; row += tiling.rows) {
      const int64_t count = std::min(tiling.rows, geo.out_h - row);
      const int64_t pixels = count * geo.out_w;
      const at::Tensor cols = front(columns, {n * groups, pixels, group_kc});
      im2col(row_block(geo, row, count), groups, input, offset, mask, taps, start, n, row, cols);
      if (count == geo.out_h) {
        at::Tensor out = output.narrow(0, start, n).view({n * groups, group_out, pixels});
        at::bmm_out(out, per_image(weight, n), cols.transpose(1, 2));
      } else {
        at::Tensor out = front(block_out, {groups, group_out, pixels});
        at::bmm_out(out, weight, cols.transpose(1, 2));
        output.narrow(0, start, 1).narrow(2, row, count).copy_(out.view({1, out_channels, count, geo.out_w}));
      }
    }
  }
  // Adding the bias afterwards is much cheaper than a GEMM with a broadcast bias.
  if (bias.has_value()) {
    output.add_(bias->view({1, out_channels, 1, 1}));
  }
  return output;
}

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                       const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h,
                       int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
                       int64_t deformable_groups) {
  const ConvGeometry geo = check_arguments(input, offset, mask, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                                           dil_w, groups, deformable_groups);
  return forward_geometry(geo, input, offset, mask, weight, bias, groups);
}

// Writes the strip's output rows into those rows of `out` (the whole output): in place where the tiles can
// write them (one image, one group, channels_last throughout), else through a copy.
void rows_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& weight,
              const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
              int64_t dil_h, int64_t dil_w, int64_t groups, int64_t deformable_groups, int64_t first_row,
              const at::Tensor& out) {
  TORCH_CHECK_VALUE(first_row >= 0, "dcn: first_row must be non-negative, got ", first_row);
  const ConvGeometry geo = check_arguments(input, offset, mask, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                                           dil_w, groups, deformable_groups, first_row);
  TORCH_CHECK_VALUE(out.dim() == 4 && out.size(0) == input.size(0) && out.size(1) == weight.size(0) &&
                        out.size(2) >= first_row + geo.out_h && out.size(3) == geo.out_w &&
                        out.scalar_type() == input.scalar_type() && out.device() == input.device(),
                    "dcn: out must be the whole output, (", input.size(0), ", ", weight.size(0), ", Ho, ", geo.out_w,
                    ") with Ho >= ", first_row + geo.out_h, ", of the input's dtype and device, got ", out.sizes(), " ",
                    out.scalar_type(), " on ", out.device());
  const at::Tensor rows = out.narrow(2, first_row, geo.out_h);
  if (input.size(0) == 1 && channels_last_output(input, groups) && out.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    forward_geometry(geo, input, offset, mask, weight, bias, groups, rows);
  } else {
    rows.copy_(forward_geometry(geo, input, offset, mask, weight, bias, groups));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_output_, const at::Tensor& input_, const at::Tensor& offset_, const at::Tensor& mask_,
    const at::Tensor& weight_, const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w,
    int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups, int64_t deformable_groups,
    std::array<bool, 3> output_mask) {
  check_cpu_dtype(input_);
  const ConvGeometry geo = check_arguments(input_, offset_, mask_, weight_, bias, stride_h, stride_w, pad_h, pad_w,
                                           dil_h, dil_w, groups, deformable_groups);
  const int64_t batch = input_.size(0);
  const int64_t out_channels = weight_.size(0);
  check_grad_output(grad_output_, input_, geo, batch, out_channels);
  const auto [need_input, need_coord, need_weight] = output_mask;
  // A channels_last output gradient (one group) is used as (pixels, Cout) matrices in place.
  const bool cl_grad = groups == 1 && is_channels_last(grad_output_);
  const at::Tensor grad_output = cl_grad ? grad_output_ : grad_output_.contiguous();
  const at::Tensor input = channels_last(input_);
  const at::Tensor offset = pixel_channels(offset_);
  const at::Tensor mask = pixel_channels(mask_);
  const int64_t group_out = out_channels / groups;
  const int64_t kc = geo.kernel_h * geo.kernel_w * geo.channels;
  const int64_t group_kc = kc / groups;
  const auto acc_dtype = at::toOpMathType(input.scalar_type());

  // Gradients in their inputs' layouts. The input gradient is scattered into a channels_last
  // buffer of the accumulation type: grad_input itself when it is one.
  at::Tensor grad_input = need_input ? at::zeros_like(input_) : at::Tensor();
  at::Tensor grad_input_acc;
  if (need_input) {
    grad_input_acc = grad_input.scalar_type() == acc_dtype && grad_input.is_contiguous(at::MemoryFormat::ChannelsLast)
                         ? grad_input
                         : at::empty(input.sizes(), input.options().dtype(acc_dtype).memory_format(
                                                        at::MemoryFormat::ChannelsLast))
                               .zero_();  // (at::zeros would drop the memory format)
  }
  at::Tensor grad_offset = need_coord ? at::empty_like(offset_) : at::Tensor();
  at::Tensor grad_mask = need_coord ? at::empty_like(mask_) : at::Tensor();
  at::Tensor grad_bias = grad_output.sum({0, 2, 3});
  at::Tensor grad_weight_acc =
      need_weight ? at::zeros({groups, group_out, group_kc}, input.options().dtype(acc_dtype)) : at::Tensor();
  if (batch > 0 && (need_input || need_coord || need_weight)) {
    const at::Tensor weight = tap_major_weight(weight_, groups);
    const SampleTables taps(geo, groups);
    const Tiling tiling = plan_tiling(batch, geo, kc * geo.out_w * input.element_size());
    // One buffer: first the columns (for grad_weight), then overwritten by the column gradients.
    const at::Tensor columns = at::empty({tiling.images * groups, tiling.rows * geo.out_w, group_kc}, input.options());
    for (int64_t start = 0; start < batch; start += tiling.images) {
      const int64_t n = std::min(tiling.images, batch - start);
      for (int64_t row = 0; row < geo.out_h; row += tiling.rows) {
        const int64_t count = std::min(tiling.rows, geo.out_h - row);
        const int64_t pixels = count * geo.out_w;
        const ConvGeometry block = row_block(geo, row, count);
        const at::Tensor cols = front(columns, {n * groups, pixels, group_kc});
        // The NCHW output gradient as (n * groups, Cout / groups, pixels): a view, or a copy of a row block.
        const auto grad_out_nchw = [&] {
          return grad_output.narrow(0, start, n).narrow(2, row, count).contiguous().view({n * groups, group_out, pixels});
        };
        if (need_weight) {
          im2col(block, groups, input, offset, mask, taps, start, n, row, cols);
          if (cl_grad) {  // one GEMM over all pixels of the chunk
            const at::Tensor g = pixels_by_channels(grad_output, start, n, row, count).reshape({n * pixels, out_channels});
            grad_weight_acc[0].add_(at::mm(g.t(), cols.view({n * pixels, kc})));
          } else {
            const at::Tensor partial = at::bmm(grad_out_nchw(), cols).view({n, groups, group_out, group_kc});
            grad_weight_acc.add_(partial.sum(0, false, acc_dtype));
          }
        }
        if (!(need_input || need_coord)) {
          continue;
        }
        at::Tensor grad_cols = cols;
        if (cl_grad) {
          at::Tensor flat = cols.view({n * pixels, kc});
          at::mm_out(flat, pixels_by_channels(grad_output, start, n, row, count).reshape({n * pixels, out_channels}),
                     weight[0]);
        } else {
          at::bmm_out(grad_cols, grad_out_nchw().transpose(1, 2), per_image(weight, n));
        }
        AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, input.scalar_type(), "dcn_backward_cpu", [&] {
          using T = typename Data<scalar_t>::type;
          const DcnArgs<T> a = make_args<T>(block, groups, input, offset, mask, taps, start, row, pixels * group_kc);
          const auto& k = kernels_for(static_cast<T*>(nullptr));
          const T* gcols = data<T>(cols);
          const int64_t image_columns = pixels * kc;
          if (need_coord) {
            T* g_off = mutable_data<T>(grad_offset) + start * grad_offset.stride(0) + row * grad_offset.stride(2);
            T* g_msk = mutable_data<T>(grad_mask) + start * grad_mask.stride(0) + row * grad_mask.stride(2);
            const int64_t go[4] = {grad_offset.stride(0), grad_offset.stride(1), grad_offset.stride(2),
                                   grad_offset.stride(3)};
            const int64_t gm[4] = {grad_mask.stride(0), grad_mask.stride(1), grad_mask.stride(2), grad_mask.stride(3)};
            cpu::for_image_ranges(n, pixels, kPixelGrain, [&](int64_t b, int64_t p0, int64_t p1) {
              k.col2im_coord(a, gcols + b * image_columns + p0 * group_kc, g_off, go, g_msk, gm, b, p0, p1);
            });
          }
          if (need_input) {
            using A = typename cpu::Acc<T>::type;
            A* g_in = grad_input_acc.mutable_data_ptr<A>() + start * grad_input_acc.stride(0);
            const int64_t dg = geo.deformable_groups;
            at::parallel_for(0, n * dg, 1, [&](int64_t begin, int64_t end) {
              for (int64_t item = begin; item < end; ++item) {
                k.col2im(a, gcols + item / dg * image_columns, g_in, item / dg, item % dg);
              }
            });
          }
        });
      }
    }
  }
  if (need_input && !grad_input_acc.is_same(grad_input)) {
    grad_input.copy_(grad_input_acc);
  }
  at::Tensor grad_weight;
  if (need_weight) {
    const int64_t cg = weight_.size(1);
    const int64_t taps = geo.kernel_h * geo.kernel_w;
    grad_weight = grad_weight_acc.view({groups, group_out, taps, cg})
                      .transpose(2, 3)
                      .reshape(weight_.sizes())
                      .to(input.scalar_type())
                      .contiguous();
  }
  return {grad_input, grad_offset, grad_mask, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("modulated_deform_conv", &forward_cpu);
  m.impl("modulated_deform_conv_backward", &backward_cpu);
  m.impl("modulated_deform_conv_rows", &rows_cpu);
}

}  // namespace dcn
