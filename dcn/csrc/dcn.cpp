// Op schemas, argument checks and the device-agnostic driver of DCNv2: batch chunking under a
// column-memory budget (blocks of output rows when one image exceeds it), one batched GEMM per
// chunk or block with ATen, bias. Argument errors are
// ValueErrors in Python (TORCH_CHECK_VALUE), like the checks of dcn.functional. The sampling work is delegated to the
// device primitives (see dcn.h); the CPU and CUDA files register the ops for their dispatch key.
#include <Python.h>

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>

#include "dcn.h"

namespace dcn {
namespace {

// 32 MB keeps a block's GEMM large (e.g. 29k pixels x 288 rows for ADFNet's 32-channel level) while
// the buffer stays small next to the feature maps: at 512x768 the whole-image buffer would be 453 MB.
constexpr double kDefaultColumnBudgetMB = 32.0;

// Memory budget (bytes) for the column buffer. DCN_COLUMN_BUDGET_MB overrides the default; it is
// read on every call (cheap) so tests can vary it to prove that chunking does not change results.
double column_budget_bytes() {
  const char* env = std::getenv("DCN_COLUMN_BUDGET_MB");
  double mb = kDefaultColumnBudgetMB;
  if (env != nullptr && *env != '\0') {
    char* end = nullptr;
    const double parsed = std::strtod(env, &end);
    TORCH_CHECK_VALUE(end != env && *end == '\0' && parsed >= 0,
                "dcn: DCN_COLUMN_BUDGET_MB must be a non-negative number, got '", env, "'");
    mb = parsed;
  }
  return mb * 1024.0 * 1024.0;
}

}  // namespace

// How the work is split under the column budget: `images` images per chunk while a whole image's
// columns fit the budget, otherwise one image at a time in blocks of `rows` output rows (at least
// one), so the column buffer never exists at full resolution for large images. The last chunk and
// the last block may be smaller, so any batch size and height work.
Tiling plan_tiling(int64_t batch, const ConvGeometry& geo, int64_t column_bytes_per_row) {
  const double budget = column_budget_bytes();
  const double row_bytes = static_cast<double>(std::max<int64_t>(column_bytes_per_row, 1));
  const double image_bytes = row_bytes * static_cast<double>(geo.out_h);
  if (image_bytes <= budget) {
    const auto fit = static_cast<int64_t>(budget / image_bytes);
    return {std::clamp<int64_t>(fit, 1, std::max<int64_t>(batch, 1)), geo.out_h};
  }
  return {1, std::clamp<int64_t>(static_cast<int64_t>(budget / row_bytes), 1, geo.out_h)};
}

// The geometry of output rows [row, row + rows) of `geo`: the same convolution with the padding
// shifted, since sample_coord only sees oy * stride - pad (the input and the taps are unchanged).
ConvGeometry row_block(const ConvGeometry& geo, int64_t row, int64_t rows) {
  ConvGeometry block = geo;
  block.out_h = rows;
  block.pad_h = geo.pad_h - row * geo.stride_h;
  return block;
}

namespace {

// Rows [row, row + rows) of an (n, channels, Ho, Wo) tensor, contiguous as the primitives require
// (a copy of one block only, never of the whole map, unless the block is the whole map).
at::Tensor rows_of(const at::Tensor& t, int64_t row, int64_t rows) {
  return t.narrow(2, row, rows).contiguous();
}

}  // namespace

ConvGeometry check_arguments(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                             const at::Tensor& weight, const std::optional<at::Tensor>& bias, int64_t stride_h,
                             int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w,
                             int64_t groups, int64_t deformable_groups, int64_t first_row) {
  TORCH_CHECK_VALUE(input.dim() == 4, "dcn: input must be 4-D (N, C, H, W), got ", input.dim(), "-D");
  TORCH_CHECK_VALUE(offset.dim() == 4, "dcn: offset must be 4-D (N, 2*dg*kh*kw, Ho, Wo), got ", offset.dim(), "-D");
  TORCH_CHECK_VALUE(mask.dim() == 4, "dcn: mask must be 4-D (N, dg*kh*kw, Ho, Wo), got ", mask.dim(), "-D");
  TORCH_CHECK_VALUE(weight.dim() == 4, "dcn: weight must be 4-D (Cout, Cin/groups, kh, kw), got ", weight.dim(), "-D");
  TORCH_CHECK_VALUE(at::isFloatingType(input.scalar_type()), "dcn: input must be a floating-point tensor, got ",
              input.scalar_type());
  const auto check_like_input = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.scalar_type() == input.scalar_type(), "dcn: ", name, " has dtype ", t.scalar_type(),
                " but input has dtype ", input.scalar_type());
    TORCH_CHECK_VALUE(t.device() == input.device(), "dcn: ", name, " is on ", t.device(), " but input is on ",
                input.device());
  };
  check_like_input(offset, "offset");
  check_like_input(mask, "mask");
  check_like_input(weight, "weight");
  TORCH_CHECK_VALUE(stride_h > 0 && stride_w > 0, "dcn: stride must be positive, got (", stride_h, ", ", stride_w, ")");
  TORCH_CHECK_VALUE(pad_h >= 0 && pad_w >= 0, "dcn: padding must be non-negative, got (", pad_h, ", ", pad_w, ")");
  TORCH_CHECK_VALUE(dil_h > 0 && dil_w > 0, "dcn: dilation must be positive, got (", dil_h, ", ", dil_w, ")");
  TORCH_CHECK_VALUE(groups > 0, "dcn: groups must be positive, got ", groups);
  TORCH_CHECK_VALUE(deformable_groups > 0, "dcn: deformable_groups must be positive, got ", deformable_groups);

  const int64_t batch = input.size(0);
  const int64_t channels = input.size(1);
  const int64_t out_channels = weight.size(0);
  const int64_t kernel_h = weight.size(2);
  const int64_t kernel_w = weight.size(3);
  TORCH_CHECK_VALUE(kernel_h > 0 && kernel_w > 0, "dcn: kernel size must be positive, got (", kernel_h, ", ", kernel_w, ")");
  TORCH_CHECK_VALUE(channels % groups == 0, "dcn: input channels (", channels, ") must be divisible by groups (", groups,
              ")");
  TORCH_CHECK_VALUE(out_channels % groups == 0, "dcn: output channels (", out_channels, ") must be divisible by groups (",
              groups, ")");
  TORCH_CHECK_VALUE(weight.size(1) * groups == channels, "dcn: weight.size(1) * groups (", weight.size(1), " * ", groups,
              ") must equal input channels (", channels, ")");
  TORCH_CHECK_VALUE(channels % deformable_groups == 0, "dcn: input channels (", channels,
              ") must be divisible by deformable_groups (", deformable_groups, ")");

  TORCH_CHECK_VALUE(channels > 0, "dcn: input has 0 channels; a convolution needs at least one");
  TORCH_CHECK_VALUE(out_channels > 0, "dcn: weight has 0 output channels; a convolution needs at least one");

  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  // Compare before dividing: C++ division truncates towards 0, so e.g. H=1, kernel 2, stride 2
  // would give an output row where conv2d rejects the input.
  const int64_t extent_h = dil_h * (kernel_h - 1) + 1;
  const int64_t extent_w = dil_w * (kernel_w - 1) + 1;
  TORCH_CHECK_VALUE(height + 2 * pad_h >= extent_h && width + 2 * pad_w >= extent_w, "dcn: padded input ",
                    height + 2 * pad_h, "x", width + 2 * pad_w, " is smaller than the kernel extent ", extent_h, "x",
                    extent_w, " (input ", height, "x", width, ", kernel ", kernel_h, "x", kernel_w, ", padding ",
                    pad_h, "x", pad_w, ", dilation ", dil_h, "x", dil_w, ")");
  const int64_t out_h = (height + 2 * pad_h - extent_h) / stride_h + 1;
  const int64_t out_w = (width + 2 * pad_w - extent_w) / stride_w + 1;

  const bool strip = first_row >= 0;
  const int64_t rows = strip ? offset.size(2) : out_h;
  TORCH_CHECK_VALUE(!strip || (rows > 0 && first_row + rows <= out_h), "dcn: output rows [", first_row, ", ",
                    first_row + rows, ") are not inside the ", out_h, " output rows");
  const int64_t taps = kernel_h * kernel_w;
  TORCH_CHECK_VALUE(offset.size(0) == batch && offset.size(1) == 2 * deformable_groups * taps && offset.size(2) == rows &&
                  offset.size(3) == out_w,
              "dcn: offset must have shape (", batch, ", ", 2 * deformable_groups * taps, ", ", rows, ", ", out_w,
              ") = (N, 2*dg*kh*kw, Ho, Wo), got ", offset.sizes());
  TORCH_CHECK_VALUE(mask.size(0) == batch && mask.size(1) == deformable_groups * taps && mask.size(2) == rows &&
                  mask.size(3) == out_w,
              "dcn: mask must have shape (", batch, ", ", deformable_groups * taps, ", ", rows, ", ", out_w,
              ") = (N, dg*kh*kw, Ho, Wo), got ", mask.sizes());
  if (bias.has_value()) {
    check_like_input(*bias, "bias");
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == out_channels, "dcn: bias must have shape (", out_channels,
                "), got ", bias->sizes());
  }
  const ConvGeometry geo{channels, height, width, out_h, out_w, kernel_h, kernel_w, stride_h,
                         stride_w, pad_h,  pad_w, dil_h, dil_w, deformable_groups};
  return strip ? row_block(geo, first_row, rows) : geo;
}

