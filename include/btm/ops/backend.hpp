#pragma once
// The kernel set that forward and backward are written against (DESIGN, Backends).
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

// Sums a gradient buffer across a communicator (MPI on cpu, NCCL on cuda).
class Allreducer {
 public:
  virtual ~Allreducer() = default;
  virtual void sum(float* device_data, std::size_t n) = 0;
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

  virtual std::unique_ptr<Allreducer> make_allreducer(const Comm& comm) = 0;
};

struct BackendOptions {
  int blas_threads = 1;    // cpu
  int device = -1;         // cuda: -1 = local rank modulo device count
};

// "cpu" or "cuda". Throws btm::Error for an unknown name, or "cuda" in a build without it.
std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options = {});

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
