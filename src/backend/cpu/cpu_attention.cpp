// Causal attention with grouped KV heads, flash-style: per (sequence, KV head) and block of
// query rows, the scores come from one sgemm, the softmax is one row pass, and the output
// another sgemm. Only the log-sum-exp is kept for the backward, which recomputes the
// probabilities. Query blocks stop at the causal edge, so fully masked key ranges cost nothing.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_math.hpp"
#include "btm/error.hpp"

namespace btm::cpu {

namespace {

// Query rows per block: small enough to skip most of the masked triangle, large enough
// for efficient sgemm.
constexpr int kQueryBlock = 64;

struct Geometry {
  int batch, tq, tk, heads, kv_heads, hd, group, offset;
  long qs, ks;  // row strides of q/o and k/v
  float scale;
};

Geometry geometry(const AttentionShape& s, const char* who) {
  auto bad = [&](const std::string& what) {
    return Error(std::string(who) + ": " + what + " (batch=" + std::to_string(s.batch) +
                 " q_len=" + std::to_string(s.q_len) + " kv_len=" + std::to_string(s.kv_len) +
                 " heads=" + std::to_string(s.heads) + " kv_heads=" + std::to_string(s.kv_heads) +
                 " head_dim=" + std::to_string(s.head_dim) + ")");
  };
  if (s.batch < 1 || s.q_len < 1 || s.kv_len < 1 || s.heads < 1 || s.kv_heads < 1 ||
      s.head_dim < 1) {
    throw bad("every dimension must be at least 1");
  }
  if (s.heads % s.kv_heads != 0) throw bad("heads must be a multiple of kv_heads");
  if (s.kv_len < s.q_len) throw bad("kv_len must be >= q_len");
  Geometry g;
  g.batch = s.batch;
  g.tq = s.q_len;
  g.tk = s.kv_len;
  g.heads = s.heads;
  g.kv_heads = s.kv_heads;
  g.hd = s.head_dim;
  g.group = s.heads / s.kv_heads;
  g.offset = s.kv_len - s.q_len;
  g.qs = s.q_stride();
  g.ks = s.kv_stride();
  g.scale = static_cast<float>(1.0 / std::sqrt(double(s.head_dim)));
  return g;
}

// Scores s [width] -> probabilities in place for keys [0, valid), 0 beyond; returns the
// log-sum-exp.
BTM_CPU_DISPATCH float softmax_row(float* s, int valid, int width) {
  const float m = lane_max(s, valid);
  const double total = lane_sum(valid, [&](std::int64_t j) {
    const float e = exp_f32(s[j] - m);
    s[j] = e;
    return double(e);
  });
  const float inv = static_cast<float>(1.0 / total);
  for (int j = 0; j < valid; ++j) s[j] *= inv;
  for (int j = valid; j < width; ++j) s[j] = 0.0f;
  return static_cast<float>(double(m) + std::log(total));
}

// s [width] scores -> P = exp(s - lse); dp [width] -> dS = P (dP - D); both 0 past valid.
BTM_CPU_DISPATCH void softmax_grad_row(float* s, float* dp, float lse, float D, int valid,
                                       int width) {
  for (int j = 0; j < valid; ++j) {
    const float p = exp_f32(s[j] - lse);
    s[j] = p;
    dp[j] = p * (dp[j] - D);
  }
  for (int j = valid; j < width; ++j) {
    s[j] = 0.0f;
    dp[j] = 0.0f;
  }
}

// D[r] = <dO_r, O_r> over the head dim for the rows of a block (strided rows), in double.
BTM_CPU_DISPATCH void row_dots(const float* a, const float* b, long stride, int rows, int hd,
                               float* D) {
  for (int r = 0; r < rows; ++r) {
    const float* x = a + r * stride;
    const float* y = b + r * stride;
    D[r] = static_cast<float>(lane_sum(hd, [&](std::int64_t j) { return double(x[j]) * y[j]; }));
  }
}

// Keys visible to the last row of the block [i0, i0 + rows).
inline int key_end(const Geometry& g, int i0, int rows) {
  return std::min(g.tk, i0 + rows + g.offset);
}

// All query heads of KV head `kvh` in sequence `b`. S: [kQueryBlock, Tk] scratch.
void forward_item(const Geometry& g, int b, int kvh, const float* q, const float* k, const float* v,
                  float* o, float* lse, float* S) {
  const float* K = k + long(b) * g.tk * g.ks + long(kvh) * g.hd;  // [Tk, hd], stride ks
  const float* V = v + long(b) * g.tk * g.ks + long(kvh) * g.hd;
  for (int h = kvh * g.group; h < (kvh + 1) * g.group; ++h) {
    const float* Q = q + long(b) * g.tq * g.qs + long(h) * g.hd;  // [Tq, hd], stride qs
    float* O = o + long(b) * g.tq * g.qs + long(h) * g.hd;
    float* L = lse + (long(b) * g.heads + h) * g.tq;  // [Tq]
    for (int i0 = 0; i0 < g.tq; i0 += kQueryBlock) {
      const int rows = std::min(kQueryBlock, g.tq - i0);
      const int kend = key_end(g, i0, rows);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kend, g.hd, g.scale, Q + i0 * g.qs,
                  int(g.qs), K, int(g.ks), 0.0f, S, kend);
      for (int r = 0; r < rows; ++r) {
        L[i0 + r] = softmax_row(S + long(r) * kend, i0 + r + g.offset + 1, kend);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, g.hd, kend, 1.0f, S, kend, V,
                  int(g.ks), 0.0f, O + i0 * g.qs, int(g.qs));
    }
  }
}

// dK, dV of KV head `kvh` in sequence `b` (summed over its query heads in a fixed order) and
// dQ of those heads. S, dP: [kQueryBlock, Tk] scratch each.
void backward_item(const Geometry& g, int b, int kvh, const float* dout, const float* q,
                   const float* k, const float* v, const float* o, const float* lse, float* dq,
                   float* dk, float* dv, float* S, float* dP) {
  const long kv_off = long(b) * g.tk * g.ks + long(kvh) * g.hd;
  const float* K = k + kv_off;  // [Tk, hd], stride ks
  const float* V = v + kv_off;
  float* dK = dk + kv_off;
  float* dV = dv + kv_off;
  // Query blocks run last to first: the last block sees every key, so the first head's last
  // block overwrites all of dK/dV (beta = 0) and everything after accumulates.
  const int last_block = (g.tq - 1) / kQueryBlock * kQueryBlock;
  for (int h = kvh * g.group; h < (kvh + 1) * g.group; ++h) {
    const long q_off = long(b) * g.tq * g.qs + long(h) * g.hd;
    const float* Q = q + q_off;  // [Tq, hd], stride qs
    const float* O = o + q_off;
    const float* dO = dout + q_off;
    float* dQ = dq + q_off;
    const float* L = lse + (long(b) * g.heads + h) * g.tq;
    for (int i0 = last_block; i0 >= 0; i0 -= kQueryBlock) {
      const int rows = std::min(kQueryBlock, g.tq - i0);
      const int kend = key_end(g, i0, rows);
      const float beta = (h == kvh * g.group && i0 == last_block) ? 0.0f : 1.0f;
      const float* Qb = Q + i0 * g.qs;
      const float* dOb = dO + i0 * g.qs;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kend, g.hd, g.scale, Qb, int(g.qs),
                  K, int(g.ks), 0.0f, S, kend);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kend, g.hd, 1.0f, dOb, int(g.qs),
                  V, int(g.ks), 0.0f, dP, kend);
      float D[kQueryBlock];
      row_dots(dOb, O + i0 * g.qs, g.qs, rows, g.hd, D);
      for (int r = 0; r < rows; ++r) {
        softmax_grad_row(S + long(r) * kend, dP + long(r) * kend, L[i0 + r], D[r],
                         i0 + r + g.offset + 1, kend);
      }
      // dV += P^T dO; dQ = scale dS K; dK += scale dS^T Q
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, g.hd, rows, 1.0f, S, kend, dOb,
                  int(g.qs), beta, dV, int(g.ks));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, g.hd, kend, g.scale, dP, kend, K,
                  int(g.ks), 0.0f, dQ + i0 * g.qs, int(g.qs));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, g.hd, rows, g.scale, dP, kend, Qb,
                  int(g.qs), beta, dK, int(g.ks));
    }
  }
}

