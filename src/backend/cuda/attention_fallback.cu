// Causal attention without cuDNN: one warp per query row (forward, dq) or per key row (dk, dv),
// each lane holding head_dim/32 elements in registers, fp32 online softmax.
#include "backend/cuda/attention_fallback.hpp"

#include <math_constants.h>

#include <cmath>
#include <string>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernel_utils.cuh"
#include "btm/error.hpp"

namespace btm::gpu {

namespace {

constexpr int kWarpsPerBlock = 4;

// Lane `lane` holds elements lane, lane + 32, ... of a head_dim-long row.
template <int KPL>
__device__ __forceinline__ void load_row(const bf16* __restrict__ row /*[hd]*/, int hd, int lane, float (&r)[KPL]) {
#pragma unroll
  for (int c = 0; c < KPL; ++c) {
    const int d = lane + c * kWarp;
    r[c] = d < hd ? to_f(row[d]) : 0.f;
  }
}

// Dot product of a register row with a row in memory; every lane gets the sum.
template <int KPL>
__device__ __forceinline__ float dot_row(const float (&a)[KPL], const bf16* __restrict__ row /*[hd]*/, int hd,
                                         int lane) {
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < KPL; ++c) {
    const int d = lane + c * kWarp;
    if (d < hd) s += a[c] * to_f(row[d]);
  }
  return warp_sum(s);
}

// Row (b, h, i) of the query side, i fastest.
struct QueryRow {
  int b, h, i;
};
__device__ __forceinline__ QueryRow query_row(long row, const AttentionDims& s) {
  const int i = int(row % s.q_len);
  const long bh = row / s.q_len;
  return {int(bh / s.heads), int(bh % s.heads), i};
}

template <int KPL>
__global__ void attention_forward_kernel(const bf16* __restrict__ q /*[B*Tq, H*hd]*/,
                                         const bf16* __restrict__ k /*[B*Tk, KV*hd]*/,
                                         const bf16* __restrict__ v /*[B*Tk, KV*hd]*/, bf16* __restrict__ o /*[B*Tq, H*hd]*/,
                                         float* __restrict__ lse /*[B,H,Tq]*/, AttentionDims s, float scale) {
  const long row = long(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= long(s.batch) * s.heads * s.q_len) return;  // whole warps leave together
  const int lane = threadIdx.x % kWarp;
  const QueryRow r = query_row(row, s);
  const int hd = s.head_dim;
  const int g = r.h / (s.heads / s.kv_heads);
  const long q_stride = long(s.heads) * hd;
  const long kv_stride = long(s.kv_heads) * hd;
  const long q_at = (long(r.b) * s.q_len + r.i) * q_stride + long(r.h) * hd;
  const bf16* kb = k + long(r.b) * s.kv_len * kv_stride + long(g) * hd;
  const bf16* vb = v + long(r.b) * s.kv_len * kv_stride + long(g) * hd;
  const int last = r.i + (s.kv_len - s.q_len);

  float qv[KPL];
  load_row(q + q_at, hd, lane, qv);
  float acc[KPL];
#pragma unroll
  for (int c = 0; c < KPL; ++c) acc[c] = 0.f;
  float m = -CUDART_INF_F;
  float l = 0.f;
  for (int j = 0; j <= last; ++j) {
    const float score = dot_row(qv, kb + j * kv_stride, hd, lane) * scale;
    const float m_new = fmaxf(m, score);
    const float corr = expf(m - m_new);
    const float p = expf(score - m_new);
    l = l * corr + p;
    const bf16* vr = vb + j * kv_stride;
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      const int d = lane + c * kWarp;
      acc[c] = acc[c] * corr + (d < hd ? p * to_f(vr[d]) : 0.f);
    }
    m = m_new;
  }
  const float inv = 1.f / l;
#pragma unroll
  for (int c = 0; c < KPL; ++c) {
    const int d = lane + c * kWarp;
    if (d < hd) o[q_at + d] = to_b(acc[c] * inv);
  }
  if (lane == 0) lse[(long(r.b) * s.heads + r.h) * s.q_len + r.i] = m + logf(l);
}

// delta[b,h,i] = sum_d dO * O (the softmax backward's row term).
template <int KPL>
__global__ void attention_delta_kernel(const bf16* __restrict__ dout /*[B*Tq, H*hd]*/,
                                       const bf16* __restrict__ o /*[B*Tq, H*hd]*/,
                                       float* __restrict__ delta /*[B,H,Tq]*/, AttentionDims s) {
  const long row = long(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= long(s.batch) * s.heads * s.q_len) return;
  const int lane = threadIdx.x % kWarp;
  const QueryRow r = query_row(row, s);
  const int hd = s.head_dim;
  const long q_at = (long(r.b) * s.q_len + r.i) * long(s.heads) * hd + long(r.h) * hd;
  float dov[KPL];
  load_row(dout + q_at, hd, lane, dov);
  const float d = dot_row(dov, o + q_at, hd, lane);
  if (lane == 0) delta[(long(r.b) * s.heads + r.h) * s.q_len + r.i] = d;
}

