// The cuda backend: one device and one stream per rank; bf16 compute tensors, fp32 master
// weights, gradients and statistics. GEMMs go to cuBLASLt, causal attention to cuDNN's fused
// attention (or the fallback kernels), the in-group allreduce to NCCL, the rest to the
// kernels in fused_kernels.cu and optimizer_kernels.cu. Every call is enqueued on the stream.
#include "backend/cuda/cuda_backend.hpp"

#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "backend/cuda/attention_fallback.hpp"
#include "backend/cuda/cublaslt_gemm.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cudnn_attention.hpp"
#include "backend/cuda/device_memory.hpp"
#include "backend/cuda/fused_kernels.hpp"
#include "backend/cuda/nccl_allreduce.hpp"
#include "backend/cuda/optimizer_kernels.hpp"
#include "btm/error.hpp"
#include "btm/log.hpp"

namespace btm {

namespace {

using gpu::bf16;

// BTM_CUDA_ATTENTION: auto (cuDNN where it applies, else the fallback kernels), cudnn
// (cuDNN or an error: for tests and benchmarks), fallback (never cuDNN).
enum class AttentionMode { automatic, cudnn, fallback };

AttentionMode attention_mode_from_env() {
  const char* value = std::getenv("BTM_CUDA_ATTENTION");
  const std::string v = value ? value : "";
  if (v.empty() || v == "auto") return AttentionMode::automatic;
  if (v == "cudnn") return AttentionMode::cudnn;
  if (v == "fallback") return AttentionMode::fallback;
  throw Error("environment variable BTM_CUDA_ATTENTION=\"" + v + "\": expected auto, cudnn or fallback");
}

// Rank within the node (MPI_COMM_TYPE_SHARED); collective over MPI_COMM_WORLD. 0 without MPI.
int node_local_rank() {
  int initialized = 0;
  int finalized = 0;
  BTM_MPI(MPI_Initialized(&initialized));
  BTM_MPI(MPI_Finalized(&finalized));
  if (!initialized || finalized) return 0;
  MPI_Comm local = MPI_COMM_NULL;
  BTM_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
  int rank = 0;
  const int rc = MPI_Comm_rank(local, &rank);
  MPI_Comm_free(&local);
  BTM_MPI(rc);
  return rank;
}

int choose_device(int requested) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    throw Error(std::string("run.backend = \"cuda\", but no CUDA device can be used on this node") +
                (status != cudaSuccess ? std::string(" (") + cudaGetErrorName(status) + ": " +
                                             cudaGetErrorString(status) + ")"
                                       : std::string()));
  }
  if (requested >= 0) {
    if (requested >= count) {
      throw Error("cuda backend: device " + std::to_string(requested) + " requested, but this node has " +
                  std::to_string(count) + " CUDA device(s) (0.." + std::to_string(count - 1) + ")");
    }
    return requested;
  }
  return node_local_rank() % count;
}

void require(bool ok, const char* kernel, const std::string& what) {
  if (!ok) throw Error(std::string("cuda backend: ") + kernel + ": " + what);
}

void require_sizes(const char* kernel, std::initializer_list<long> sizes) {
  for (long v : sizes) require(v >= 0, kernel, "negative size " + std::to_string(v));
}

void check_shape(const AttentionShape& s, const char* kernel) {
  require(s.batch >= 1 && s.q_len >= 1 && s.kv_len >= 1 && s.heads >= 1 && s.kv_heads >= 1 && s.head_dim >= 1,
          kernel, "every attention extent must be >= 1");
  require(s.kv_len >= s.q_len, kernel,
          "kv_len " + std::to_string(s.kv_len) + " < q_len " + std::to_string(s.q_len));
  require(s.heads % s.kv_heads == 0, kernel,
          "heads " + std::to_string(s.heads) + " is not a multiple of kv_heads " + std::to_string(s.kv_heads));
  require(s.head_dim <= gpu::kFallbackMaxHeadDim, kernel,
          "head_dim " + std::to_string(s.head_dim) + " > " + std::to_string(gpu::kFallbackMaxHeadDim));
}

std::string describe(const AttentionShape& s) {
  return "B=" + std::to_string(s.batch) + " Tq=" + std::to_string(s.q_len) + " Tk=" + std::to_string(s.kv_len) +
         " H=" + std::to_string(s.heads) + " KV=" + std::to_string(s.kv_heads) + " hd=" + std::to_string(s.head_dim);
}

