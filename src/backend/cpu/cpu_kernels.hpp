#pragma once
// The cpu kernels behind CpuBackend (private to src/backend/cpu). Compute tensors are fp32
// here, so every pointer is a float*; shapes and semantics are those of btm::Backend
// (include/btm/ops/backend.hpp). Non-BLAS kernels are named Kokkos kernels on the host
// execution space; every result is deterministic run to run.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "btm/ops/backend.hpp"

namespace btm::cpu {

// Grow-only, 64-byte aligned float workspace: kernels reuse it instead of allocating per call.
class Scratch {
 public:
  Scratch() = default;
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* floats(std::size_t n);  // at least n floats; contents unspecified

 private:
  float* data_ = nullptr;
  std::size_t capacity_ = 0;
};

// cos/sin of pos * theta^(-2i/hd), computed in double, cached for (head_dim, theta) and
// positions [0, positions); grows by doubling so decode (pos0 + 1 per call) rarely rebuilds.
class RopeTable {
 public:
  // Makes positions [0, needed) available; returns the [positions, hd/2] tables.
  void ensure(int needed, int head_dim, float theta);
  const float* cos() const { return cos_.data(); }
  const float* sin() const { return sin_.data(); }

 private:
  int head_dim_ = 0;
  float theta_ = 0.0f;
  int positions_ = 0;
  std::vector<float> cos_, sin_;
};

// ---- host memory (cpu_backend.cpp) ------------------------------------------------------
void* aligned_zeroed_alloc(std::size_t bytes);  // 64-byte aligned, zero-filled

// ---- cpu_linear.cpp: y = x W^T, W [out, in] ------------------------------------------------
// x [n, in], w [out, in], y [n, out]: y = (or +=) x w^T
void linear_forward(const float* x, const float* w, float* y, int n, int in, int out,
                    bool accumulate);
// dy [n, out], w [out, in], dx [n, in]: dx = (or +=) dy w
void linear_backward_input(const float* dy, const float* w, float* dx, int n, int in, int out,
                           bool accumulate);
// dy [n, out], x [n, in], dw [out, in]: dw += dy^T x
void linear_backward_weight(const float* dy, const float* x, float* dw, int n, int in, int out);
// The degenerate k = 0 product (some GEMM libraries skip it entirely): c [m, n] = 0, or
// unchanged when accumulating.
void empty_product(float* c, int m, int n, bool accumulate);

// ---- cpu_embedding.cpp -------------------------------------------------------------------
// tokens [n] (>= 0), table [V, d], x [n, d]: x[i] = table[tokens[i]]
void embedding_forward(const std::int32_t* tokens, const float* table, float* x, int n, int d);
// tokens [n], dx [n, d], dtable [V, d]: dtable[tokens[i]] += dx[i], in token order
void embedding_backward(const std::int32_t* tokens, const float* dx, float* dtable, int n, int d);

// ---- cpu_norm.cpp: RMSNorm ----------------------------------------------------------------
// x, y [n, d]; w [d]; rstd [n]: y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps)
void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int n, int d,
                     float eps);
// dy, x [n, d]; w [d]; rstd [n]; dx [n, d] (= or +=; may alias dy); dw [d] +=
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                      float* dw, int n, int d, bool accumulate);

// ---- cpu_rope.cpp ---------------------------------------------------------------------------
// x [batch*seq, heads*head_dim] in place; token t at position pos0 + t; rotate_half pairs
// (i, i + hd/2); inverse rotates by -angle.
void rope(RopeTable& table, float* x, int batch, int seq, int heads, int head_dim, int pos0,
          float theta, bool inverse);

// ---- cpu_attention.cpp ------------------------------------------------------------------
// q, o [B*Tq, H*hd]; k, v [B*Tk, KV*hd]; lse [B, H, Tq]
void attention_forward(Scratch& scratch, const float* q, const float* k, const float* v, float* o,
                       float* lse, const AttentionShape& s);
