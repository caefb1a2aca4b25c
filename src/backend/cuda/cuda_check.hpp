#pragma once
// Checked calls into CUDA, cuBLAS/cuBLASLt, cuDNN and NCCL. A failing call throws btm::Error
// with the call text, the library's own error string and file:line, e.g.
//   CUDA call failed: cudaMalloc(&p, bytes): cudaErrorMemoryAllocation: out of memory
//   (backend/cuda/cuda_backend.cpp:120)
#include <cublas_api.h>
#include <cuda_runtime_api.h>
#include <cudnn_graph.h>
#include <nccl.h>

namespace btm::gpu {

[[noreturn]] void fail_cuda(cudaError_t code, const char* call, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t code, const char* call, const char* file, int line);
[[noreturn]] void fail_cudnn(cudnnStatus_t code, const char* call, const char* file, int line);
[[noreturn]] void fail_nccl(ncclResult_t code, const char* call, const char* file, int line);

inline void check_cuda(cudaError_t code, const char* call, const char* file, int line) {
  if (code != cudaSuccess) [[unlikely]] fail_cuda(code, call, file, line);
}
inline void check_cublas(cublasStatus_t code, const char* call, const char* file, int line) {
  if (code != CUBLAS_STATUS_SUCCESS) [[unlikely]] fail_cublas(code, call, file, line);
}
inline void check_cudnn(cudnnStatus_t code, const char* call, const char* file, int line) {
  if (code != CUDNN_STATUS_SUCCESS) [[unlikely]] fail_cudnn(code, call, file, line);
}
inline void check_nccl(ncclResult_t code, const char* call, const char* file, int line) {
  if (code != ncclSuccess) [[unlikely]] fail_nccl(code, call, file, line);
}

// "src/backend/cuda/x.cu:12" from a compiler path, for messages.
const char* short_path(const char* file);

}  // namespace btm::gpu

#define BTM_CUDA(call) ::btm::gpu::check_cuda((call), #call, __FILE__, __LINE__)
#define BTM_CUBLAS(call) ::btm::gpu::check_cublas((call), #call, __FILE__, __LINE__)
#define BTM_CUDNN(call) ::btm::gpu::check_cudnn((call), #call, __FILE__, __LINE__)
#define BTM_NCCL(call) ::btm::gpu::check_nccl((call), #call, __FILE__, __LINE__)
// After a <<<...>>> launch: reports a bad launch configuration at the launch site.
#define BTM_CUDA_LAUNCH() ::btm::gpu::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
