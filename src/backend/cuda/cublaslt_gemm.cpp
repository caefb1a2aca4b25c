#include "backend/cuda/cublaslt_gemm.hpp"

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_memory.hpp"

namespace btm::gpu {

// How one column-major problem runs: cuBLASLt with cached descriptors and algorithm, or
// cublasGemmEx where the heuristic offers nothing.
struct LtGemm::Plan {
  bool use_lt = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    // Destruction cannot fail in a way worth reporting.
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

// The largest power of two (<= 256) dividing the address: what cuBLASLt may assume.
std::uint32_t alignment_of(const void* p) {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

}  // namespace

LtGemm::LtGemm(cudaStream_t stream, DeviceMemory& memory) : stream_(stream), memory_(&memory) {
  BTM_CUBLAS(cublasLtCreate(&lt_));
  BTM_CUBLAS(cublasCreate(&blas_));
  BTM_CUBLAS(cublasSetStream(blas_, stream_));
  workspace_ = memory_->allocate(kWorkspaceBytes);
  // Both libraries run on the one stream, so they can share the workspace.
  BTM_CUBLAS(cublasSetWorkspace(blas_, workspace_, kWorkspaceBytes));
}

LtGemm::~LtGemm() {
  plans_.clear();
  if (blas_) cublasDestroy(blas_);
  if (lt_) cublasLtDestroy(lt_);
  try {
    memory_->free(workspace_);
  } catch (...) {
    // Nothing useful to do while tearing down.
  }
}

LtGemm::Plan& LtGemm::plan_for(const Problem& p) {
  auto key = p.key();
  auto found = plans_.find(key);
  if (found != plans_.end()) return *found->second;

  auto plan = std::make_unique<Plan>();
  BTM_CUBLAS(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  BTM_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &p.trans_a, sizeof p.trans_a));
  BTM_CUBLAS(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &p.trans_b, sizeof p.trans_b));
  // Layouts describe the matrices as stored, before op().
  const bool ta = p.trans_a != CUBLAS_OP_N;
  const bool tb = p.trans_b != CUBLAS_OP_N;
  BTM_CUBLAS(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, ta ? p.k : p.m, ta ? p.m : p.k, p.lda));
  BTM_CUBLAS(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, tb ? p.n : p.k, tb ? p.k : p.n, p.ldb));
  BTM_CUBLAS(cublasLtMatrixLayoutCreate(&plan->c, p.c_type, p.m, p.n, p.ldc));

  cublasLtMatmulPreference_t pref = nullptr;
  BTM_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
  const std::uint64_t workspace = kWorkspaceBytes;
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                               &workspace, sizeof workspace);
  // Tell the heuristic how aligned the buffers really are (the default assumes 256 bytes).
  const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, p.align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, p.align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, p.align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, p.align_c}};
  for (const auto& [attr, value] : alignments) {
    if (status == CUBLAS_STATUS_SUCCESS)
      status = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value);
  }
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulAlgoGetHeuristic(lt_, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1, &result,
                                            &returned);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (status == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan->use_lt = true;
    plan->algo = result.algo;
  } else if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED) {
    BTM_CUBLAS(status);  // a real failure, not "no algorithm for this shape"
  }
  return *plans_.emplace(key, std::move(plan)).first->second;
}

void LtGemm::run(Problem p, const void* a, const void* b, void* c, bool accumulate) {
  if (p.m == 0 || p.n == 0) return;
  const std::size_t c_elem = p.c_type == CUDA_R_32F ? 4 : 2;
  if (p.k == 0) {
    // An empty sum: C = 0, or C unchanged when accumulating.
    if (!accumulate) BTM_CUDA(cudaMemsetAsync(c, 0, std::size_t(p.ldc) * p.n * c_elem, stream_));
    return;
  }
  Plan& plan = plan_for(p);
  const float alpha = 1.0f;
  const float beta = accumulate ? 1.0f : 0.0f;  // beta = 0: C is not read (may hold NaN)
  if (plan.use_lt) {
    BTM_CUBLAS(cublasLtMatmul(lt_, plan.desc, &alpha, a, plan.a, b, plan.b, &beta, c, plan.c, c, plan.c, &plan.algo,
                              workspace_, kWorkspaceBytes, stream_));
  } else {
    BTM_CUBLAS(cublasGemmEx(blas_, p.trans_a, p.trans_b, p.m, p.n, p.k, &alpha, a, CUDA_R_16BF, p.lda, b,
                            CUDA_R_16BF, p.ldb, &beta, c, p.c_type, p.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

// Row-major y[n,out] is column-major y^T [out, n]: y^T = W x^T with W stored as [in, out]
// column-major (so op(A) = T), x^T stored as [in, n].
void LtGemm::linear_forward(const void* x, const void* w, void* y, int n, int in, int out, bool accumulate) {
  Problem p{CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, in, in, out, CUDA_R_16BF,
            alignment_of(w), alignment_of(x), alignment_of(y)};
  run(p, w, x, y, accumulate);
}

// dx^T [in, n] = W^T-as-stored [in, out] times dy^T [out, n].
void LtGemm::linear_backward_input(const void* dy, const void* w, void* dx, int n, int in, int out,
                                   bool accumulate) {
  Problem p{CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, in, out, in, CUDA_R_16BF,
            alignment_of(w), alignment_of(dy), alignment_of(dx)};
  run(p, w, dy, dx, accumulate);
}

// dW^T [in, out] += x^T [in, n] times (dy^T [out, n])^T.
void LtGemm::linear_backward_weight(const void* dy, const void* x, float* dw, int n, int in, int out) {
  Problem p{CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, in, out, in, CUDA_R_32F,
            alignment_of(x), alignment_of(dy), alignment_of(dw)};
  run(p, x, dy, dw, true);
}

}  // namespace btm::gpu
