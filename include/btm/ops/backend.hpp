#pragma once
// The kernel set that forward and backward are written against (ARCHITECTURE, Backends).
//
// Memory: every pointer passed to a kernel is device memory obtained from alloc(). Two
// element types appear:
//   - float*: fp32 everywhere (master weights, gradients, optimizer moments, norm weights,
//     per-row statistics, losses);
//   - void* "compute" tensors: activations and the compute copy of matrices, stored in
//     compute_dtype() (fp32 on the cpu backend, bf16 on the cuda backend).
// Matrices are row-major. Shapes are given on every pointer as [rows, cols]; token-major
// activations are [N, features] with N = B*T rows, t fastest-varying within a sequence.
// Kernels are asynchronous with respect to the host on devices; synchronize() waits.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "btm/comm.hpp"

namespace btm {

enum class DType { f32, bf16 };
std::size_t dtype_bytes(DType t);

struct AttentionShape {
  int batch = 1;     // B
  int q_len = 1;     // Tq: query positions per sequence
  int kv_len = 1;    // Tk >= Tq; query i sits at position i + (Tk - Tq) (KV-cache decode)
  int heads = 1;     // H query heads
  int kv_heads = 1;  // KV heads; H % KV == 0, query head h reads KV head h / (H / KV)
  int head_dim = 1;  // hd
  // Row strides (elements) of q/o, k and v: a sequence's token t of head h starts at
  // ptr + (b*len + t)*stride + h*hd.
  long q_stride() const { return long(heads) * head_dim; }
  long kv_stride() const { return long(kv_heads) * head_dim; }
};

// ---- mixture of experts: how tokens are routed (Backend::moe_*) ---------------------------
enum class MoeRouting {
  top_k,        // top-k of softmax(logits), kept gates renormalised to sum 1 (Mixtral)
  switch_top1,  // top-1, gate = its probability (Switch Transformer); capacity while training
  soft,         // every expert, gate = softmax(logits)
  sample_top1,  // top-1 of logits + Gumbel noise while training, argmax otherwise; gate = probability
};
MoeRouting moe_routing_from_name(const std::string& name);  // a ModelConfig::moe_routing value

enum class MoeAuxForm {
  btx,     // u_i = mean over tokens of the post-top-k gate of expert i (0 where not selected)
  switch_fraction,  // u_i = mean over tokens of the number of slots routed to i (no gradient)
};

struct MoeRouteShape {
  int n = 0;        // N token rows
  int experts = 1;  // E
  int k = 1;        // slots per token: k for top_k, 1 for switch_top1/sample_top1, E for soft
  MoeRouting routing = MoeRouting::top_k;
  bool training = false;   // sample_top1 draws noise only while training
  std::uint64_t seed = 0;  // sample_top1: the Gumbel noise of (row, expert) is a hash of (seed, row, expert)
  int capacity = 0;        // most rows an expert takes (switch_top1 while training); 0: no limit
  std::size_t slots() const { return std::size_t(n) * k; }
};

// What moe_plan reports to the host: the dispatched block is expert-major, expert e's rows
// at [offset(e), offset(e) + counts[e]) in token order.
struct MoeDispatch {
  std::vector<int> counts;        // [E] rows dispatched to each expert
  std::vector<double> gate_sum;   // [E] sum of the gates of those rows
  std::uint64_t dropped = 0;      // token-slots over capacity (not dispatched)
  int rows() const;               // M = sum of counts
  int offset(int expert) const;   // sum of counts[< expert]
};

// Sums a gradient buffer across a communicator (MPI on cpu, NCCL on cuda).
class Allreducer {
 public:
  virtual ~Allreducer() = default;
  virtual void sum(float* device_data, std::size_t n) = 0;
  // Starts summing device_data[n] and returns; the data is not to be touched until wait().
  // Every rank starts the same buckets in the same order. Each element's sum is the one
  // sum() gives at 1 and 2 ranks (a + b either way); at more ranks the order in which the
  // ranks' contributions are added is the collective's, so results match sum() to float
  // rounding and are reproducible for a given rank count and bucket list. Backends without
  // non-blocking collectives sum at once.
  virtual void start_sum(float* device_data, std::size_t n) { sum(device_data, n); }
  // Lets the started sums advance (called between kernels while they run).
  virtual void progress() {}
  // Returns when every started sum is complete.
  virtual void wait() {}
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual DType compute_dtype() const = 0;

