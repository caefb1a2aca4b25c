#pragma once
// Fused causal attention (flash attention) through cuDNN 9's graph/backend API.
//
// The operation graphs are the ones cudnn-frontend lowers its SDPA nodes to for cuDNN
// < 9.21 (matmul, scale, causal mask by GEN_INDEX/CMP_GE/BINARY_SELECT, softmax as
// max/sub/exp/sum/log/add/div, matmul; the backward recomputes P from the saved stats), so
// cuDNN's fused-attention engines recognise them. Tensors are bf16 [B, H, T, hd] described
// with strides over btm's token-major [B*T, H*hd] layout; grouped KV heads are expressed as
// KV-head batch dimensions (query head h reads KV head h / (H/KV)). The stats output is the
// natural-log log-sum-exp of the scaled scores, which is btm's lse. One graph and execution
// plan is built per shape and cached, failures included.
#include <cuda_runtime_api.h>
#include <cudnn_graph.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "btm/ops/backend.hpp"

namespace btm::gpu {

class Scratch;

class CudnnAttention {
 public:
  CudnnAttention(cudaStream_t stream, Scratch& scratch);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Empty when the shape and pointers are inside what the cuDNN path handles, otherwise why
  // not (e.g. "q_len != kv_len (KV-cache decode)").
  static std::string unsupported_reason(const AttentionShape& s, const void* const* pointers, int count);

  // Run on the backend stream. Return false (with the reason in `why`) when cuDNN offers no
  // execution plan for this shape; the caller then uses the fallback kernels.
  bool forward(const void* q, const void* k, const void* v, void* o, float* lse, const AttentionShape& s,
               std::string* why);
  bool backward(const void* dout, const void* q, const void* k, const void* v, const void* o, const float* lse,
                void* dq, void* dk, void* dv, const AttentionShape& s, std::string* why);

  struct Entry;  // one cached graph and plan (defined in the .cpp)

 private:
  using Key = std::tuple<int, int, int, int, int>;  // batch, seq, heads, kv_heads, head_dim

  Entry& entry(std::map<Key, std::unique_ptr<Entry>>& cache, const AttentionShape& s, bool backward);

  cudaStream_t stream_;
  Scratch* scratch_;
  cudnnHandle_t handle_ = nullptr;
  std::map<Key, std::unique_ptr<Entry>> forward_;
  std::map<Key, std::unique_ptr<Entry>> backward_;
};

}  // namespace btm::gpu
