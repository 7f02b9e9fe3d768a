// What the two CPU drivers (dcn_cpu.cpp, dynamic_filter_cpu.cpp) share between ATen tensors and the
// kernels' plain-data interface (kernels.h has no ATen inside, so that one source compiles per
// instruction set): the kernels' element type for an ATen scalar type, typed data pointers, and the
// split of per-image work over threads.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "kernels.h"

namespace dcn {
namespace cpu {

// The kernels' element type for an ATen scalar type (bfloat16 is the kernels' own BF16).
template <typename scalar_t>
struct Data {
  using type = scalar_t;
};
template <>
struct Data<c10::BFloat16> {
  using type = BF16;
};

template <typename T>
const T* data(const at::Tensor& t) {
  return reinterpret_cast<const T*>(t.const_data_ptr());
}
template <typename T>
T* mutable_data(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.mutable_data_ptr());
}

// Calls fn(b, i0, i1) in parallel over the items [0, per_image) of each of n images (output pixels or
// rows), in ranges that stay within one image, about `grain` items per task.
template <typename Fn>
void for_image_ranges(int64_t n, int64_t per_image, int64_t grain, const Fn& fn) {
  at::parallel_for(0, n * per_image, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t b = i / per_image;
      const int64_t i0 = i % per_image;
      const int64_t i1 = std::min(per_image, i0 + (end - i));
      fn(b, i0, i1);
      i += i1 - i0;
    }
  });
}

}  // namespace cpu
}  // namespace dcn
