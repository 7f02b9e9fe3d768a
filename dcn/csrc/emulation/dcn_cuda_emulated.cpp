// The CUDA kernels and launchers of ../cuda/dcn_cuda.cu, compiled by the host compiler through the
// emulation in ../cuda/gpu_runtime.h (no CUDA toolkit needed), registered as CPU kernels of the ops
//   dcn::modulated_deform_conv_emulated and dcn::modulated_deform_conv_emulated_backward
// (the `cuda_emulated` backend of dcn). It runs every CUDA thread one after another, so it is slow:
// it exists so that CI executes the CUDA code paths (index math, dtype dispatch, 32/64-bit
// indexing, grid-stride loops, channel blocks) on machines without a GPU.
#define DCN_CUDA_EMULATION 1
#include "../cuda/dcn_cuda.cu"

namespace dcn {
namespace {

// Threads of each emulated launch since the last call, oldest first (then cleared).
std::vector<int64_t> emulated_launches() { return gpu::take_launch_log(); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(dcn, m) {
  m.def("modulated_deform_conv_emulated" DCN_FORWARD_SCHEMA);
  m.def("modulated_deform_conv_emulated_backward" DCN_BACKWARD_SCHEMA);
  m.def("emulated_launches() -> int[]", &emulated_launches);
}

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("modulated_deform_conv_emulated", &forward_cuda);
  m.impl("modulated_deform_conv_emulated_backward", &backward_cuda);
}

}  // namespace dcn
