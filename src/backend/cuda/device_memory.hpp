#pragma once
// Device memory for the cuda backend. Allocation is stream-ordered on the backend's one
// stream (cudaMallocAsync from the device's default pool, whose release threshold is raised
// so that freed blocks stay cached: a caching allocator without device-wide syncs). Devices
// without memory-pool support fall back to cudaMalloc/cudaFree after a stream sync.
#include <cuda_runtime_api.h>

#include <cstddef>

namespace btm::gpu {

class DeviceMemory {
 public:
  DeviceMemory(int device, cudaStream_t stream);
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  // Plain device memory (never managed), 256-byte aligned, contents undefined.
  void* allocate(std::size_t bytes);
  void free(void* ptr);  // nullptr is ignored

 private:
  cudaStream_t stream_;
  bool pools_ = false;
};

// A growable scratch buffer for kernels that need temporary device memory (reduction
// partials, cuDNN workspaces). One operation uses it at a time; every user runs on the same
// stream, so reuse is ordered. Contents are undefined between uses.
class Scratch {
 public:
  explicit Scratch(DeviceMemory& memory) : memory_(&memory) {}
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  void* get(std::size_t bytes);  // at least `bytes`, 256-byte aligned; nullptr for 0

 private:
  DeviceMemory* memory_;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Rounds up to a multiple of 256 bytes (carving several regions out of one scratch).
constexpr std::size_t align256(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace btm::gpu