gpu::AttentionDims dims_of(const AttentionShape& s) {
  return {s.batch, s.q_len, s.kv_len, s.heads, s.kv_heads, s.head_dim};
}

const bf16* cb(const void* p) { return static_cast<const bf16*>(p); }
bf16* mb(void* p) { return static_cast<bf16*>(p); }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& options)
      : mode_(attention_mode_from_env()), device_(choose_device(options.device)) {
    BTM_CUDA(cudaSetDevice(device_));
    BTM_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
      memory_ = std::make_unique<gpu::DeviceMemory>(device_, stream_);
      scratch_ = std::make_unique<gpu::Scratch>(*memory_);
      gemm_ = std::make_unique<gpu::LtGemm>(stream_, *memory_);
      BTM_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host_result_), sizeof(double)));
      BTM_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&errors_host_), kErrorSlots * sizeof(unsigned long long),
                             cudaHostAllocMapped));
      for (int i = 0; i < kErrorSlots; ++i) errors_host_[i] = kNoError;
      BTM_CUDA(cudaHostGetDevicePointer(reinterpret_cast<void**>(&errors_device_), errors_host_, 0));
    } catch (...) {
      release_all();
      throw;
    }
  }

  ~CudaBackend() override { release_all(); }

  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  DType compute_dtype() const override { return DType::bf16; }
  void set_matmul_dtype(DType t) override {
    if (t != DType::bf16) {
      throw Error("train.precision = \"fp32\": the cuda backend computes its GEMMs in bf16 (fp32 accumulation) "
                  "only; use \"bf16\" or \"auto\"");
    }
  }
  std::string matmul_info() const override { return "precision=bf16 gemm=cublaslt"; }

  // ---- memory ---------------------------------------------------------------------------

  void* alloc(std::size_t bytes) override {
    use_device();
    void* p = memory_->allocate(bytes);
    if (p) BTM_CUDA(cudaMemsetAsync(p, 0, bytes, stream_));
    return p;
  }

  void release(void* ptr) override {
    if (!ptr) return;
    use_device();
    memory_->free(ptr);
  }

  void copy_to_device(void* dst, const void* host_src, std::size_t bytes) override {
    if (bytes == 0) return;
    use_device();
    BTM_CUDA(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
    // From pageable memory the copy has been staged when the call returns; from pinned memory
    // it has not, and the caller may reuse its buffer right away.
    cudaPointerAttributes attributes{};
    if (cudaPointerGetAttributes(&attributes, host_src) != cudaSuccess) {
      cudaGetLastError();  // not a CUDA pointer at all: clear the error so no later check sees it
    } else if (attributes.type == cudaMemoryTypeHost) {
      sync_and_check();
    }
  }

  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    use_device();
    BTM_CUDA(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    sync_and_check();
  }

  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0 || dst == src) return;
    use_device();
    BTM_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }

  void zero(void* ptr, std::size_t bytes) override {
    if (bytes == 0) return;
    use_device();
    BTM_CUDA(cudaMemsetAsync(ptr, 0, bytes, stream_));
  }

  void synchronize() override {
    use_device();
    sync_and_check();
  }

  void to_compute(const float* src, void* dst, std::size_t n) override {
    require(!overlaps(src, n * 4, dst, n * 2), "to_compute",
            "src and dst overlap; on the cuda backend they must be distinct buffers");
    use_device();
    gpu::launch_to_bf16(stream_, src, mb(dst), n);
  }

  void to_float(const void* src, float* dst, std::size_t n) override {
    require(!overlaps(src, n * 2, dst, n * 4), "to_float",
            "src and dst overlap; on the cuda backend they must be distinct buffers");
    use_device();
    gpu::launch_to_float(stream_, cb(src), dst, n);
  }

  // ---- linear layers --------------------------------------------------------------------

  void linear_forward(const void* x, const void* w, void* y, int n, int in, int out, bool accumulate) override {
    require_sizes("linear_forward", {n, in, out});
    use_device();
    gemm_->linear_forward(x, w, y, n, in, out, accumulate);
  }

  void linear_backward_input(const void* dy, const void* w, void* dx, int n, int in, int out,
                             bool accumulate) override {
    require_sizes("linear_backward_input", {n, in, out});
    use_device();
    gemm_->linear_backward_input(dy, w, dx, n, in, out, accumulate);
  }

  void linear_backward_weight(const void* dy, const void* x, float* dw, int n, int in, int out) override {
    require_sizes("linear_backward_weight", {n, in, out});
    use_device();
    gemm_->linear_backward_weight(dy, x, dw, n, in, out);
  }

  // ---- embedding ------------------------------------------------------------------------

  void embedding_forward(const std::int32_t* tokens, const void* table, void* x, int n, int d) override {
    require_sizes("embedding_forward", {n, d});
    use_device();
    gpu::launch_embedding_forward(stream_, tokens, cb(table), mb(x), n, d, errors_device_ + kBadToken);
  }

  void embedding_backward(const std::int32_t* tokens, const void* dx, float* dtable, int n, int d) override {
    require_sizes("embedding_backward", {n, d});
    use_device();
    void* scratch = scratch_->get(gpu::embedding_backward_scratch_bytes(n, d));
    gpu::launch_embedding_backward(stream_, tokens, cb(dx), dtable, n, d, errors_device_ + kBadToken, scratch);
  }

  // ---- RMSNorm --------------------------------------------------------------------------

  void rmsnorm_forward(const void* x, const float* w, void* y, float* rstd, int n, int d, float eps) override {
    require_sizes("rmsnorm_forward", {n, d});
    use_device();
    gpu::launch_rmsnorm_forward(stream_, cb(x), w, mb(y), rstd, n, d, eps);
  }

  void rmsnorm_backward(const void* dy, const void* x, const float* w, const float* rstd, void* dx, float* dw, int n,
                        int d, bool accumulate) override {
    require_sizes("rmsnorm_backward", {n, d});
    use_device();
    void* scratch = scratch_->get(gpu::rmsnorm_backward_scratch_bytes(n, d));
    gpu::launch_rmsnorm_backward(stream_, cb(dy), cb(x), w, rstd, mb(dx), dw, n, d, accumulate, scratch);
  }

  // ---- RoPE -----------------------------------------------------------------------------

  void rope(void* x, int batch, int seq, int heads, int head_dim, int pos0, float theta, bool inverse) override {
    require_sizes("rope", {batch, seq, heads, head_dim, pos0});
    require(head_dim % 2 == 0, "rope", "head_dim " + std::to_string(head_dim) + " is odd");
    require(theta > 0.f, "rope", "theta must be > 0");
    use_device();
    gpu::launch_rope(stream_, mb(x), batch, seq, heads, head_dim, pos0, theta, inverse);
  }

  // ---- attention ------------------------------------------------------------------------

  void attention_forward(const void* q, const void* k, const void* v, void* o, float* lse,
                         const AttentionShape& s) override {
    check_shape(s, "attention_forward");
    use_device();
    const void* pointers[] = {q, k, v, o, lse};
    if (cudnn_for(s, pointers, 5)) {
      std::string why;
      if (cudnn_->forward(q, k, v, o, lse, s, &why)) return;
      cudnn_declined(s, why);
    }
    gpu::attention_fallback_forward(stream_, cb(q), cb(k), cb(v), mb(o), lse, dims_of(s));
  }

  void attention_backward(const void* dout, const void* q, const void* k, const void* v, const void* o,
                          const float* lse, void* dq, void* dk, void* dv, const AttentionShape& s) override {
    check_shape(s, "attention_backward");
    use_device();
    const void* pointers[] = {dout, q, k, v, o, lse, dq, dk, dv};
    if (cudnn_for(s, pointers, 9)) {
      std::string why;
      if (cudnn_->backward(dout, q, k, v, o, lse, dq, dk, dv, s, &why)) return;
      cudnn_declined(s, why);
    }
    const gpu::AttentionDims dims = dims_of(s);
    void* scratch = scratch_->get(gpu::attention_fallback_backward_scratch_bytes(dims));
    gpu::attention_fallback_backward(stream_, cb(dout), cb(q), cb(k), cb(v), cb(o), lse, mb(dq), mb(dk), mb(dv),
                                     dims, scratch);
  }

  // ---- SwiGLU ---------------------------------------------------------------------------

  void swiglu_forward(const void* g, const void* u, void* a, std::size_t n) override {
    use_device();
    gpu::launch_swiglu_forward(stream_, cb(g), cb(u), mb(a), n);
  }

  void swiglu_backward(const void* da, const void* g, const void* u, void* dg, void* du, std::size_t n) override {
    use_device();
    gpu::launch_swiglu_backward(stream_, cb(da), cb(g), cb(u), mb(dg), mb(du), n);
  }

  // ---- cross-entropy --------------------------------------------------------------------

  void cross_entropy(void* logits, const std::int32_t* targets, float* nll, int n, int vocab,
                     float grad_scale) override {
    require_sizes("cross_entropy", {n, vocab});
    require(n == 0 || vocab >= 1, "cross_entropy", "vocab must be >= 1");
    use_device();
    last_vocab_ = vocab;
    gpu::launch_cross_entropy(stream_, mb(logits), targets, nll, n, vocab, grad_scale, errors_device_ + kBadTarget);
  }

  // ---- optimizer and reductions ---------------------------------------------------------

  void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float lr, float beta1, float beta2, float eps,
             float weight_decay, long step) override {
    require(step >= 1, "adamw", "step must be >= 1 (got " + std::to_string(step) + ")");
    use_device();
    // Bias corrections in double on the host, as PyTorch computes them in Python floats.
    const double bc1 = 1.0 - std::pow(double(beta1), double(step));
    const double bc2 = 1.0 - std::pow(double(beta2), double(step));
    gpu::launch_adamw(stream_, p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, float(double(lr) / bc1),
                      float(std::sqrt(bc2)));
  }

  double sum_squares(const float* x, std::size_t n) override {
    use_device();
    const double r = gpu::reduce_to_host(stream_, x, n, true, scratch_->get(gpu::reduction_scratch_bytes()),
                                         host_result_);
    raise_device_errors();
    return r;
  }

  double sum(const float* x, std::size_t n) override {
    use_device();
    const double r = gpu::reduce_to_host(stream_, x, n, false, scratch_->get(gpu::reduction_scratch_bytes()),
                                         host_result_);
    raise_device_errors();
    return r;
  }

  void scale(float* x, float alpha, std::size_t n) override {
    use_device();
    gpu::launch_scale(stream_, x, alpha, n);
  }

  void axpy(float a, const float* x, float* y, std::size_t n) override {
    use_device();
    gpu::launch_axpy(stream_, a, x, y, n);
  }

  // ---- mixture of experts: not on this backend yet (Llama refuses MoE models up front) ---
  bool supports_moe() const override { return false; }
  void moe_router_forward(const void*, const float*, float*, int, int, int) override { no_moe(); }
  void moe_router_backward(const float*, const void*, const float*, float*, void*, int, int, int) override {
    no_moe();
  }
  void moe_route(const float*, float*, std::int32_t*, float*, const MoeRouteShape&) override { no_moe(); }
  void moe_plan(const std::int32_t*, const float*, std::int32_t*, std::int32_t*, const MoeRouteShape&,
                MoeDispatch&) override {
    no_moe();
  }
  void moe_dispatch(const void*, const std::int32_t*, void*, int, int) override { no_moe(); }
  void moe_dispatch_backward(const void*, const std::int32_t*, void*, int, int, int, bool) override { no_moe(); }
  void moe_combine(const void*, const std::int32_t*, const float*, void*, int, int, int) override { no_moe(); }
  void moe_combine_backward(const void*, const void*, const std::int32_t*, const float*, void*, float*, int, int,
                            int) override {
    no_moe();
  }
  void moe_aux_loss(const float*, const std::int32_t*, const float*, float*, float*, const MoeRouteShape&,
                    MoeAuxForm, float) override {
    no_moe();
  }
  void moe_route_backward(const float*, const float*, const std::int32_t*, const float*, const float*, float*,
                          const MoeRouteShape&, MoeAuxForm, float, float) override {
    no_moe();
  }

  std::unique_ptr<Allreducer> make_allreducer(const Comm& comm) override {
    use_device();
    return gpu::make_nccl_allreducer(comm, stream_, device_);
  }

 private:
  [[noreturn]] static void no_moe() {
    throw Error("MoE layers are not implemented on the cuda backend yet; use backend = \"cpu\"");
  }

  // Host threads other than the creating one start on device 0.
  void use_device() const { BTM_CUDA(cudaSetDevice(device_)); }

  // Kernels cannot throw: they report bad inputs (a negative token, a target outside the
  // vocabulary) into host-mapped slots, and the first synchronization afterwards throws.
  enum ErrorSlot { kBadToken, kBadTarget, kErrorSlots };
  static constexpr unsigned long long kNoError = ~0ull;

  void sync_and_check() {
    BTM_CUDA(cudaStreamSynchronize(stream_));
    raise_device_errors();
  }

  void raise_device_errors() {
    volatile unsigned long long* slots = errors_host_;
    std::string message;
    for (int i = 0; i < kErrorSlots; ++i) {
      const unsigned long long v = slots[i];
      if (v == kNoError) continue;
      const long long row = static_cast<long long>(v >> 32);
      const int value = static_cast<int>(static_cast<std::uint32_t>(v & 0xffffffffull));
      if (message.empty()) {
        message = i == kBadToken
                      ? "embedding: token " + std::to_string(value) + " at row " + std::to_string(row) +
                            " is negative; token ids must be in [0, vocab_size)"
                      : "cross_entropy: target " + std::to_string(value) + " at row " + std::to_string(row) +
                            " is outside the vocabulary [0, " + std::to_string(last_vocab_) +
                            ") (negative targets mean: ignore this token)";
      }
      slots[i] = kNoError;
    }
    if (!message.empty()) throw Error("cuda backend: " + message + " (found by a kernel, reported at the next sync)");
  }

  static bool overlaps(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
    const auto x = reinterpret_cast<std::uintptr_t>(a);
    const auto y = reinterpret_cast<std::uintptr_t>(b);
    return a_bytes && b_bytes && x < y + b_bytes && y < x + a_bytes;
  }

  // Whether this call goes to cuDNN; throws under BTM_CUDA_ATTENTION=cudnn when it cannot.
  bool cudnn_for(const AttentionShape& s, const void* const* pointers, int count) {
    if (mode_ == AttentionMode::fallback) return false;
    const std::string reason = gpu::CudnnAttention::unsupported_reason(s, pointers, count);
    if (!reason.empty()) {
      require(mode_ != AttentionMode::cudnn, "attention",
              "BTM_CUDA_ATTENTION=cudnn, but cuDNN cannot run " + describe(s) + ": " + reason);
      return false;
    }
    if (!cudnn_ && !cudnn_broken_) {
      try {
        cudnn_ = std::make_unique<gpu::CudnnAttention>(stream_, *scratch_);
      } catch (const Error& e) {
        if (mode_ == AttentionMode::cudnn) throw;
        cudnn_broken_ = true;
        warn_root(std::string("cuda backend: cuDNN is unusable, attention runs on the fallback kernels: ") + e.what());
      }
    }
    return cudnn_ != nullptr;
  }

  // cuDNN had no plan for a shape it should handle: an error under BTM_CUDA_ATTENTION=cudnn,
  // otherwise one warning per shape and the fallback kernels.
  void cudnn_declined(const AttentionShape& s, const std::string& why) {
    require(mode_ != AttentionMode::cudnn, "attention",
            "BTM_CUDA_ATTENTION=cudnn, but cuDNN has no plan for " + describe(s) + ": " + why);
    if (warned_.insert(describe(s)).second) {
      warn_root("cuda backend: cuDNN has no fused-attention plan for " + describe(s) + " (" + why +
                "); using the fallback kernels");
    }
  }

  void release_all() noexcept {
    try {
      if (stream_) cudaStreamSynchronize(stream_);
      cudnn_.reset();
      gemm_.reset();
      scratch_.reset();
      memory_.reset();
      if (host_result_) cudaFreeHost(host_result_);
      host_result_ = nullptr;
      if (errors_host_) cudaFreeHost(errors_host_);
      errors_host_ = nullptr;
      if (stream_) {
        cudaStreamSynchronize(stream_);
        cudaStreamDestroy(stream_);
      }
      stream_ = nullptr;
    } catch (...) {
      // Teardown errors cannot be reported from a destructor.
    }
  }

  AttentionMode mode_;
  int device_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<gpu::DeviceMemory> memory_;
  std::unique_ptr<gpu::Scratch> scratch_;
  std::unique_ptr<gpu::LtGemm> gemm_;
  std::unique_ptr<gpu::CudnnAttention> cudnn_;  // created at the first attention call that can use it
  bool cudnn_broken_ = false;
  std::set<std::string> warned_;
  double* host_result_ = nullptr;  // pinned, for reductions
  unsigned long long* errors_host_ = nullptr;    // [kErrorSlots], pinned and mapped
  unsigned long long* errors_device_ = nullptr;  // the same slots as the kernels see them
  int last_vocab_ = 0;                           // for the cross_entropy error message
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options) {
  return std::make_unique<CudaBackend>(options);
}

}  // namespace btm
