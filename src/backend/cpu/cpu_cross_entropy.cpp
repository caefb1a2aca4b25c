// Fused softmax cross-entropy over the vocabulary, one row per token. The probabilities are
// never stored: with a gradient they are written straight into the logits row as
// grad_scale * (softmax - onehot).
#include <cmath>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_math.hpp"
#include "btm/error.hpp"

namespace btm::cpu {

namespace {

// Returns nll = lse - x[target]; with grad_scale != 0 overwrites x by the gradient.
BTM_CPU_DISPATCH double row_loss(float* x, int vocab, int target, float grad_scale) {
  const float m = lane_max(x, vocab);
  const float picked = x[target];
  double total;
  if (grad_scale != 0.0f) {
    // Keep exp(x - max) in the row: the gradient pass then needs no second exp.
    total = lane_sum(vocab, [&](std::int64_t j) {
      const float e = exp_f32(x[j] - m);
      x[j] = e;
      return double(e);
    });
    const float f = static_cast<float>(double(grad_scale) / total);
    for (int j = 0; j < vocab; ++j) x[j] *= f;
    x[target] -= grad_scale;
  } else {
    total = lane_sum(vocab, [&](std::int64_t j) { return double(exp_f32(x[j] - m)); });
  }
  return double(m) + std::log(total) - double(picked);
}

}  // namespace

void cross_entropy(float* logits /*[n,vocab]*/, const std::int32_t* targets /*[n]*/,
                   float* nll /*[n]*/, int n, int vocab, float grad_scale) {
  if (n <= 0) return;
  if (vocab <= 0) throw Error("cross_entropy: vocab must be >= 1, got " + std::to_string(vocab));
  // Validate every target before anything is written.
  std::int64_t bad = n;
  Kokkos::parallel_reduce(
      "btm::cpu::cross_entropy_check", HostRange(0, n),
      KOKKOS_LAMBDA(std::int64_t i, std::int64_t & first) {
        if (targets[i] >= vocab && i < first) first = i;
      },
      Kokkos::Min<std::int64_t>(bad));
  if (bad < n) {
    throw Error("cross_entropy: target " + std::to_string(targets[bad]) + " at row " +
                std::to_string(bad) + " is outside the vocabulary [0, " + std::to_string(vocab) +
                ") (negative targets mean: ignore this token)");
  }
  const std::size_t row_bytes = sizeof(float) * std::size_t(vocab);
  Kokkos::parallel_for(
      "btm::cpu::cross_entropy", HostRange(0, n), KOKKOS_LAMBDA(std::int64_t i) {
        float* x = logits + i * vocab;
        const int t = targets[i];
        if (t < 0) {
          nll[i] = 0.0f;
          if (grad_scale != 0.0f) std::memset(x, 0, row_bytes);
          return;
        }
        nll[i] = static_cast<float>(row_loss(x, vocab, t, grad_scale));
      });
}

}  // namespace btm::cpu
