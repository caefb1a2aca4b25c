// bf16 linear layers through oneDNN's matmul (cpu_bf16_gemm.hpp). Built only with oneDNN.
#include "backend/cpu/cpu_bf16_gemm.hpp"

#include <dnnl.hpp>
#include <map>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/cpu/cpu_kernels.hpp"
#include "btm/error.hpp"

namespace btm::cpu {

bool bf16_gemm_built() { return true; }

namespace {

using dnnl::memory;
using Dims = memory::dims;

// The three products of a linear layer, as oneDNN matmuls C[M,N] (=|+=) A[M,K] B[K,N].
enum class Product { forward, backward_input, backward_weight };

std::string isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

// Grow-only bf16 workspace.
struct Bf16Buffer {
  std::vector<std::uint16_t> data;
  std::uint16_t* get(std::size_t n) {
    if (data.size() < n) data.resize(n);
    return data.data();
  }
};

}  // namespace

struct Bf16Gemm::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  // One primitive per (product, M, N, K, accumulate): a training step has a handful of shapes.
  struct Matmul {
    dnnl::matmul prim;
    memory::desc a, b, c;
  };
  std::map<std::tuple<Product, long, long, long, bool>, Matmul> primitives;
  std::string forward_impl;  // oneDNN's name of the implementation it chose (the self-check's)

  struct Cached {
    std::size_t elements = 0;
    bool valid = false;
    std::vector<std::uint16_t> bf16;
  };
  std::unordered_map<const float*, Cached> weights;  // fp32 master -> its bf16 copy
  Bf16Buffer a_buf, b_buf;

  const std::uint16_t* weight(const float* w, std::size_t elements) {
    Cached& c = weights[w];
    if (!c.valid || c.elements != elements) {
      c.bf16.resize(elements);
      round_to_bf16(w, c.bf16.data(), elements);
      c.elements = elements;
      c.valid = true;
    }
    return c.bf16.data();
  }

  // A [M,K] and B [K,N] with strides (row, column) of the bf16 buffers; C [M,N] fp32 dense.
  Matmul& primitive(Product p, long m, long n, long k, Dims a_strides, Dims b_strides, bool accumulate) {
    const auto key = std::make_tuple(p, m, n, k, accumulate);
    auto it = primitives.find(key);
    if (it != primitives.end()) return it->second;
    const memory::desc a({m, k}, memory::data_type::bf16, a_strides);
    const memory::desc b({k, n}, memory::data_type::bf16, b_strides);
    const memory::desc c({m, n}, memory::data_type::f32, Dims{n, 1});
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::primitive_desc pd;
    try {
      pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, engine);
    } catch (const dnnl::error& e) {
      throw Error("cpu backend: oneDNN cannot run a bf16 matmul [" + std::to_string(m) + "x" + std::to_string(k) +
                  "] x [" + std::to_string(k) + "x" + std::to_string(n) + "] on this CPU (" + e.what() +
                  "); use train.precision = \"fp32\"");
    }
    if (p == Product::forward && forward_impl.empty()) forward_impl = pd.impl_info_str();
    return primitives.emplace(key, Matmul{dnnl::matmul(pd), a, b, c}).first->second;
  }

  void run(Matmul& mm, const std::uint16_t* a, const std::uint16_t* b, float* c) {
    memory am(mm.a, engine, const_cast<std::uint16_t*>(a));
    memory bm(mm.b, engine, const_cast<std::uint16_t*>(b));
    memory cm(mm.c, engine, c);
    mm.prim.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
  }
};

Bf16Gemm::Bf16Gemm() : impl_(std::make_unique<Impl>()) {
  // A first tiny product: fails here, with the message above, on a CPU oneDNN cannot serve.
  std::vector<std::uint16_t> a(16 * 16, 0x3f80), b(16 * 16, 0x3f80);  // bf16 1.0
  std::vector<float> c(16 * 16);
  impl_->run(impl_->primitive(Product::forward, 16, 16, 16, {16, 1}, {1, 16}, false), a.data(), b.data(), c.data());
  if (c[0] != 16.0f) throw Error("cpu backend: oneDNN's bf16 matmul self-check failed");
}

Bf16Gemm::~Bf16Gemm() = default;

void Bf16Gemm::linear_forward(const float* x, const float* w, float* y, int n, int in, int out, bool accumulate) {
  if (n <= 0 || out <= 0) return;
  if (in <= 0) return empty_product(y, n, out, accumulate);
  // y[n,out] = x[n,in] * W^T: B = W^T is [in,out] with strides (1, in).
  std::uint16_t* xb = impl_->a_buf.get(std::size_t(n) * in);
  round_to_bf16(x, xb, std::size_t(n) * in);
  const std::uint16_t* wb = impl_->weight(w, std::size_t(out) * in);
  impl_->run(impl_->primitive(Product::forward, n, out, in, {in, 1}, {1, in}, accumulate), xb, wb, y);
}

void Bf16Gemm::linear_backward_input(const float* dy, const float* w, float* dx, int n, int in, int out,
                                     bool accumulate) {
  if (n <= 0 || in <= 0) return;
  if (out <= 0) return empty_product(dx, n, in, accumulate);
  // dx[n,in] = dy[n,out] * W[out,in].
  std::uint16_t* dyb = impl_->a_buf.get(std::size_t(n) * out);
  round_to_bf16(dy, dyb, std::size_t(n) * out);
  const std::uint16_t* wb = impl_->weight(w, std::size_t(out) * in);
  impl_->run(impl_->primitive(Product::backward_input, n, in, out, {out, 1}, {in, 1}, accumulate), dyb, wb, dx);
}

void Bf16Gemm::linear_backward_weight(const float* dy, const float* x, float* dw, int n, int in, int out) {
  if (n <= 0 || in <= 0 || out <= 0) return;
  // dw[out,in] += dy^T[out,n] * x[n,in]: A = dy^T with strides (1, out).
  std::uint16_t* dyb = impl_->a_buf.get(std::size_t(n) * out);
  round_to_bf16(dy, dyb, std::size_t(n) * out);
  std::uint16_t* xb = impl_->b_buf.get(std::size_t(n) * in);
  round_to_bf16(x, xb, std::size_t(n) * in);
  impl_->run(impl_->primitive(Product::backward_weight, out, in, n, {1, out}, {in, 1}, true), dyb, xb, dw);
}

void Bf16Gemm::invalidate(const void* begin, std::size_t bytes) {
  if (bytes == 0 || impl_->weights.empty()) return;
  const char* lo = static_cast<const char*>(begin);
  const char* hi = lo + bytes;
  for (auto& [w, c] : impl_->weights) {
    const char* wl = reinterpret_cast<const char*>(w);
    if (wl < hi && lo < wl + c.elements * sizeof(float)) c.valid = false;
  }
}

std::string Bf16Gemm::describe() const {
  return "isa=" + isa_name(dnnl::get_effective_cpu_isa()) +
         " impl=" + (impl_->forward_impl.empty() ? std::string("none") : impl_->forward_impl);
}

}  // namespace btm::cpu