  // ---- memory -------------------------------------------------------------------------
  virtual void* alloc(std::size_t bytes) = 0;  // zero-initialised
  virtual void release(void* ptr) = 0;
  virtual void copy_to_device(void* dst, const void* host_src, std::size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, std::size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;  // device to device
  virtual void zero(void* ptr, std::size_t bytes) = 0;
  virtual void synchronize() = 0;
  // fp32 <-> compute dtype. On the cpu backend src and dst may alias (then a no-op).
  virtual void to_compute(const float* src /*[n]*/, void* dst /*[n] compute*/, std::size_t n) = 0;
  virtual void to_float(const void* src /*[n] compute*/, float* dst /*[n]*/, std::size_t n) = 0;

  // ---- linear layers: y = x W^T, W is [out, in] (Hugging Face layout) -------------------
  // The precision of their products (train.precision): f32, or bf16 operands with fp32
  // accumulation. cpu: f32 by default, bf16 through oneDNN where built with it; cuda: bf16
  // only. Throws btm::Error for a precision the backend cannot run.
  virtual void set_matmul_dtype(DType t) = 0;
  // For the logs: "precision=bf16 isa=avx512_core_bf16 impl=brg:avx512_core_bf16" or so.
  virtual std::string matmul_info() const = 0;
  // y[N,out] = x[N,in] W[out,in]^T, or y += ... when accumulate (fused residual add).
  virtual void linear_forward(const void* x, const void* w, void* y, int n, int in, int out,
                              bool accumulate) = 0;
  // dx[N,in] (=|+=) dy[N,out] W[out,in]
  virtual void linear_backward_input(const void* dy, const void* w, void* dx, int n, int in,
                                     int out, bool accumulate) = 0;
  // dw[out,in] += dy[N,out]^T x[N,in]   (fp32 gradient, always accumulated)
  virtual void linear_backward_weight(const void* dy, const void* x, float* dw, int n, int in,
                                      int out) = 0;

  // ---- embedding ----------------------------------------------------------------------
  // x[N,d] = table[tokens[i], :]   (tokens int32 [N], table compute [V,d])
  virtual void embedding_forward(const std::int32_t* tokens, const void* table, void* x, int n,
                                 int d) = 0;
  // dtable[V,d] += scatter of dx[N,d] by tokens[N]
  virtual void embedding_backward(const std::int32_t* tokens, const void* dx, float* dtable, int n,
                                  int d) = 0;

  // ---- RMSNorm: y = x / rms(x) * w --------------------------------------------------------
  // x,y [N,d] compute; w [d] fp32; rstd [N] fp32 (1/rms, saved for backward)
  virtual void rmsnorm_forward(const void* x, const float* w, void* y, float* rstd, int n, int d,
                               float eps) = 0;
  // dx[N,d] (=|+=) d/dx; dw[d] += d/dw. dy,x [N,d] compute.
  virtual void rmsnorm_backward(const void* dy, const void* x, const float* w, const float* rstd,
                                void* dx, float* dw, int n, int d, bool accumulate) = 0;

  // ---- rotary position embedding (Hugging Face rotate_half convention) ------------------
  // x [B*T, heads*hd] in place; token t of a sequence is at position pos0 + t.
  // inverse = true applies the inverse rotation (the backward pass).
  virtual void rope(void* x, int batch, int seq, int heads, int head_dim, int pos0, float theta,
                    bool inverse) = 0;

  // ---- causal attention, softmax(q k^T / sqrt(hd)) v ------------------------------------
  // q,o [B*Tq, H*hd]; k,v [B*Tk, KV*hd]; lse [B, H, Tq] fp32 (log-sum-exp, for backward)
  virtual void attention_forward(const void* q, const void* k, const void* v, void* o, float* lse,
                                 const AttentionShape& s) = 0;
  // dq [B*Tq,H*hd] = ; dk,dv [B*Tk,KV*hd] = (overwritten)
  virtual void attention_backward(const void* dout, const void* q, const void* k, const void* v,
                                  const void* o, const float* lse, void* dq, void* dk, void* dv,
                                  const AttentionShape& s) = 0;

  // ---- SwiGLU: a = silu(g) * u ----------------------------------------------------------
  // g,u,a [n] compute
  virtual void swiglu_forward(const void* g, const void* u, void* a, std::size_t n) = 0;
  // dg,du [n] = from da [n]
  virtual void swiglu_backward(const void* da, const void* g, const void* u, void* dg, void* du,
                               std::size_t n) = 0;

  // ---- fused softmax cross-entropy --------------------------------------------------------
  // logits [N,V] compute; targets int32 [N] (< 0: ignored, nll 0, no gradient).
  // nll[N] fp32 = -log softmax(logits)[target]. When grad_scale != 0 the logits are
  // overwritten by grad_scale * (softmax - onehot(target)); probabilities are never stored.
  virtual void cross_entropy(void* logits, const std::int32_t* targets, float* nll, int n, int vocab,
                             float grad_scale) = 0;

  // ---- optimizer and reductions ---------------------------------------------------------
  // One AdamW step on p,g,m,v [n] fp32 with bias correction for `step` (1-based);
  // decoupled weight decay lr*weight_decay*p.
  virtual void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, long step) = 0;
  virtual double sum_squares(const float* x /*[n]*/, std::size_t n) = 0;  // returns to host
  virtual double sum(const float* x /*[n]*/, std::size_t n) = 0;          // returns to host
  virtual void scale(float* x /*[n]*/, float alpha, std::size_t n) = 0;
  // y[n] = a*x[n] + y[n]  (parameter averaging)
  virtual void axpy(float a, const float* x, float* y, std::size_t n) = 0;

