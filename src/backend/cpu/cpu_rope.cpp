// Rotary position embedding, Hugging Face rotate_half convention: for head dim hd the pairs
// are (x[i], x[i + hd/2]), i < hd/2, rotated by pos * theta^(-2i/hd).
#include <algorithm>
#include <cmath>
#include <string>

#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_math.hpp"
#include "btm/error.hpp"

namespace btm::cpu {

void RopeTable::ensure(int needed, int head_dim, float theta) {
  if (head_dim == head_dim_ && theta == theta_ && needed <= positions_) return;
  if (head_dim != head_dim_ || theta != theta_) positions_ = 0;
  int positions = std::max(positions_, 256);
  while (positions < needed) positions = positions > (1 << 29) ? needed : positions * 2;
  const int half = head_dim / 2;
  cos_.resize(std::size_t(positions) * half);
  sin_.resize(std::size_t(positions) * half);
  float* cs = cos_.data();
  float* sn = sin_.data();
  // Angles in double: pos * inv_freq loses ~pos ulps of inv_freq in float.
  Kokkos::parallel_for(
      "btm::cpu::rope_table", HostRange(0, positions), KOKKOS_LAMBDA(std::int64_t pos) {
        for (int i = 0; i < half; ++i) {
          const double inv_freq = std::pow(double(theta), -2.0 * i / head_dim);
          const double angle = double(pos) * inv_freq;
          cs[pos * half + i] = static_cast<float>(std::cos(angle));
          sn[pos * half + i] = static_cast<float>(std::sin(angle));
        }
      });
  head_dim_ = head_dim;
  theta_ = theta;
  positions_ = positions;
}

namespace {
// One token row x [heads*hd]; c, s [hd/2] for its position; sign = -1 for the inverse.
BTM_CPU_DISPATCH void rotate_row(float* x, const float* c, const float* s, int heads, int head_dim,
                                 float sign) {
  const int half = head_dim / 2;
  for (int h = 0; h < heads; ++h) {
    float* a = x + std::int64_t(h) * head_dim;
    float* b = a + half;
    for (int i = 0; i < half; ++i) {
      const float x1 = a[i];
      const float x2 = b[i];
      const float si = sign * s[i];
      a[i] = x1 * c[i] - x2 * si;
      b[i] = x2 * c[i] + x1 * si;
    }
  }
}
}  // namespace

void rope(RopeTable& table, float* x /*[batch*seq, heads*head_dim]*/, int batch, int seq, int heads,
          int head_dim, int pos0, float theta, bool inverse) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw Error("rope: head_dim must be a positive even number, got " + std::to_string(head_dim));
  }
  if (pos0 < 0) throw Error("rope: start position must be >= 0, got " + std::to_string(pos0));
  if (!(theta > 0.0f)) throw Error("rope: rope_theta must be > 0, got " + std::to_string(theta));
  if (batch <= 0 || seq <= 0 || heads <= 0) return;
  table.ensure(pos0 + seq, head_dim, theta);
  const float* cs = table.cos();
  const float* sn = table.sin();
  const int half = head_dim / 2;
  const std::int64_t width = std::int64_t(heads) * head_dim;
  const float sign = inverse ? -1.0f : 1.0f;
  Kokkos::parallel_for(
      "btm::cpu::rope", HostRange(0, std::int64_t(batch) * seq), KOKKOS_LAMBDA(std::int64_t row) {
        const std::int64_t pos = pos0 + row % seq;
        rotate_row(x + row * width, cs + pos * half, sn + pos * half, heads, head_dim, sign);
      });
}

}  // namespace btm::cpu
