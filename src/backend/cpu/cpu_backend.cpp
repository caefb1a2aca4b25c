// CpuBackend: the reference backend. Host memory is the "device"; compute tensors are fp32,
// so every void* is a float*. The kernels live in one file per concern (cpu_kernels.hpp).
#include "backend/cpu/cpu_backend.hpp"

#include <cblas.h>

#include <Kokkos_Core.hpp>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_bf16_gemm.hpp"
#include "backend/cpu/cpu_kernels.hpp"
#include "btm/error.hpp"
#ifdef BTM_HAVE_OPENMP
#include <omp.h>
#endif

namespace btm {
namespace cpu {

void* aligned_zeroed_alloc(std::size_t bytes) {
  // aligned_alloc wants a multiple of the alignment; 64 bytes is one cache line / AVX-512 vector.
  const std::size_t rounded = ((bytes ? bytes : 1) + 63) / 64 * 64;
  void* ptr = std::aligned_alloc(64, rounded);
  if (!ptr) {
    throw Error("cpu backend: out of host memory allocating " + std::to_string(bytes) + " bytes");
  }
  std::memset(ptr, 0, rounded);
  return ptr;
}

Scratch::~Scratch() { std::free(data_); }

float* Scratch::floats(std::size_t n) {
  if (n > capacity_) {
    std::free(data_);
    data_ = nullptr;
    capacity_ = 0;
    data_ = static_cast<float*>(aligned_zeroed_alloc(n * sizeof(float)));
    capacity_ = n;
  }
  return data_;
}

}  // namespace cpu

namespace {

inline const float* F(const void* p) { return static_cast<const float*>(p); }
inline float* F(void* p) { return static_cast<float*>(p); }

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options) : threads_(options.blas_threads) {
    if (options.blas_threads < 1) {
      throw Error("cpu backend: blas_threads must be at least 1, got " +
                  std::to_string(options.blas_threads));
    }
    if (!Kokkos::is_initialized()) {
      throw Error(
          "cpu backend: Kokkos is not initialised; the program must call "
          "Kokkos::initialize() (after MPI_Init) before creating the backend");
    }
#ifdef BTM_HAVE_OPENBLAS_THREADS
    // Flat MPI runs one rank per core: BLAS must not oversubscribe unless asked to.
    openblas_set_num_threads(options.blas_threads);
#endif
#ifdef BTM_HAVE_OPENMP
    // oneDNN runs on OpenMP threads (as does Kokkos' OpenMP backend, sized by OMP_NUM_THREADS).
    omp_set_num_threads(options.blas_threads);
#endif
  }

  void set_matmul_dtype(DType t) override {
    if (t == DType::f32) {
      bf16_.reset();
      return;
    }
    if (!bf16_) bf16_ = std::make_unique<cpu::Bf16Gemm>();  // throws without oneDNN
  }
  std::string matmul_info() const override {
    // The host kernels' threads next to the GEMMs': Kokkos sizes its pool at start-up
    // (OMP_NUM_THREADS), the GEMM libraries follow run.blas_threads.
    const std::string threads = " threads=" + std::to_string(threads_) + " kokkos=" +
                                Kokkos::DefaultHostExecutionSpace::name() + ":" +
                                std::to_string(Kokkos::DefaultHostExecutionSpace().concurrency());
    if (bf16_) return "precision=bf16 " + bf16_->describe() + threads;
    return "precision=fp32 blas=openblas" + threads;
  }

  std::string name() const override { return "cpu"; }
  DType compute_dtype() const override { return DType::f32; }