at::Tensor front(const at::Tensor& buffer, at::IntArrayRef sizes) {
  int64_t numel = 1;
  for (const int64_t size : sizes) {
    numel *= size;
  }
  return buffer.view({-1}).narrow(0, 0, numel).view(sizes);
}

namespace {

// `matrix` (G, rows, cols) repeated for each of n images: (n*G, rows, cols), for one batched GEMM
// per chunk (the weight is small next to the columns, so the copy is cheap).
at::Tensor per_image(const at::Tensor& matrix, int64_t n) {
  return matrix.unsqueeze(0).expand({n, -1, -1, -1}).reshape({-1, matrix.size(1), matrix.size(2)});
}

// a @ b batched, with a float result for half/bfloat16 inputs, so that the weight gradient of each
// image is not rounded to half (a per-image sum above 65504 would become inf) before it is summed.
at::Tensor bmm_accumulate(const at::Tensor& a, const at::Tensor& b) {
  const auto acc = at::toOpMathType(a.scalar_type());
  if (acc == a.scalar_type()) {
    return at::bmm(a, b);
  }
  if (a.is_cuda()) {
    return at::bmm(a, b, acc);  // cuBLAS accumulates in float and writes float
  }
  return at::bmm(a.to(acc), b.to(acc));  // the CPU has no mixed-dtype bmm
}

}  // namespace

