// The CUDA kernels and launchers of ../cuda/dynamic_filter_cuda.cu, compiled by the host compiler
// through the emulation in ../cuda/gpu_runtime.h (no CUDA toolkit needed), registered as CPU kernels
// of the ops
//   dcn::dynamic_filter_emulated and dcn::dynamic_filter_emulated_backward
// (same arguments as dcn::dynamic_filter and its backward). It runs every CUDA thread one after
// another, so it is slow: it exists so that CI executes the CUDA code paths (per-element index
// math, dtype dispatch with float accumulation, grid-stride loops) on machines without a GPU.
//
// A translation unit of its own, like emulation/dcn_cuda_emulated.cpp: both .cu files keep their
// kernels and helpers in anonymous namespaces with overlapping names (kThreads, forward_kernel),
// which cannot clash across TUs. The launch log of gpu_runtime.h is an inline variable, one for the
// whole library, so dcn::emulated_launches() (defined there) also reports these launches.
#define DCN_CUDA_EMULATION 1
#include "../cuda/dynamic_filter_cuda.cu"

namespace dcn {

TORCH_LIBRARY_FRAGMENT(dcn, m) {
  m.def("dynamic_filter_emulated" DF_FORWARD_SCHEMA);
  m.def("dynamic_filter_emulated_backward" DF_BACKWARD_SCHEMA);
}

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("dynamic_filter_emulated", &dynamic_filter_cuda);
  m.impl("dynamic_filter_emulated_backward", &dynamic_filter_backward_cuda);
}

}  // namespace dcn