  // ---- memory ---------------------------------------------------------------------------
  void* alloc(std::size_t bytes) override { return cpu::aligned_zeroed_alloc(bytes); }
  void release(void* ptr) override { std::free(ptr); }
  void copy_to_device(void* dst, const void* host_src, std::size_t bytes) override {
    copy(dst, host_src, bytes);
  }
  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override {
    copy(host_dst, src, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes && dst != src) std::memmove(dst, src, bytes);
    wrote(dst, bytes);
  }
  void zero(void* ptr, std::size_t bytes) override {
    if (bytes) std::memset(ptr, 0, bytes);
    wrote(ptr, bytes);
  }
  void synchronize() override {}
  void to_compute(const float* src, void* dst, std::size_t n) override {
    copy(dst, src, n * sizeof(float));
  }
  void to_float(const void* src, float* dst, std::size_t n) override {
    copy(dst, src, n * sizeof(float));
  }

  // ---- kernels --------------------------------------------------------------------------
  void linear_forward(const void* x, const void* w, void* y, int n, int in, int out,
                      bool accumulate) override {
    if (bf16_) return bf16_->linear_forward(F(x), F(w), F(y), n, in, out, accumulate);
    cpu::linear_forward(F(x), F(w), F(y), n, in, out, accumulate);
  }
  void linear_backward_input(const void* dy, const void* w, void* dx, int n, int in, int out,
                             bool accumulate) override {
    if (bf16_) return bf16_->linear_backward_input(F(dy), F(w), F(dx), n, in, out, accumulate);
    cpu::linear_backward_input(F(dy), F(w), F(dx), n, in, out, accumulate);
  }
  void linear_backward_weight(const void* dy, const void* x, float* dw, int n, int in,
                              int out) override {
    if (bf16_) return bf16_->linear_backward_weight(F(dy), F(x), dw, n, in, out);
    cpu::linear_backward_weight(F(dy), F(x), dw, n, in, out);
  }

  void embedding_forward(const std::int32_t* tokens, const void* table, void* x, int n,
                         int d) override {
    cpu::embedding_forward(tokens, F(table), F(x), n, d);
  }
  void embedding_backward(const std::int32_t* tokens, const void* dx, float* dtable, int n,
                          int d) override {
    cpu::embedding_backward(tokens, F(dx), dtable, n, d);
  }

  void rmsnorm_forward(const void* x, const float* w, void* y, float* rstd, int n, int d,
                       float eps) override {
    cpu::rmsnorm_forward(F(x), w, F(y), rstd, n, d, eps);
  }
  void rmsnorm_backward(const void* dy, const void* x, const float* w, const float* rstd, void* dx,
                        float* dw, int n, int d, bool accumulate) override {
    cpu::rmsnorm_backward(F(dy), F(x), w, rstd, F(dx), dw, n, d, accumulate);
  }

  void rope(void* x, int batch, int seq, int heads, int head_dim, int pos0, float theta,
            bool inverse) override {
    cpu::rope(rope_table_, F(x), batch, seq, heads, head_dim, pos0, theta, inverse);
  }

  void attention_forward(const void* q, const void* k, const void* v, void* o, float* lse,
                         const AttentionShape& s) override {
    cpu::attention_forward(scratch_, F(q), F(k), F(v), F(o), lse, s);
  }
  void attention_backward(const void* dout, const void* q, const void* k, const void* v,
                          const void* o, const float* lse, void* dq, void* dk, void* dv,
                          const AttentionShape& s) override {
    cpu::attention_backward(scratch_, F(dout), F(q), F(k), F(v), F(o), lse, F(dq), F(dk), F(dv), s);
  }

  void swiglu_forward(const void* g, const void* u, void* a, std::size_t n) override {
    cpu::swiglu_forward(F(g), F(u), F(a), n);
  }
  void swiglu_backward(const void* da, const void* g, const void* u, void* dg, void* du,
                       std::size_t n) override {
    cpu::swiglu_backward(F(da), F(g), F(u), F(dg), F(du), n);
  }

  void cross_entropy(void* logits, const std::int32_t* targets, float* nll, int n, int vocab,
                     float grad_scale) override {
    cpu::cross_entropy(F(logits), targets, nll, n, vocab, grad_scale);
  }