void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input, const ConvGeometry& geo,
                       int64_t batch, int64_t out_channels) {
  TORCH_CHECK_VALUE(grad_output.scalar_type() == input.scalar_type() && grad_output.device() == input.device(),
                    "dcn: grad_output must match input in dtype and device, got ", grad_output.scalar_type(), " on ",
                    grad_output.device());
  TORCH_CHECK_VALUE(grad_output.dim() == 4 && grad_output.size(0) == batch && grad_output.size(1) == out_channels &&
                        grad_output.size(2) == geo.out_h && grad_output.size(3) == geo.out_w,
                    "dcn: grad_output must have shape (", batch, ", ", out_channels, ", ", geo.out_h, ", ", geo.out_w,
                    "), got ", grad_output.sizes());
}

bool is_channels_last(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

void check_same_device(const at::Tensor& input, std::initializer_list<const at::Tensor*> others,
                       const std::optional<at::Tensor>& bias) {
  for (const at::Tensor* t : others) {
    TORCH_CHECK_VALUE(t->device() == input.device(), "dcn: all tensors must be on one device, but input is on ",
                      input.device(), " and another argument on ", t->device());
  }
  TORCH_CHECK_VALUE(!bias.has_value() || bias->device() == input.device(), "dcn: bias is on ", bias->device(),
                    " but input is on ", input.device());
}

namespace {

// The forward pass for a checked geometry (of the whole output, or of a strip of its rows).
at::Tensor forward_geometry(const Primitives& prims, const ConvGeometry& geo, const at::Tensor& input_,
                            const at::Tensor& offset_, const at::Tensor& mask_, const at::Tensor& weight_,
                            const std::optional<at::Tensor>& bias, int64_t groups) {
  const at::Tensor input = input_.contiguous();
  const at::Tensor offset = offset_.contiguous();
  const at::Tensor mask = mask_.contiguous();
  const int64_t batch = input.size(0);
  const int64_t out_channels = weight_.size(0);
  const int64_t out_pixels = geo.out_h * geo.out_w;
  const int64_t rows = geo.channels * geo.kernel_h * geo.kernel_w;  // column rows of one image
  const int64_t group_rows = rows / groups;
  const int64_t group_out = out_channels / groups;

  at::Tensor output = at::empty({batch, out_channels, geo.out_h, geo.out_w}, input.options());
  if (batch == 0) {
    return output;
  }
  // Weight of group g as a (Cout/groups, Cin/groups*K) matrix.
  const at::Tensor weight = weight_.contiguous().view({groups, group_out, group_rows});

  const Tiling tiling = plan_tiling(batch, geo, rows * geo.out_w * input.element_size());
  const int64_t block_pixels = tiling.rows * geo.out_w;
  const at::Tensor columns = at::empty({tiling.images * groups, group_rows, block_pixels}, input.options());
  // A row block's GEMM result goes to a small buffer first: the output rows of one channel are not
  // contiguous across channels.
  const at::Tensor block_out = tiling.rows < geo.out_h
                                   ? at::empty({groups, group_out, block_pixels}, input.options())
                                   : at::Tensor();
  for (int64_t start = 0; start < batch; start += tiling.images) {
    const int64_t n = std::min(tiling.images, batch - start);
    const at::Tensor in = input.narrow(0, start, n);
    const at::Tensor off = offset.narrow(0, start, n);
    const at::Tensor msk = mask.narrow(0, start, n);
    if (tiling.rows == geo.out_h) {
      const at::Tensor cols = columns.narrow(0, 0, n * groups);
      prims.im2col(in, off, msk, cols, geo);
      at::Tensor out = output.narrow(0, start, n).view({n * groups, group_out, out_pixels});
      at::bmm_out(out, per_image(weight, n), cols);
      continue;
    }
    for (int64_t row = 0; row < geo.out_h; row += tiling.rows) {
      const int64_t rows_here = std::min(tiling.rows, geo.out_h - row);
      const int64_t pixels = rows_here * geo.out_w;
      const at::Tensor cols = front(columns, {groups, group_rows, pixels});
      prims.im2col(in, rows_of(off, row, rows_here), rows_of(msk, row, rows_here), cols,
                   row_block(geo, row, rows_here));
      at::Tensor out = front(block_out, {groups, group_out, pixels});
      at::bmm_out(out, weight, cols);
      output.narrow(0, start, 1).narrow(2, row, rows_here).copy_(out.view({1, out_channels, rows_here, geo.out_w}));
    }
  }
  // Adding the bias afterwards is much cheaper than a GEMM with a broadcast bias (which copies it
  // into the output before the GEMM and runs the GEMM with beta = 1).
  if (bias.has_value()) {
    output.add_(bias->view({1, out_channels, 1, 1}));
  }
  return output;
}

}  // namespace

at::Tensor modulated_deform_conv_forward(const Primitives& prims, const at::Tensor& input, const at::Tensor& offset,
                                         const at::Tensor& mask, const at::Tensor& weight,
                                         const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w,
                                         int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
                                         int64_t deformable_groups) {
  const ConvGeometry geo = check_arguments(input, offset, mask, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                                           dil_w, groups, deformable_groups);
  return forward_geometry(prims, geo, input, offset, mask, weight, bias, groups);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> modulated_deform_conv_backward(
    const Primitives& prims, const at::Tensor& grad_output_, const at::Tensor& input_, const at::Tensor& offset_,
    const at::Tensor& mask_, const at::Tensor& weight_, const std::optional<at::Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
    int64_t deformable_groups, std::array<bool, 3> output_mask) {
  const ConvGeometry geo = check_arguments(input_, offset_, mask_, weight_, bias, stride_h, stride_w, pad_h, pad_w,
                                           dil_h, dil_w, groups, deformable_groups);
  const int64_t batch = input_.size(0);
  const int64_t out_channels = weight_.size(0);
  check_grad_output(grad_output_, input_, geo, batch, out_channels);
  const auto [need_input, need_coord, need_weight] = output_mask;

  const at::Tensor grad_output = grad_output_.contiguous();
  const at::Tensor input = input_.contiguous();
  const at::Tensor offset = offset_.contiguous();
  const at::Tensor mask = mask_.contiguous();
  const int64_t out_pixels = geo.out_h * geo.out_w;
  const int64_t rows = geo.channels * geo.kernel_h * geo.kernel_w;
  const int64_t group_rows = rows / groups;
  const int64_t group_out = out_channels / groups;

  at::Tensor grad_input = need_input ? at::zeros_like(input) : at::Tensor();
  at::Tensor grad_offset = need_coord ? at::empty_like(offset) : at::Tensor();
  at::Tensor grad_mask = need_coord ? at::empty_like(mask) : at::Tensor();
  at::Tensor grad_bias = grad_output.sum({0, 2, 3});
  // Reduced-precision weights accumulate their gradient over the batch in float.
  const auto acc_dtype = at::toOpMathType(input.scalar_type());
  at::Tensor grad_weight_acc =
      need_weight ? at::zeros({groups, group_out, group_rows}, input.options().dtype(acc_dtype)) : at::Tensor();
  if (batch > 0 && (need_input || need_coord || need_weight)) {
    const at::Tensor weight_t = weight_.contiguous().view({groups, group_out, group_rows}).transpose(1, 2);
    const Tiling tiling = plan_tiling(batch, geo, rows * geo.out_w * input.element_size());
    // One buffer: first the columns (for grad_weight), then overwritten by the column gradients.
    const at::Tensor columns =
        at::empty({tiling.images * groups, group_rows, tiling.rows * geo.out_w}, input.options());
    // Accumulates the weight gradient of one chunk or block into grad_weight_acc.
    const auto add_weight_grad = [&](const at::Tensor& grad_out, const at::Tensor& cols, int64_t n) {
      grad_weight_acc.add_(
          bmm_accumulate(grad_out, cols.transpose(1, 2)).view({n, groups, group_out, group_rows}).sum(0));
    };
    for (int64_t start = 0; start < batch; start += tiling.images) {
      const int64_t n = std::min(tiling.images, batch - start);
      const at::Tensor in = input.narrow(0, start, n);
      const at::Tensor off = offset.narrow(0, start, n);
      const at::Tensor msk = mask.narrow(0, start, n);
      const at::Tensor grad_in = need_input ? grad_input.narrow(0, start, n) : at::Tensor();
      if (tiling.rows == geo.out_h) {
        const at::Tensor cols = columns.narrow(0, 0, n * groups);
        const at::Tensor grad_out = grad_output.narrow(0, start, n).view({n * groups, group_out, out_pixels});
        if (need_weight) {
          prims.im2col(in, off, msk, cols, geo);
          add_weight_grad(grad_out, cols, n);
        }
        if (need_input || need_coord) {
          at::Tensor grad_cols = cols;
          at::bmm_out(grad_cols, per_image(weight_t, n), grad_out);
          if (need_input) {
            prims.col2im(cols, off, msk, grad_in, geo);
          }
          if (need_coord) {
            prims.col2im_coord(cols, in, off, msk, grad_offset.narrow(0, start, n), grad_mask.narrow(0, start, n),
                               geo);
          }
        }
        continue;
      }
      // One image in blocks of output rows: col2im adds into the whole grad_input plane (samples may
      // land anywhere); the block's offset and mask gradients are copied into place.
      for (int64_t row = 0; row < geo.out_h; row += tiling.rows) {
        const int64_t rows_here = std::min(tiling.rows, geo.out_h - row);
        const ConvGeometry block = row_block(geo, row, rows_here);
        const at::Tensor cols = front(columns, {groups, group_rows, rows_here * geo.out_w});
        const at::Tensor off_block = rows_of(off, row, rows_here);
        const at::Tensor msk_block = rows_of(msk, row, rows_here);
        const at::Tensor grad_out =
            rows_of(grad_output.narrow(0, start, 1), row, rows_here).view({groups, group_out, rows_here * geo.out_w});
        if (need_weight) {
          prims.im2col(in, off_block, msk_block, cols, block);
          add_weight_grad(grad_out, cols, 1);
        }
        if (need_input || need_coord) {
          at::Tensor grad_cols = cols;
          at::bmm_out(grad_cols, weight_t, grad_out);
          if (need_input) {
            prims.col2im(cols, off_block, msk_block, grad_in, block);
          }
          if (need_coord) {
            at::Tensor grad_off_block = at::empty_like(off_block);
            at::Tensor grad_msk_block = at::empty_like(msk_block);
            prims.col2im_coord(cols, in, off_block, msk_block, grad_off_block, grad_msk_block, block);
            grad_offset.narrow(0, start, 1).narrow(2, row, rows_here).copy_(grad_off_block);
            grad_mask.narrow(0, start, 1).narrow(2, row, rows_here).copy_(grad_msk_block);
          }
        }
      }
    }
  }
  at::Tensor grad_weight =
      need_weight ? grad_weight_acc.view(weight_.sizes()).to(input.scalar_type()) : at::Tensor();
  return {grad_input, grad_offset, grad_mask, grad_weight, grad_bias};
}

TORCH_LIBRARY(dcn, m) {
  m.def("modulated_deform_conv" DCN_FORWARD_SCHEMA);
  m.def("modulated_deform_conv_backward" DCN_BACKWARD_SCHEMA);
  m.def("modulated_deform_conv_rows" DCN_ROWS_SCHEMA);
}

}  // namespace dcn

// The ops are registered by the static initialisers above; importing `dcn._C` from Python only
// needs a module object, so this is an empty module (no pybind11).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
