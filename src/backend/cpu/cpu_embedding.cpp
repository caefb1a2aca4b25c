// Token embedding: a row gather forward, a deterministic scatter-add backward.
#include <algorithm>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_math.hpp"
#include "btm/error.hpp"

namespace btm::cpu {

namespace {
// Columns per work item of the backward: one cache line of dtable per token.
constexpr int kColumnBlock = 16;

// First row whose token is negative, or n.
std::int64_t first_negative(const std::int32_t* tokens, int n) {
  std::int64_t first = n;
  Kokkos::parallel_reduce(
      "btm::cpu::embedding_check", HostRange(0, n),
      KOKKOS_LAMBDA(std::int64_t i, std::int64_t & m) {
        if (tokens[i] < 0 && i < m) m = i;
      },
      Kokkos::Min<std::int64_t>(first));
  return first;
}
}  // namespace

void embedding_forward(const std::int32_t* tokens /*[n]*/, const float* table /*[V,d]*/,
                       float* x /*[n,d]*/, int n, int d) {
  if (n <= 0 || d <= 0) return;
  if (const std::int64_t bad = first_negative(tokens, n); bad < n) {
    throw Error("embedding: token " + std::to_string(tokens[bad]) + " at row " +
                std::to_string(bad) + " is negative; token ids must be in [0, vocab_size)");
  }
  const std::size_t row = sizeof(float) * std::size_t(d);
  Kokkos::parallel_for(
      "btm::cpu::embedding_forward", HostRange(0, n), KOKKOS_LAMBDA(std::int64_t i) {
        std::memcpy(x + i * d, table + std::int64_t(tokens[i]) * d, row);
      });
}

void embedding_backward(const std::int32_t* tokens /*[n]*/, const float* dx /*[n,d]*/,
                        float* dtable /*[V,d]*/, int n, int d) {
  if (n <= 0 || d <= 0) return;
  if (const std::int64_t bad = first_negative(tokens, n); bad < n) {
    throw Error("embedding backward: token " + std::to_string(tokens[bad]) + " at row " +
                std::to_string(bad) + " is negative; token ids must be in [0, vocab_size)");
  }
  // Race-free and deterministic: each work item owns a block of columns and adds the tokens
  // in order, so repeated tokens always sum in the same order.
  const std::int64_t blocks = (d + kColumnBlock - 1) / kColumnBlock;
  Kokkos::parallel_for(
      "btm::cpu::embedding_backward", HostRange(0, blocks), KOKKOS_LAMBDA(std::int64_t blk) {
        const std::int64_t c0 = blk * kColumnBlock;
        const std::int64_t width = std::min<std::int64_t>(kColumnBlock, d - c0);
        for (std::int64_t i = 0; i < n; ++i) {
          float* dst = dtable + std::int64_t(tokens[i]) * d + c0;
          const float* src = dx + i * d + c0;
          for (std::int64_t c = 0; c < width; ++c) dst[c] += src[c];
        }
      });
}

}  // namespace btm::cpu
