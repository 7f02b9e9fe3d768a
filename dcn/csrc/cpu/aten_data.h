// What the two CPU drivers (dcn_cpu.cpp, dynamic_filter_cpu.cpp) share between ATen tensors and the
// kernels' plain-data interface (kernels.h has no ATen inside, so that one source compiles per
// instruction set): the kernels' element type for an ATen scalar type, and typed data pointers.
#pragma once

#include <ATen/ATen.h>

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

}  // namespace cpu
}  // namespace dcn
