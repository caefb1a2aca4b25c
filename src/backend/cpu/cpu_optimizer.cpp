// AdamW (PyTorch semantics) and the flat reductions/updates used by clipping, averaging
// and logging. Reductions sum fixed-size chunks with fixed-order lanes in double, so they
// are deterministic and accurate for parameter-sized vectors.
#include <algorithm>
#include <cmath>
#include <string>

#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_math.hpp"
#include "btm/error.hpp"

namespace btm::cpu {

namespace {

struct AdamScalars {
  float decay;  // 1 - lr * weight_decay
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;  // lr / (1 - beta1^step)
  float bc2_sqrt;   // sqrt(1 - beta2^step)
  float eps;
};

// p -= lr wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= step_size * m / (sqrt(v) / sqrt(bc2) + eps)   (torch.optim.AdamW, single tensor)
BTM_CPU_DISPATCH void adamw_chunk(float* p, const float* g, float* m, float* v, std::int64_t n,
                                  const AdamScalars& a) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] * a.beta1 + gi * a.one_minus_beta1;
    const float vi = v[i] * a.beta2 + a.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / a.bc2_sqrt + a.eps;
    p[i] = p[i] * a.decay - a.step_size * (mi / denom);
  }
}

BTM_CPU_DISPATCH double sum_chunk(const float* x, std::int64_t n) {
  return lane_sum(n, [&](std::int64_t i) { return double(x[i]); });
}

BTM_CPU_DISPATCH double sum_squares_chunk(const float* x, std::int64_t n) {
  return lane_sum(n, [&](std::int64_t i) {
    const double v = x[i];
    return v * v;
  });
}

BTM_CPU_DISPATCH void scale_chunk(float* x, float alpha, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

BTM_CPU_DISPATCH void axpy_chunk(float a, const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Calls f(offset, length) for each chunk of [0, n) inside a named Kokkos kernel.
template <class F>
void for_chunks(const char* name, std::size_t n, F f) {
  const std::int64_t total = static_cast<std::int64_t>(n);
  Kokkos::parallel_for(
      name, HostRange(0, chunk_count(n)), KOKKOS_LAMBDA(std::int64_t c) {
        const std::int64_t i0 = c * kChunk;
        f(i0, std::min(kChunk, total - i0));
      });
}

template <class F>
double reduce_chunks(const char* name, std::size_t n, F f) {
  const std::int64_t total = static_cast<std::int64_t>(n);
  double result = 0.0;
  Kokkos::parallel_reduce(
      name, HostRange(0, chunk_count(n)),
      KOKKOS_LAMBDA(std::int64_t c, double& acc) {
        const std::int64_t i0 = c * kChunk;
        acc += f(i0, std::min(kChunk, total - i0));
      },
      result);
  return result;
}

}  // namespace

void adamw(float* p /*[n]*/, const float* g /*[n]*/, float* m /*[n]*/, float* v /*[n]*/,
           std::size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
           long step) {
  if (step < 1) throw Error("adamw: step is 1-based, got " + std::to_string(step));
  // Scalars in double, as PyTorch computes them in Python floats.
  AdamScalars a{};
  a.decay = static_cast<float>(1.0 - double(lr) * weight_decay);
  a.beta1 = beta1;
  a.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  a.beta2 = beta2;
  a.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  a.step_size = static_cast<float>(lr / (1.0 - std::pow(double(beta1), double(step))));
  a.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(double(beta2), double(step))));
  a.eps = eps;
  for_chunks("btm::cpu::adamw", n, [=](std::int64_t i0, std::int64_t len) {
    adamw_chunk(p + i0, g + i0, m + i0, v + i0, len, a);
  });
}

double sum_squares(const float* x /*[n]*/, std::size_t n) {
  return reduce_chunks("btm::cpu::sum_squares", n, [=](std::int64_t i0, std::int64_t len) {
    return sum_squares_chunk(x + i0, len);
  });
}

double sum(const float* x /*[n]*/, std::size_t n) {
  return reduce_chunks("btm::cpu::sum", n,
                       [=](std::int64_t i0, std::int64_t len) { return sum_chunk(x + i0, len); });
}

void scale(float* x /*[n]*/, float alpha, std::size_t n) {
  for_chunks("btm::cpu::scale", n,
             [=](std::int64_t i0, std::int64_t len) { scale_chunk(x + i0, alpha, len); });
}

void axpy(float a, const float* x /*[n]*/, float* y /*[n]*/, std::size_t n) {
  for_chunks("btm::cpu::axpy", n,
             [=](std::int64_t i0, std::int64_t len) { axpy_chunk(a, x + i0, y + i0, len); });
}

}  // namespace btm::cpu
