#pragma once
// AdamW, fp32 vector arithmetic and deterministic reductions of the cuda backend.
#include <cuda_runtime_api.h>

#include <cstddef>

namespace btm::gpu {

// PyTorch AdamW on fp32 master weights: p -= lr*wd*p; m,v moments; bias-corrected step.
// step_size = lr / (1 - beta1^step), sqrt_bc2 = sqrt(1 - beta2^step) (computed by the caller
// in double).
void launch_adamw(cudaStream_t stream, float* p /*[n]*/, const float* g /*[n]*/, float* m /*[n]*/,
                  float* v /*[n]*/, std::size_t n, float lr, float beta1, float beta2, float eps,
                  float weight_decay, float step_size, float sqrt_bc2);
void launch_scale(cudaStream_t stream, float* x /*[n]*/, float alpha, std::size_t n);
// y[n] += a * x[n]
void launch_axpy(cudaStream_t stream, float a, const float* x /*[n]*/, float* y /*[n]*/, std::size_t n);

// Bytes of device scratch reduce_to_host needs (partials and the result).
std::size_t reduction_scratch_bytes();
// sum(x) or sum(x^2) in double by a two-pass block reduction whose order depends only on n
// (bitwise reproducible); synchronizes the stream and returns the value on the host.
// `host_result` is pinned host memory for one double.
double reduce_to_host(cudaStream_t stream, const float* x /*[n]*/, std::size_t n, bool squares,
                      void* scratch, double* host_result);

}  // namespace btm::gpu