// dq = scale * sum_j p_ij (dp_ij - delta_i) k_j, one warp per query row.
template <int KPL>
__global__ void attention_dq_kernel(const bf16* __restrict__ dout, const bf16* __restrict__ q,
                                    const bf16* __restrict__ k, const bf16* __restrict__ v,
                                    const float* __restrict__ lse, const float* __restrict__ delta,
                                    bf16* __restrict__ dq /*[B*Tq, H*hd]*/, AttentionDims s, float scale) {
  const long row = long(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= long(s.batch) * s.heads * s.q_len) return;
  const int lane = threadIdx.x % kWarp;
  const QueryRow r = query_row(row, s);
  const int hd = s.head_dim;
  const int g = r.h / (s.heads / s.kv_heads);
  const long kv_stride = long(s.kv_heads) * hd;
  const long q_at = (long(r.b) * s.q_len + r.i) * long(s.heads) * hd + long(r.h) * hd;
  const bf16* kb = k + long(r.b) * s.kv_len * kv_stride + long(g) * hd;
  const bf16* vb = v + long(r.b) * s.kv_len * kv_stride + long(g) * hd;
  const long stat_at = (long(r.b) * s.heads + r.h) * s.q_len + r.i;
  const float row_lse = lse[stat_at];
  const float row_delta = delta[stat_at];
  const int last = r.i + (s.kv_len - s.q_len);

  float qv[KPL], dov[KPL], acc[KPL];
  load_row(q + q_at, hd, lane, qv);
  load_row(dout + q_at, hd, lane, dov);
#pragma unroll
  for (int c = 0; c < KPL; ++c) acc[c] = 0.f;
  for (int j = 0; j <= last; ++j) {
    const bf16* kr = kb + j * kv_stride;
    const float p = expf(dot_row(qv, kr, hd, lane) * scale - row_lse);
    const float dp = dot_row(dov, vb + j * kv_stride, hd, lane);
    const float ds = p * (dp - row_delta);
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      const int d = lane + c * kWarp;
      if (d < hd) acc[c] += ds * to_f(kr[d]);
    }
  }
#pragma unroll
  for (int c = 0; c < KPL; ++c) {
    const int d = lane + c * kWarp;
    if (d < hd) dq[q_at + d] = to_b(acc[c] * scale);
  }
}

