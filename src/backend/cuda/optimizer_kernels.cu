// AdamW, vector arithmetic and deterministic reductions.
#include "backend/cuda/optimizer_kernels.hpp"

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernel_utils.cuh"

namespace btm::gpu {

namespace {

__global__ void adamw_kernel(float* __restrict__ p /*[n]*/, const float* __restrict__ g /*[n]*/,
                             float* __restrict__ m /*[n]*/, float* __restrict__ v /*[n]*/, std::size_t n,
                             float decay, float beta1, float beta2, float eps, float step_size,
                             float sqrt_bc2) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    float pi = p[i] * decay;
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    const float denom = sqrtf(vi) / sqrt_bc2 + eps;
    pi -= step_size * (mi / denom);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void scale_kernel(float* __restrict__ x /*[n]*/, float alpha, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    x[i] *= alpha;
}

__global__ void axpy_kernel(float a, const float* __restrict__ x /*[n]*/, float* __restrict__ y /*[n]*/,
                            std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    y[i] += a * x[i];
}

constexpr int kMaxPartials = 1024;

// Pass 1: partial[block] = sum over a fixed grid-stride slice, in double.
__global__ void reduce_partial_kernel(const float* __restrict__ x /*[n]*/, std::size_t n, bool squares,
                                      double* __restrict__ partial /*[gridDim.x]*/) {
  __shared__ double shared[33];
  double acc = 0.0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const double v = x[i];
    acc += squares ? v * v : v;
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Pass 2: one block sums the partials in a fixed order.
__global__ void reduce_final_kernel(const double* __restrict__ partial /*[count]*/, int count,
                                    double* __restrict__ out /*[1]*/) {
  __shared__ double shared[33];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) *out = acc;
}

}  // namespace

void launch_adamw(cudaStream_t stream, float* p, const float* g, float* m, float* v, std::size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float step_size, float sqrt_bc2) {
  if (n == 0) return;
  adamw_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, g, m, v, n, 1.0f - lr * weight_decay, beta1, beta2, eps,
                                                   step_size, sqrt_bc2);
  BTM_CUDA_LAUNCH();
}

void launch_scale(cudaStream_t stream, float* x, float alpha, std::size_t n) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kBlock, 0, stream>>>(x, alpha, n);
  BTM_CUDA_LAUNCH();
}

void launch_axpy(cudaStream_t stream, float a, const float* x, float* y, std::size_t n) {
  if (n == 0) return;
  axpy_kernel<<<grid_for(n), kBlock, 0, stream>>>(a, x, y, n);
  BTM_CUDA_LAUNCH();
}

std::size_t reduction_scratch_bytes() { return (kMaxPartials + 1) * sizeof(double); }

double reduce_to_host(cudaStream_t stream, const float* x, std::size_t n, bool squares, void* scratch,
                      double* host_result) {
  if (n == 0) return 0.0;
  auto* partial = static_cast<double*>(scratch);
  double* out = partial + kMaxPartials;
  // The block count depends on n alone, so the summation order is reproducible.
  std::size_t blocks = (n + 4 * kBlock - 1) / (4 * kBlock);
  if (blocks > std::size_t(kMaxPartials)) blocks = kMaxPartials;
  reduce_partial_kernel<<<unsigned(blocks), kBlock, 0, stream>>>(x, n, squares, partial);
  BTM_CUDA_LAUNCH();
  reduce_final_kernel<<<1, kBlock, 0, stream>>>(partial, int(blocks), out);
  BTM_CUDA_LAUNCH();
  BTM_CUDA(cudaMemcpyAsync(host_result, out, sizeof(double), cudaMemcpyDeviceToHost, stream));
  BTM_CUDA(cudaStreamSynchronize(stream));
  return *host_result;
}

}  // namespace btm::gpu