  // ---- mixture of experts ------------------------------------------------------------
  // A layer: logits = router(x); route; plan; dispatch x into an expert-major block xe; each
  // expert's SwiGLU runs on its own rows of xe through linear_forward/swiglu_forward (a
  // grouped GEMM, no expert sees a token not routed to it); combine scatters the expert
  // outputs ye back to token order, weighted by the gates. Slot (t, j) is token t's j-th
  // choice; slot[t, j] is its row in the dispatched block, -1 when dropped over capacity.
  // False when these kernels are not implemented (then they throw).
  virtual bool supports_moe() const = 0;
  // logits[N,E] fp32 = x[N,d] (compute) w[E,d]^T, w the fp32 router (routing stays in fp32)
  virtual void moe_router_forward(const void* x, const float* w, float* logits, int n, int d,
                                  int experts) = 0;
  // dw[E,d] += dlogits[N,E]^T x[N,d];  dx[N,d] += dlogits[N,E] w[E,d]
  virtual void moe_router_backward(const float* dlogits, const void* x, const float* w, float* dw,
                                   void* dx, int n, int d, int experts) = 0;
  // probs[N,E] = softmax(logits[N,E]); expert int32 [N,k] chosen experts (descending score,
  // ties to the lower index); gate[N,k] fp32 their gates (see MoeRouting)
  virtual void moe_route(const float* logits, float* probs, std::int32_t* expert, float* gate,
                         const MoeRouteShape& s) = 0;
  // From expert/gate [N,k]: rows int32 [N*k] (row r of the dispatched block holds token
  // rows[r]; the first M used) and slot int32 [N,k]; the counts come back to the host (a
  // synchronisation: the expert GEMMs need their row counts).
  virtual void moe_plan(const std::int32_t* expert, const float* gate, std::int32_t* rows,
                        std::int32_t* slot, const MoeRouteShape& s, MoeDispatch& out) = 0;
  // xe[M,d] = x[rows[r], :]   (x [N,d], rows int32 [M])
  virtual void moe_dispatch(const void* x, const std::int32_t* rows, void* xe, int m, int d) = 0;
  // dx[N,d] (=|+=) sum_j dxe[slot[t,j], :] over kept slots (dxe [M,d], slot int32 [N,k])
  virtual void moe_dispatch_backward(const void* dxe, const std::int32_t* slot, void* dx, int n,
                                     int k, int d, bool accumulate) = 0;
  // y[N,d] += sum_j gate[t,j] * ye[slot[t,j], :] over kept slots (ye [M,d], gate [N,k] fp32)
  virtual void moe_combine(const void* ye, const std::int32_t* slot, const float* gate, void* y,
                           int n, int k, int d) = 0;
  // dye[M,d] = gate[t,j] * dy[t,:] at row slot[t,j]; dgate[N,k] fp32 = dy[t,:] . ye[slot[t,j],:]
  // (0 for dropped slots). dy [N,d], ye [M,d].
  virtual void moe_combine_backward(const void* dy, const void* ye, const std::int32_t* slot,
                                    const float* gate, void* dye, float* dgate, int n, int k,
                                    int d) = 0;
  // Load balancing of one layer: pu[2,E] fp32 = (p, u) with p_i = mean_t probs[t,i] and u_i
  // per `form`; loss[1] fp32 = coef * E * sum_i u_i p_i. probs [N,E], expert/gate [N,k].
  virtual void moe_aux_loss(const float* probs, const std::int32_t* expert, const float* gate,
                            float* pu, float* loss, const MoeRouteShape& s, MoeAuxForm form,
                            float coef) = 0;
  // dlogits[N,E] fp32 (overwritten) from dgate[N,k] (the objective's gradient w.r.t. the
  // gates) plus aux_scale * d(loss of moe_aux_loss)/d(logits). probs [N,E], expert/gate
  // [N,k], pu [2,E] as moe_route and moe_aux_loss wrote them.
  virtual void moe_route_backward(const float* dgate, const float* probs, const std::int32_t* expert,
                                  const float* gate, const float* pu, float* dlogits,
                                  const MoeRouteShape& s, MoeAuxForm form, float coef,
                                  float aux_scale) = 0;

  virtual std::unique_ptr<Allreducer> make_allreducer(const Comm& comm) = 0;
};

struct BackendOptions {
  int blas_threads = 1;    // cpu: OpenBLAS and oneDNN threads per rank (run.blas_threads)
  int device = -1;         // cuda: -1 = local rank modulo device count
};

// "cpu" or "cuda". Throws btm::Error for an unknown name, or "cuda" in a build without it.
std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options = {});
// Whether the named backend implements the MoE kernels (Backend::supports_moe()), known
// without creating it: runs check this before their first phase.
bool backend_supports_moe(const std::string& name);

// Owning device buffer.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend& backend, std::size_t bytes) : backend_(&backend), bytes_(bytes) {
    ptr_ = bytes ? backend.alloc(bytes) : nullptr;
  }
  ~DeviceBuffer() {
    if (ptr_) backend_->release(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : backend_(o.backend_), ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (ptr_) backend_->release(ptr_);
      backend_ = o.backend_;
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  float* f32() const { return static_cast<float*>(ptr_); }
  std::int32_t* i32() const { return static_cast<std::int32_t*>(ptr_); }
  std::size_t bytes() const { return bytes_; }

 private:
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace btm
