#include "backend/cuda/cuda_check.hpp"

#include <cublasLt.h>

#include <cstring>
#include <string>

#include "btm/error.hpp"

namespace btm::gpu {

const char* short_path(const char* file) {
  // Keep the path from "src/" on, as btm::fail_call does for every other library.
  const char* best = file;
  for (const char* p = std::strstr(file, "/src/"); p; p = std::strstr(p + 1, "/src/")) best = p + 1;
  return best;
}

namespace {
[[noreturn]] void fail(const std::string& library, const char* call, const std::string& detail,
                       const char* file, int line) {
  throw Error(library + " call failed: " + call + ": " + detail + " (" + short_path(file) + ":" +
              std::to_string(line) + ")");
}
}  // namespace

void fail_cuda(cudaError_t code, const char* call, const char* file, int line) {
  fail("CUDA", call, std::string(cudaGetErrorName(code)) + ": " + cudaGetErrorString(code), file, line);
}

void fail_cublas(cublasStatus_t code, const char* call, const char* file, int line) {
  fail("cuBLAS", call, cublasLtGetStatusName(code) + std::string(": ") + cublasLtGetStatusString(code),
       file, line);
}

void fail_cudnn(cudnnStatus_t code, const char* call, const char* file, int line) {
  char last[1024] = {0};
  cudnnGetLastErrorString(last, sizeof last);
  std::string detail = cudnnGetErrorString(code);
  if (last[0]) detail += std::string(" (") + last + ")";
  fail("cuDNN", call, detail, file, line);
}

void fail_nccl(ncclResult_t code, const char* call, const char* file, int line) {
  std::string detail = ncclGetErrorString(code);
  const char* last = ncclGetLastError(nullptr);
  if (last && last[0]) detail += std::string(" (") + last + ")";
  fail("NCCL", call, detail, file, line);
}

}  // namespace btm::gpu
