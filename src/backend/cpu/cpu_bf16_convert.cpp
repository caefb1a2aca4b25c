// fp32 -> bf16 rounding for the bf16 GEMMs (cpu_bf16_gemm.hpp), with the AVX512-BF16
// instruction where the CPU has it (chosen at run time) and a portable loop elsewhere.
#include <cstring>

#include "backend/cpu/cpu_bf16_gemm.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BTM_X86_BF16 1
#endif

namespace btm::cpu {

namespace {

std::uint16_t round_one(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return std::uint16_t(u >> 16);
}

void round_portable(const float* src, std::uint16_t* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = round_one(src[i]);
}

#ifdef BTM_X86_BF16
__attribute__((target("avx512f,avx512bf16,avx512vl"))) void round_avx512bf16(const float* src, std::uint16_t* dst,
                                                                             std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh r = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), reinterpret_cast<const __m256i&>(r));
  }
  round_portable(src + i, dst + i, n - i);
}

bool cpu_has_avx512bf16() {
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
}
#endif

}  // namespace

void round_to_bf16(const float* src, std::uint16_t* dst, std::size_t n) {
#ifdef BTM_X86_BF16
  if (cpu_has_avx512bf16()) return round_avx512bf16(src, dst, n);
#endif
  round_portable(src, dst, n);
}

}  // namespace btm::cpu
