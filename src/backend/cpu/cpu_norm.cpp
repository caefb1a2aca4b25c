// RMSNorm (Llama): y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps), per row.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_math.hpp"

namespace btm::cpu {

namespace {

// Columns per work item of the dw reduction: one cache line per row.
constexpr int kColumnBlock = 16;

// x, y [d]; w [d]; returns rstd.
BTM_CPU_DISPATCH float forward_row(const float* x, const float* w, float* y, int d, float eps) {
  const double ss = lane_sum(d, [&](std::int64_t j) {
    const double v = x[j];
    return v * v;
  });
  const float r = static_cast<float>(1.0 / std::sqrt(ss / d + double(eps)));
  for (int j = 0; j < d; ++j) y[j] = w[j] * (x[j] * r);
  return r;
}

// dy, x, dx [d]: dx = r w dy - x r^3 <dy w, x> / d   (= or +=)
BTM_CPU_DISPATCH void backward_row(const float* dy, const float* x, const float* w, float r,
                                   float* dx, int d, bool accumulate) {
  const double c = lane_sum(d, [&](std::int64_t j) { return double(dy[j]) * w[j] * x[j]; });
  const double rd = r;
  const float k = static_cast<float>(rd * rd * rd * c / d);
  if (accumulate) {
    for (int j = 0; j < d; ++j) dx[j] += r * w[j] * dy[j] - x[j] * k;
  } else {
    for (int j = 0; j < d; ++j) dx[j] = r * w[j] * dy[j] - x[j] * k;
  }
}

// dw[c0, c0+width) += sum_i dy[i, c] * x[i, c] * rstd[i], rows in order, in double.
BTM_CPU_DISPATCH void weight_grad_block(const float* dy, const float* x, const float* rstd,
                                        float* dw, int n, int d, int c0, int width) {
  double acc[kColumnBlock] = {};
  if (width == kColumnBlock) {
    for (std::int64_t i = 0; i < n; ++i) {
      const float* a = dy + i * d + c0;
      const float* b = x + i * d + c0;
      const double r = rstd[i];
      for (int c = 0; c < kColumnBlock; ++c) acc[c] += double(a[c]) * (double(b[c]) * r);
    }
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      const float* a = dy + i * d + c0;
      const float* b = x + i * d + c0;
      const double r = rstd[i];
      for (int c = 0; c < width; ++c) acc[c] += double(a[c]) * (double(b[c]) * r);
    }
  }
  for (int c = 0; c < width; ++c) dw[c0 + c] += static_cast<float>(acc[c]);
}

}  // namespace

void rmsnorm_forward(const float* x /*[n,d]*/, const float* w /*[d]*/, float* y /*[n,d]*/,
                     float* rstd /*[n]*/, int n, int d, float eps) {
  if (n <= 0 || d <= 0) return;
  Kokkos::parallel_for(
      "btm::cpu::rmsnorm_forward", HostRange(0, n),
      KOKKOS_LAMBDA(std::int64_t i) { rstd[i] = forward_row(x + i * d, w, y + i * d, d, eps); });
}

void rmsnorm_backward(const float* dy /*[n,d]*/, const float* x /*[n,d]*/, const float* w /*[d]*/,
                      const float* rstd /*[n]*/, float* dx /*[n,d]*/, float* dw /*[d]*/, int n,
                      int d, bool accumulate) {
  if (n <= 0 || d <= 0) return;
  // dw first: it reads dy, which dx may overwrite (in-place backward).
  const std::int64_t blocks = (d + kColumnBlock - 1) / kColumnBlock;
  Kokkos::parallel_for(
      "btm::cpu::rmsnorm_backward_weight", HostRange(0, blocks), KOKKOS_LAMBDA(std::int64_t b) {
        const int c0 = static_cast<int>(b) * kColumnBlock;
        weight_grad_block(dy, x, rstd, dw, n, d, c0, std::min(kColumnBlock, d - c0));
      });
  Kokkos::parallel_for(
      "btm::cpu::rmsnorm_backward_input", HostRange(0, n), KOKKOS_LAMBDA(std::int64_t i) {
        backward_row(dy + i * d, x + i * d, w, rstd[i], dx + i * d, d, accumulate);
      });
}

}  // namespace btm::cpu