  void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float beta1,
             float beta2, float eps, float weight_decay, long step) override {
    cpu::adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
    wrote(p, n * sizeof(float));
  }
  double sum_squares(const float* x, std::size_t n) override { return cpu::sum_squares(x, n); }
  double sum(const float* x, std::size_t n) override { return cpu::sum(x, n); }
  void scale(float* x, float alpha, std::size_t n) override {
    cpu::scale(x, alpha, n);
    wrote(x, n * sizeof(float));
  }
  void axpy(float a, const float* x, float* y, std::size_t n) override { cpu::axpy(a, x, y, n); }

  bool supports_moe() const override { return true; }
  void moe_router_forward(const void* x, const float* w, float* logits, int n, int d, int experts) override {
    cpu::linear_forward(F(x), w, logits, n, d, experts, false);
  }
  void moe_router_backward(const float* dlogits, const void* x, const float* w, float* dw, void* dx, int n,
                           int d, int experts) override {
    cpu::linear_backward_weight(dlogits, F(x), dw, n, d, experts);
    cpu::linear_backward_input(dlogits, w, F(dx), n, d, experts, true);
  }
  void moe_route(const float* logits, float* probs, std::int32_t* expert, float* gate,
                 const MoeRouteShape& s) override {
    cpu::moe_route(logits, probs, expert, gate, s);
  }
  void moe_plan(const std::int32_t* expert, const float* gate, std::int32_t* rows, std::int32_t* slot,
                const MoeRouteShape& s, MoeDispatch& out) override {
    cpu::moe_plan(expert, gate, rows, slot, s, out);
  }
  void moe_dispatch(const void* x, const std::int32_t* rows, void* xe, int m, int d) override {
    cpu::moe_dispatch(F(x), rows, F(xe), m, d);
  }
  void moe_dispatch_backward(const void* dxe, const std::int32_t* slot, void* dx, int n, int k, int d,
                             bool accumulate) override {
    cpu::moe_dispatch_backward(F(dxe), slot, F(dx), n, k, d, accumulate);
  }
  void moe_combine(const void* ye, const std::int32_t* slot, const float* gate, void* y, int n, int k,
                   int d) override {
    cpu::moe_combine(F(ye), slot, gate, F(y), n, k, d);
  }
  void moe_combine_backward(const void* dy, const void* ye, const std::int32_t* slot, const float* gate,
                            void* dye, float* dgate, int n, int k, int d) override {
    cpu::moe_combine_backward(F(dy), F(ye), slot, gate, F(dye), dgate, n, k, d);
  }
  void moe_aux_loss(const float* probs, const std::int32_t* expert, const float* gate, float* pu, float* loss,
                    const MoeRouteShape& s, MoeAuxForm form, float coef) override {
    cpu::moe_aux_loss(probs, expert, gate, pu, loss, s, form, coef);
  }
  void moe_route_backward(const float* dgate, const float* probs, const std::int32_t* expert, const float* gate,
                          const float* pu, float* dlogits, const MoeRouteShape& s, MoeAuxForm form, float coef,
                          float aux_scale) override {
    cpu::moe_route_backward(dgate, probs, expert, gate, pu, dlogits, s, form, coef, aux_scale);
  }

  std::unique_ptr<Allreducer> make_allreducer(const Comm& comm) override {
    return cpu::make_mpi_allreducer(comm);
  }

 private:
  // Memory written through the backend: a weight's cached bf16 copy may be stale now.
  void wrote(const void* ptr, std::size_t bytes) {
    if (bf16_) bf16_->invalidate(ptr, bytes);
  }
  cpu::Scratch scratch_;       // attention workspace, grown on demand
  int threads_;                // run.blas_threads
  cpu::RopeTable rope_table_;  // cos/sin cache for the last (head_dim, theta)
  std::unique_ptr<cpu::Bf16Gemm> bf16_;  // set: linear layers in bf16 (set_matmul_dtype)
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace btm
