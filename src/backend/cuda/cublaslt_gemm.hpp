#pragma once
// The three GEMMs of a linear layer through cuBLASLt: bf16 A/B, fp32 compute, bf16 output
// with beta = 1 for the fused residual add, fp32 weight gradient accumulated with beta = 1.
// Row-major [rows, cols] buffers are column-major [cols, rows] matrices to cuBLAS, so every
// product is computed transposed (see the .cpp). Descriptors and the heuristic's algorithm
// are cached per shape and pointer alignment; a shape cuBLASLt has no algorithm for (e.g.
// an odd leading dimension) runs through cublasGemmEx instead.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

namespace btm::gpu {

class DeviceMemory;

class LtGemm {
 public:
  LtGemm(cudaStream_t stream, DeviceMemory& memory);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // y[n,out] (=|+=) x[n,in] w[out,in]^T, bf16.
  void linear_forward(const void* x, const void* w, void* y, int n, int in, int out, bool accumulate);
  // dx[n,in] (=|+=) dy[n,out] w[out,in], bf16.
  void linear_backward_input(const void* dy, const void* w, void* dx, int n, int in, int out, bool accumulate);
  // dw[out,in] (fp32) += dy[n,out]^T x[n,in].
  void linear_backward_weight(const void* dy, const void* x, float* dw, int n, int in, int out);

  static constexpr std::size_t kWorkspaceBytes = 32u << 20;

 private:
  using Key = std::tuple<int, int, int, int, int, int, int, int, int, std::uint32_t, std::uint32_t, std::uint32_t>;
  // Column-major problem: C[m,n] = op(A) op(B) (+ C), leading dimensions as stored.
  struct Problem {
    cublasOperation_t trans_a, trans_b;
    int m, n, k, lda, ldb, ldc;
    cudaDataType_t c_type;
    std::uint32_t align_a, align_b, align_c;
    Key key() const {
      return {int(trans_a), int(trans_b), m, n, k, lda, ldb, ldc, int(c_type), align_a, align_b, align_c};
    }
  };
  struct Plan;  // descriptors + algorithm, or "use cublasGemmEx"

  void run(Problem p, const void* a, const void* b, void* c, bool accumulate);
  Plan& plan_for(const Problem& p);

  cudaStream_t stream_;
  DeviceMemory* memory_;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace btm::gpu
