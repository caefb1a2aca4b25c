#include "backend/cuda/device_memory.hpp"

#include <cstdint>

#include "backend/cuda/cuda_check.hpp"

namespace btm::gpu {

DeviceMemory::DeviceMemory(int device, cudaStream_t stream) : stream_(stream) {
  int supported = 0;
  BTM_CUDA(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device));
  pools_ = supported != 0;
  if (pools_) {
    // Keep freed memory in the pool instead of returning it to the driver at every sync.
    cudaMemPool_t pool = nullptr;
    BTM_CUDA(cudaDeviceGetDefaultMemPool(&pool, device));
    std::uint64_t threshold = UINT64_MAX;
    BTM_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
}

void* DeviceMemory::allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  void* ptr = nullptr;
  if (pools_) {
    BTM_CUDA(cudaMallocAsync(&ptr, bytes, stream_));
  } else {
    BTM_CUDA(cudaMalloc(&ptr, bytes));
  }
  return ptr;
}

void DeviceMemory::free(void* ptr) {
  if (!ptr) return;
  if (pools_) {
    BTM_CUDA(cudaFreeAsync(ptr, stream_));
  } else {
    // cudaFree does not wait for work queued on a non-blocking stream.
    BTM_CUDA(cudaStreamSynchronize(stream_));
    BTM_CUDA(cudaFree(ptr));
  }
}

Scratch::~Scratch() {
  try {
    memory_->free(ptr_);
  } catch (...) {
    // A destructor must not throw; the context is going away with the backend anyway.
  }
}

void* Scratch::get(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  if (bytes > bytes_) {
    // Grow geometrically so that slowly increasing requests do not reallocate every call.
    std::size_t want = align256(bytes > 2 * bytes_ ? bytes : 2 * bytes_);
    memory_->free(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    ptr_ = memory_->allocate(want);
    bytes_ = want;
  }
  return ptr_;
}

}  // namespace btm::gpu
