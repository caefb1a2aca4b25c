#pragma once
// Scalar math for the cpu kernels, written so that loops over it vectorise without
// -ffast-math: a branch-free exp, fixed-order lane sums in double (deterministic: the
// summation order is fixed by the code, not by the compiler or the ISA), and runtime ISA
// dispatch for the hot loop bodies.
#include <Kokkos_Core.hpp>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

// Hot loop bodies are compiled for AVX-512, AVX2 and baseline x86-64; the loader picks one
// (glibc ifunc), so one binary runs everywhere and still uses the wide units where they
// exist. GCC >= 12 only; -DBTM_CPU_NO_DISPATCH turns it off (e.g. for a libc without ifunc).
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__NVCOMPILER) && !defined(__INTEL_COMPILER) && __GNUC__ >= 12 &&                \
    !defined(BTM_CPU_NO_DISPATCH)
#define BTM_CPU_DISPATCH \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BTM_CPU_DISPATCH
#endif

namespace btm::cpu {

using HostSpace = Kokkos::DefaultHostExecutionSpace;
using HostRange = Kokkos::RangePolicy<HostSpace, Kokkos::IndexType<std::int64_t>>;

// Elements per work item of the flat elementwise kernels (amortises the dispatch per item).
inline constexpr std::int64_t kChunk = 4096;
// Independent partial sums per reduction: wide enough for 16 floats / 8 doubles per vector.
inline constexpr int kLanes = 16;

inline std::int64_t chunk_count(std::size_t n) {
  return static_cast<std::int64_t>((n + kChunk - 1) / kChunk);
}

// exp(x) in float, max relative error ~1e-7 (Cephes expf: x = n ln2 + r, degree-6
// polynomial for e^r, 2^n from the exponent bits). No branches, so it vectorises; NaN
// propagates, exp(-inf) = 0, exp(x > 88.37) = inf.
inline float exp_f32(float x) {
  constexpr float lo = -87.33654f;
  constexpr float hi = 88.3762626647949f;
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < lo ? lo : x;           // NaN compares false and passes through
  xc = xc > hi ? hi : xc;
  const float t = xc * 1.44269504088896341f + magic;
  const float n = t - magic;
  float r = xc - n * 0.693359375f;  // ln 2 split in two for an exact n*ln2
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // n sits in the low mantissa bits of t; move it into the exponent field.
  const std::uint32_t bits = (std::bit_cast<std::uint32_t>(t) - 0x4B400000u + 127u) << 23;
  const float y = p * std::bit_cast<float>(bits);
  const float inf = std::numeric_limits<float>::infinity();
  return x < lo ? 0.0f : (x > hi ? inf : y);
}

// sum_{i<n} f(i) in double, kLanes partial sums combined pairwise: the order is fixed by
// the code, so the result is identical whatever the vector width.
template <class F>
inline double lane_sum(std::int64_t n, F f) {
  double acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += f(i + l);
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] += f(i);
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// max_{i<n} x[i] (n >= 1); NaN is not propagated here, callers see it through exp.
inline float lane_max(const float* x, std::int64_t n) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = -std::numeric_limits<float>::infinity();
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  }
  for (int l = 0; i < n; ++i, ++l) acc[l] = x[i] > acc[l] ? x[i] : acc[l];
  float m = acc[0];
  for (int l = 1; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m;
  return m;
}

}  // namespace btm::cpu