// dv_j = sum p_ij dO_i, dk_j = scale * sum p_ij (dp_ij - delta_i) q_i over every query head of
// the KV group and every query that sees key j; one warp per key row.
template <int KPL>
__global__ void attention_dkv_kernel(const bf16* __restrict__ dout, const bf16* __restrict__ q,
                                     const bf16* __restrict__ k, const bf16* __restrict__ v,
                                     const float* __restrict__ lse, const float* __restrict__ delta,
                                     bf16* __restrict__ dk /*[B*Tk, KV*hd]*/, bf16* __restrict__ dv /*[B*Tk, KV*hd]*/,
                                     AttentionDims s, float scale) {
  const long row = long(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= long(s.batch) * s.kv_heads * s.kv_len) return;
  const int lane = threadIdx.x % kWarp;
  const int j = int(row % s.kv_len);
  const long bg = row / s.kv_len;
  const int g = int(bg % s.kv_heads);
  const int b = int(bg / s.kv_heads);
  const int hd = s.head_dim;
  const int group = s.heads / s.kv_heads;
  const long q_stride = long(s.heads) * hd;
  const long kv_at = (long(b) * s.kv_len + j) * long(s.kv_heads) * hd + long(g) * hd;
  const int offset = s.kv_len - s.q_len;
  const int first = j - offset > 0 ? j - offset : 0;

  float kv[KPL], vv[KPL], dk_acc[KPL], dv_acc[KPL];
  load_row(k + kv_at, hd, lane, kv);
  load_row(v + kv_at, hd, lane, vv);
#pragma unroll
  for (int c = 0; c < KPL; ++c) dk_acc[c] = dv_acc[c] = 0.f;
  for (int h = g * group; h < (g + 1) * group; ++h) {
    for (int i = first; i < s.q_len; ++i) {
      const long q_at = (long(b) * s.q_len + i) * q_stride + long(h) * hd;
      const long stat_at = (long(b) * s.heads + h) * s.q_len + i;
      const bf16* qr = q + q_at;
      const bf16* dor = dout + q_at;
      const float p = expf(dot_row(kv, qr, hd, lane) * scale - lse[stat_at]);
      const float ds = p * (dot_row(vv, dor, hd, lane) - delta[stat_at]);
#pragma unroll
      for (int c = 0; c < KPL; ++c) {
        const int d = lane + c * kWarp;
        if (d < hd) {
          dv_acc[c] += p * to_f(dor[d]);
          dk_acc[c] += ds * to_f(qr[d]);
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < KPL; ++c) {
    const int d = lane + c * kWarp;
    if (d < hd) {
      dk[kv_at + d] = to_b(dk_acc[c] * scale);
      dv[kv_at + d] = to_b(dv_acc[c]);
    }
  }
}

unsigned blocks_for_rows(long rows) { return unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

int lanes_per_row(const AttentionDims& s) {
  if (s.head_dim <= 32) return 1;
  if (s.head_dim <= 64) return 2;
  if (s.head_dim <= 128) return 4;
  if (s.head_dim <= kFallbackMaxHeadDim) return 8;
  throw Error("attention: head_dim " + std::to_string(s.head_dim) + " is larger than the " +
              std::to_string(kFallbackMaxHeadDim) + " the cuda backend supports");
}

template <int KPL>
void forward_impl(cudaStream_t stream, const bf16* q, const bf16* k, const bf16* v, bf16* o, float* lse,
                  const AttentionDims& s, float scale) {
  const long rows = long(s.batch) * s.heads * s.q_len;
  attention_forward_kernel<KPL><<<blocks_for_rows(rows), kWarpsPerBlock * kWarp, 0, stream>>>(q, k, v, o, lse, s,
                                                                                              scale);
  BTM_CUDA_LAUNCH();
}

template <int KPL>
void backward_impl(cudaStream_t stream, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                   const bf16* o, const float* lse, bf16* dq, bf16* dk, bf16* dv, const AttentionDims& s,
                   float scale, float* delta) {
  const long q_rows = long(s.batch) * s.heads * s.q_len;
  const long kv_rows = long(s.batch) * s.kv_heads * s.kv_len;
  const int threads = kWarpsPerBlock * kWarp;
  attention_delta_kernel<KPL><<<blocks_for_rows(q_rows), threads, 0, stream>>>(dout, o, delta, s);
  BTM_CUDA_LAUNCH();
  attention_dq_kernel<KPL><<<blocks_for_rows(q_rows), threads, 0, stream>>>(dout, q, k, v, lse, delta, dq, s,
                                                                            scale);
  BTM_CUDA_LAUNCH();
  attention_dkv_kernel<KPL><<<blocks_for_rows(kv_rows), threads, 0, stream>>>(dout, q, k, v, lse, delta, dk, dv,
                                                                              s, scale);
  BTM_CUDA_LAUNCH();
}

float softmax_scale(const AttentionDims& s) { return float(1.0 / std::sqrt(double(s.head_dim))); }

}  // namespace

void attention_fallback_forward(cudaStream_t stream, const bf16* q, const bf16* k, const bf16* v, bf16* o,
                                float* lse, const AttentionDims& s) {
  const float scale = softmax_scale(s);
  switch (lanes_per_row(s)) {
    case 1: forward_impl<1>(stream, q, k, v, o, lse, s, scale); break;
    case 2: forward_impl<2>(stream, q, k, v, o, lse, s, scale); break;
    case 4: forward_impl<4>(stream, q, k, v, o, lse, s, scale); break;
    default: forward_impl<8>(stream, q, k, v, o, lse, s, scale); break;
  }
}

std::size_t attention_fallback_backward_scratch_bytes(const AttentionDims& s) {
  return std::size_t(s.batch) * s.heads * s.q_len * sizeof(float);
}

void attention_fallback_backward(cudaStream_t stream, const bf16* dout, const bf16* q, const bf16* k,
                                 const bf16* v, const bf16* o, const float* lse, bf16* dq, bf16* dk, bf16* dv,
                                 const AttentionDims& s, void* scratch) {
  const float scale = softmax_scale(s);
  auto* delta = static_cast<float*>(scratch);
  switch (lanes_per_row(s)) {
    case 1: backward_impl<1>(stream, dout, q, k, v, o, lse, dq, dk, dv, s, scale, delta); break;
    case 2: backward_impl<2>(stream, dout, q, k, v, o, lse, dq, dk, dv, s, scale, delta); break;
    case 4: backward_impl<4>(stream, dout, q, k, v, o, lse, dq, dk, dv, s, scale, delta); break;
    default: backward_impl<8>(stream, dout, q, k, v, o, lse, dq, dk, dv, s, scale, delta); break;
  }
}

}  // namespace btm::gpu
