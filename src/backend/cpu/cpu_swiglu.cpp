// SwiGLU gate: a = silu(g) * u, silu(g) = g / (1 + exp(-g)).
#include <algorithm>

#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_math.hpp"

namespace btm::cpu {

namespace {

BTM_CPU_DISPATCH void forward_chunk(const float* g, const float* u, float* a, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) a[i] = g[i] / (1.0f + exp_f32(-g[i])) * u[i];
}

// silu'(g) = sigma(g) (1 + g (1 - sigma(g))). Inputs are read before outputs are written, so
// dg/du may alias g/u.
BTM_CPU_DISPATCH void backward_chunk(const float* da, const float* g, const float* u, float* dg,
                                     float* du, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float x = g[i];
    const float y = u[i];
    const float d = da[i];
    const float sig = 1.0f / (1.0f + exp_f32(-x));
    const float silu = x * sig;
    dg[i] = d * y * (sig * (1.0f + x * (1.0f - sig)));
    du[i] = d * silu;
  }
}

}  // namespace

void swiglu_forward(const float* g /*[n]*/, const float* u /*[n]*/, float* a /*[n]*/,
                    std::size_t n) {
  const std::int64_t total = static_cast<std::int64_t>(n);
  Kokkos::parallel_for(
      "btm::cpu::swiglu_forward", HostRange(0, chunk_count(n)), KOKKOS_LAMBDA(std::int64_t c) {
        const std::int64_t i0 = c * kChunk;
        forward_chunk(g + i0, u + i0, a + i0, std::min(kChunk, total - i0));
      });
}

void swiglu_backward(const float* da /*[n]*/, const float* g /*[n]*/, const float* u /*[n]*/,
                     float* dg /*[n]*/, float* du /*[n]*/, std::size_t n) {
  const std::int64_t total = static_cast<std::int64_t>(n);
  Kokkos::parallel_for(
      "btm::cpu::swiglu_backward", HostRange(0, chunk_count(n)), KOKKOS_LAMBDA(std::int64_t c) {
        const std::int64_t i0 = c * kChunk;
        backward_chunk(da + i0, g + i0, u + i0, dg + i0, du + i0, std::min(kChunk, total - i0));
      });
}

}  // namespace btm::cpu