// dout, o, dq [B*Tq, H*hd]; q likewise; k, v, dk, dv [B*Tk, KV*hd]; lse [B, H, Tq].
// dq, dk, dv are overwritten.
void attention_backward(Scratch& scratch, const float* dout, const float* q, const float* k,
                        const float* v, const float* o, const float* lse, float* dq, float* dk,
                        float* dv, const AttentionShape& s);

// ---- cpu_swiglu.cpp -------------------------------------------------------------------------
// g, u, a [n]: a = silu(g) * u
void swiglu_forward(const float* g, const float* u, float* a, std::size_t n);
// da, g, u, dg, du [n] (dg/du may alias g/u)
void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du,
                     std::size_t n);

// ---- cpu_cross_entropy.cpp --------------------------------------------------------------
// logits [n, vocab] (overwritten by the gradient when grad_scale != 0); targets [n]; nll [n]
void cross_entropy(float* logits, const std::int32_t* targets, float* nll, int n, int vocab,
                   float grad_scale);

// ---- cpu_optimizer.cpp ------------------------------------------------------------------------
// p, g, m, v [n]: one AdamW step (PyTorch semantics), step is 1-based
void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float beta1,
           float beta2, float eps, float weight_decay, long step);
double sum_squares(const float* x /*[n]*/, std::size_t n);
double sum(const float* x /*[n]*/, std::size_t n);
void scale(float* x /*[n]*/, float alpha, std::size_t n);
// x, y [n]: y += a * x
void axpy(float a, const float* x, float* y, std::size_t n);

// ---- cpu_moe.cpp: mixture-of-experts routing (semantics: btm::Backend::moe_*) ----------------
// Gumbel noise of sample_top1 for (seed, row, expert): -log(-log u), u from splitmix64.
double moe_gumbel(std::uint64_t seed, std::int64_t row, int expert);
// logits, probs [n,E]; expert, gate [n,k]
void moe_route(const float* logits, float* probs, std::int32_t* expert, float* gate, const MoeRouteShape& s);
// expert, gate, slot [n,k]; rows [n*k] (first out.rows() used)
void moe_plan(const std::int32_t* expert, const float* gate, std::int32_t* rows, std::int32_t* slot,
              const MoeRouteShape& s, MoeDispatch& out);
// x [n,d], rows [m], xe [m,d]
void moe_dispatch(const float* x, const std::int32_t* rows, float* xe, int m, int d);
// dxe [m,d], slot [n,k], dx [n,d]
void moe_dispatch_backward(const float* dxe, const std::int32_t* slot, float* dx, int n, int k, int d,
                           bool accumulate);
// ye [m,d], slot, gate [n,k], y [n,d] +=
void moe_combine(const float* ye, const std::int32_t* slot, const float* gate, float* y, int n, int k, int d);
// dy [n,d], ye [m,d], slot, gate [n,k], dye [m,d] =, dgate [n,k] =
void moe_combine_backward(const float* dy, const float* ye, const std::int32_t* slot, const float* gate,
                          float* dye, float* dgate, int n, int k, int d);
// probs [n,E], expert, gate [n,k], pu [2,E], loss [1]
void moe_aux_loss(const float* probs, const std::int32_t* expert, const float* gate, float* pu, float* loss,
                  const MoeRouteShape& s, MoeAuxForm form, float coef);
// dgate [n,k], probs [n,E], expert, gate [n,k], pu [2,E], dlogits [n,E] =
void moe_route_backward(const float* dgate, const float* probs, const std::int32_t* expert, const float* gate,
                        const float* pu, float* dlogits, const MoeRouteShape& s, MoeAuxForm form, float coef,
                        float aux_scale);

// ---- cpu_allreduce.cpp ----------------------------------------------------------------------
std::unique_ptr<Allreducer> make_mpi_allreducer(const Comm& comm);

}  // namespace btm::cpu
