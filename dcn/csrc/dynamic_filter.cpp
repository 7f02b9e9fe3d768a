// Schemas and argument checks of the fused dynamic-filter op (ADFNet's DConv / MDCB branches).
// It replaces unfold + product + sum, which materialise 9 shifted copies of the input and a
// 9C x H x W product; the kernels read each input tap in place instead.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "dynamic_filter_op.h"

namespace dcn {

void check_dynamic_filter_args(const at::Tensor& x, const at::Tensor& kernels, int64_t dilation,
                               const at::Tensor* grad, int64_t first_row) {
  TORCH_CHECK(x.dim() == 4, "dynamic_filter: x must be 4-D (B, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "dynamic_filter: x must be floating point, got ", x.scalar_type());
  TORCH_CHECK(kernels.scalar_type() == x.scalar_type() && kernels.device() == x.device(),
              "dynamic_filter: kernels (", kernels.scalar_type(), " on ", kernels.device(), ") must match x (",
              x.scalar_type(), " on ", x.device(), ")");
  const bool strip = first_row >= 0;
  const bool tap_major = kernels.dim() == 5;
  const int64_t rows = strip && kernels.dim() >= 4 ? kernels.size(-2) : x.size(2);
  const bool shape_ok = tap_major ? kernels.size(0) == x.size(0) && kernels.size(1) == 9 && kernels.size(2) == x.size(1) &&
                                        kernels.size(3) == rows && kernels.size(4) == x.size(3)
                                  : kernels.dim() == 4 && kernels.size(0) == x.size(0) &&
                                        kernels.size(1) == 9 * x.size(1) && kernels.size(2) == rows &&
                                        kernels.size(3) == x.size(3);
  TORCH_CHECK(shape_ok, "dynamic_filter: kernels must have shape (B, 9C, H, W) = (", x.size(0), ", ", 9 * x.size(1),
              ", ", rows, ", ", x.size(3), ") or, tap-major, (B, 9, C, H, W), got ", kernels.sizes());
  TORCH_CHECK(!strip || (rows > 0 && first_row + rows <= x.size(2)), "dynamic_filter: rows [", first_row, ", ",
              first_row + rows, ") are not inside the ", x.size(2), " rows of x");
  TORCH_CHECK(dilation >= 1, "dynamic_filter: dilation must be >= 1, got ", dilation);
  if (grad != nullptr) {
    TORCH_CHECK(grad->sizes() == x.sizes() && grad->scalar_type() == x.scalar_type() && grad->device() == x.device(),
                "dynamic_filter: grad must match x in shape, dtype and device, got ", grad->sizes(), " ",
                grad->scalar_type(), " on ", grad->device());
  }
}

TORCH_LIBRARY_FRAGMENT(dcn, m) {
  m.def("dynamic_filter" DF_FORWARD_SCHEMA);
  m.def("dynamic_filter_backward" DF_BACKWARD_SCHEMA);
  m.def("dynamic_filter_rows" DF_ROWS_SCHEMA);
}

}  // namespace dcn