// Work items are (sequence, KV head) pairs; each of `slots` concurrent workers owns one
// scratch slice and takes items slot, slot + slots, ... Results do not depend on the split.
int slot_count(const Geometry& g) {
  const int items = g.batch * g.kv_heads;
  return std::max(1, std::min(items, int(HostSpace().concurrency())));
}

}  // namespace

void attention_forward(Scratch& scratch, const float* q /*[B*Tq,H*hd]*/,
                       const float* k /*[B*Tk,KV*hd]*/, const float* v /*[B*Tk,KV*hd]*/,
                       float* o /*[B*Tq,H*hd]*/, float* lse /*[B,H,Tq]*/, const AttentionShape& s) {
  const Geometry g = geometry(s, "attention_forward");
  const int slots = slot_count(g);
  const long slice = long(kQueryBlock) * g.tk;
  float* base = scratch.floats(std::size_t(slots) * slice);
  const int items = g.batch * g.kv_heads;
  Kokkos::parallel_for(
      "btm::cpu::attention_forward", HostRange(0, slots), KOKKOS_LAMBDA(std::int64_t slot) {
        for (int item = int(slot); item < items; item += slots) {
          forward_item(g, item / g.kv_heads, item % g.kv_heads, q, k, v, o, lse,
                       base + slot * slice);
        }
      });
}

void attention_backward(Scratch& scratch, const float* dout /*[B*Tq,H*hd]*/,
                        const float* q /*[B*Tq,H*hd]*/, const float* k /*[B*Tk,KV*hd]*/,
                        const float* v /*[B*Tk,KV*hd]*/, const float* o /*[B*Tq,H*hd]*/,
                        const float* lse /*[B,H,Tq]*/, float* dq /*[B*Tq,H*hd]*/,
                        float* dk /*[B*Tk,KV*hd]*/, float* dv /*[B*Tk,KV*hd]*/,
                        const AttentionShape& s) {
  const Geometry g = geometry(s, "attention_backward");
  const int slots = slot_count(g);
  const long slice = 2L * kQueryBlock * g.tk;
  float* base = scratch.floats(std::size_t(slots) * slice);
  const int items = g.batch * g.kv_heads;
  Kokkos::parallel_for(
      "btm::cpu::attention_backward", HostRange(0, slots), KOKKOS_LAMBDA(std::int64_t slot) {
        float* S = base + slot * slice;
        for (int item = int(slot); item < items; item += slots) {
          backward_item(g, item / g.kv_heads, item % g.kv_heads, dout, q, k, v, o, lse, dq, dk, dv,
                        S, S + slice / 2);
        }
      });
}

}  // namespace btm::cpu
