#pragma once
// Device helpers shared by the hand-written kernels: bf16 conversion, warp and block
// reductions, launch geometry.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace btm::gpu {

using bf16 = __nv_bfloat16;

constexpr int kWarp = 32;
constexpr int kBlock = 256;  // threads per block for element-wise kernels

__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ bf16 to_b(float v) { return __float2bfloat16_rn(v); }

// Sum over the 32 lanes of a warp; every lane gets the result (butterfly).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block; every thread gets the result. `shared` holds at least 33 T.
// Must be reached by every thread of the block.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = (blockDim.x + kWarp - 1) / kWarp;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? shared[lane] : T(0);
    w = warp_sum(w);
    if (lane == 0) shared[32] = w;
  }
  __syncthreads();
  T total = shared[32];
  __syncthreads();  // the caller may reuse `shared` right away
  return total;
}

// Blocks for a grid-stride loop over n items (n > 0).
inline unsigned grid_for(std::size_t n, int block = kBlock) {
  std::size_t blocks = (n + block - 1) / block;
  const std::size_t cap = 65536;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

}  // namespace btm::gpu
