// The few CUDA runtime facilities the DCN kernels use, behind one small interface, so that a .cu
// file compiles both ways:
//
//   * under nvcc: real kernels, launched on the current stream, atomics via gpuAtomicAdd, a device
//     guard for the tensors' device;
//   * with DCN_CUDA_EMULATION defined, under a plain host compiler (g++; no CUDA toolkit needed):
//     every launch runs its blocks and threads one after another on the calling CPU thread, with
//     blockIdx/threadIdx/blockDim/gridDim set for each; atomics are plain additions (the threads
//     never run concurrently); there is no stream and the guard does nothing.
//
// The emulation is exact for kernels that, like ours, use neither shared memory nor __syncthreads
// nor warp intrinsics: each thread's work is independent, so running the threads in sequence
// computes what any GPU schedule computes (up to the order of atomic additions).
//
// How a .cu file uses it (dcn_cuda.cu is the example):
//   1. include this header instead of the CUDA/c10-cuda headers;
//   2. mark kernels DCN_KERNEL, device-only helpers DCN_DEVICE, shared ones DCN_HOST_DEVICE (dcn_sampling.h);
//   3. loop `for (int64_t item = gpu::first_item(); item < work; item += gpu::item_stride())`;
//   4. scatter with gpu::atomic_add, launch with gpu::launch(kernel, gpu::blocks_for(work, threads),
//      threads, args...), guard with `gpu::DeviceGuard guard(tensor.device())`;
//   5. register its ops for CUDA inside `#ifndef DCN_CUDA_EMULATION`, and add a file under
//      ../emulation/ that defines DCN_CUDA_EMULATION, #includes the .cu and registers the same
//      launchers as CPU kernels of `<op>_emulated` ops (emulation/dcn_cuda_emulated.cpp is the example).
#pragma once

#include <c10/core/Device.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "../dcn_sampling.h"

#if defined(DCN_CUDA_EMULATION)
#if defined(__CUDACC__)
#error "DCN_CUDA_EMULATION is for host compilers; nvcc builds the real kernels"
#endif
#define DCN_KERNEL
#define DCN_DEVICE inline
#else
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#define DCN_KERNEL __global__
#define DCN_DEVICE __device__ __forceinline__
#endif

namespace dcn::gpu {

#if defined(DCN_CUDA_EMULATION)

// CUDA's built-in index variables, set by launch() for each emulated thread.
struct Dim3 {
  unsigned int x = 0;
};
inline thread_local Dim3 blockIdx, threadIdx, blockDim, gridDim;

// Threads launched by each emulated launch since the last take_launch_log() (tests read it to check
// how much parallelism a launch exposes).
inline thread_local std::vector<int64_t> launch_log;

inline std::vector<int64_t> take_launch_log() { return std::exchange(launch_log, {}); }

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), unsigned int blocks, unsigned int threads, Args&&... args) {
  launch_log.push_back(static_cast<int64_t>(blocks) * threads);
  gridDim.x = blocks;
  blockDim.x = threads;
  for (unsigned int b = 0; b < blocks; ++b) {
    blockIdx.x = b;
    for (unsigned int t = 0; t < threads; ++t) {
      threadIdx.x = t;
      kernel(args...);
    }
  }
}

template <typename T>
inline void atomic_add(T* address, T value) {
  *address += value;
}

struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};

#else

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), unsigned int blocks, unsigned int threads, Args&&... args) {
  kernel<<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
DCN_DEVICE void atomic_add(T* address, T value) {
  gpuAtomicAdd(address, value);
}

using DeviceGuard = c10::cuda::CUDAGuard;

#endif

// Most blocks per launch (gridDim.x may be up to 2^31 - 1; this cap leaves each thread of a huge
// launch a few items, which the grid-stride loops handle).
constexpr int64_t kMaxBlocks = 65535L * 32;

// Blocks for `work` items at `threads` per block: one item per thread, at least one block, at most
// kMaxBlocks. Test knob, read on every launch (cheap) so tests can set it per case:
// DCN_CUDA_MAX_BLOCKS=n caps the grid lower, so that threads loop over several items.
inline unsigned int blocks_for(int64_t work, int threads) {
  int64_t cap = kMaxBlocks;
  if (const char* env = std::getenv("DCN_CUDA_MAX_BLOCKS"); env != nullptr && *env != '\0') {
    cap = std::clamp<int64_t>(std::atoll(env), 1, kMaxBlocks);
  }
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned int>(std::clamp<int64_t>(blocks, 1, cap));
}

// Flat index of this thread's first work item, and the grid-stride step (64-bit: never overflows).
DCN_DEVICE int64_t first_item() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
DCN_DEVICE int64_t item_stride() { return static_cast<int64_t>(blockDim.x) * gridDim.x; }

}  // namespace dcn::gpu
