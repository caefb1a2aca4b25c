#pragma once
// Straightforward causal attention kernels (fp32 math, one warp per row): used where cuDNN's
// fused attention does not apply (KV-cache decode with Tq < Tk, head_dim not a multiple of 8,
// unaligned pointers) and selectable with BTM_CUDA_ATTENTION=fallback. Deterministic: no
// atomics; dk/dv sum over the query heads of a KV group in a fixed order.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace btm::gpu {

using bf16 = __nv_bfloat16;

struct AttentionDims {
  int batch, q_len, kv_len, heads, kv_heads, head_dim;
};

constexpr int kFallbackMaxHeadDim = 256;

// o[B*Tq, H*hd], lse[B,H,Tq] from q[B*Tq, H*hd], k,v[B*Tk, KV*hd]; query i sits at position
// i + (Tk - Tq) and sees keys 0..i + (Tk - Tq).
void attention_fallback_forward(cudaStream_t stream, const bf16* q, const bf16* k, const bf16* v, bf16* o,
                                float* lse, const AttentionDims& s);
// Scratch bytes the backward needs (one fp32 per query row: sum(dO * O)).
std::size_t attention_fallback_backward_scratch_bytes(const AttentionDims& s);
// dq[B*Tq, H*hd], dk, dv[B*Tk, KV*hd] (all overwritten).
void attention_fallback_backward(cudaStream_t stream, const bf16* dout, const bf16* q, const bf16* k,
                                 const bf16* v, const bf16* o, const float* lse, bf16* dq, bf16* dk, bf16* dv,
                                 const AttentionDims& s, void* scratch);

}  // namespace btm::gpu
