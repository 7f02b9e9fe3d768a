// A cache of one large CPU block for the duration of a forward pass (dcn::block_cache_enter / _exit).
//
// Why: glibc maps every block above its largest mmap threshold (32 MiB) afresh and unmaps it on free,
// so each large tensor of a forward pass (ADFNet at 512x768: 26 convolution outputs of 48 MiB) pays
// for its pages again: a page fault and a zeroed page per 4 KiB, about 17 ms per 48 MiB here. Inside a
// scope, the last block of at least 32 MiB that was freed is kept and handed to the next request of
// its size: a forward pass mostly frees a map just before it allocates the next of the same size.
//
// One block, not all freed ones: the memory the cache adds is at most that block, at any moment
// (keeping every freed block until a request of its size came held 0.2 GB more at the peak of a
// 512x768 inference, whose smaller maps grew meanwhile). A request of another size releases it first,
// and so does leaving the last scope.
//
// The cache is the CPU allocator (c10::SetCPUAllocator) from the first scope on, and stays so: oneDNN
// frees its buffers through the current allocator's raw deleter, so a block handed out in a scope may
// come back through whichever allocator is current then; staying installed keeps that one ours.
// Everything else (outside scopes, and blocks below 32 MiB) goes to the previous allocator unchanged.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/library.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace dcn {
namespace cpu {
namespace {

constexpr size_t kLargeBlock = size_t{32} << 20;  // glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems

class BlockCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) override {
    if (bytes < kLargeBlock || depth_.load() == 0) return previous_->allocate(bytes);
    void* data = take(bytes);
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }

  // Enters a scope; the first one installs the cache. False when another allocator of higher priority
  // is installed (then nothing changes).
  bool enter() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (previous_ == nullptr) {
      c10::Allocator* current = c10::GetCPUAllocator();
      previous_raw_ = current->raw_deleter();
      previous_ = current;
      c10::SetCPUAllocator(this);
    }
    if (c10::GetCPUAllocator() != this) return false;
    depth_.fetch_add(1);
    return true;
  }

  // Leaves a scope; the last one releases the kept block.
  void exit() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth_.load() > 0 && depth_.fetch_sub(1) == 1) release_kept();
  }

  int64_t kept_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return kept_ == nullptr ? 0 : static_cast<int64_t>(sizes_.at(kept_));
  }

 private:
  static void release(void* data);

  // The kept block when it has exactly `bytes`, else a new one (the kept block released first).
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (kept_ != nullptr && sizes_.at(kept_) == bytes) {
      void* data = kept_;
      kept_ = nullptr;
      return data;
    }
    release_kept();
    void* data = c10::alloc_cpu(bytes);
    sizes_[data] = bytes;
    return data;
  }

  // Frees `data`: keeps it (releasing the block kept before) when it is one of ours and a scope is
  // open, hands it to the previous allocator's raw deleter when it is not ours.
  void give_back(void* data) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (sizes_.count(data) != 0) {
        release_kept();
        if (depth_.load() > 0) {
          kept_ = data;
        } else {
          free_block(data);
        }
        return;
      }
    }
    TORCH_INTERNAL_ASSERT(previous_raw_ != nullptr, "dcn block cache: a raw free the previous allocator cannot take");
    previous_raw_(data);
  }

  void free_block(void* data) {
    sizes_.erase(data);
    c10::free_cpu(data);
  }

  void release_kept() {
    if (kept_ != nullptr) free_block(kept_);
    kept_ = nullptr;
  }

  std::mutex mutex_;
  std::atomic<int> depth_{0};
  c10::Allocator* previous_ = nullptr;
  c10::DeleterFnPtr previous_raw_ = nullptr;
  std::unordered_map<void*, size_t> sizes_;  // every large block handed out and not freed, and the kept one
  void* kept_ = nullptr;
};

// One instance for the life of the process (it stays the CPU allocator).
BlockCache& cache() {
  static BlockCache* instance = new BlockCache();
  return *instance;
}

void BlockCache::release(void* data) { cache().give_back(data); }

bool block_cache_enter() { return cache().enter(); }
void block_cache_exit() { cache().exit(); }
int64_t block_cache_kept_bytes() { return cache().kept_bytes(); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(dcn, m) {
  m.def("block_cache_enter() -> bool", &block_cache_enter);
  m.def("block_cache_exit() -> ()", &block_cache_exit);
  m.def("block_cache_kept_bytes() -> int", &block_cache_kept_bytes);
}

}  // namespace cpu
}  // namespace dcn
