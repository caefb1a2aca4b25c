#pragma once
// bf16 linear layers on the cpu backend (train.precision = "bf16"; ARCHITECTURE, Backends):
// the operands are rounded to bf16 (round to nearest even), the products are summed in fp32
// by oneDNN's matmul, and the results are fp32, as with cuBLASLt on the cuda backend. oneDNN
// picks the instructions at run time: AMX on Xeons that have it, AVX512-BF16 on Zen 4 /
// Cooper Lake, an AVX-512 emulation below that; bf16_gemm_isa() says which.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace btm::cpu {

// Whether this btm was built with oneDNN (BTM_HAVE_ONEDNN).
bool bf16_gemm_built();

// Rounds n floats to bf16 (nearest even; NaN stays NaN): dst[i] = bf16(src[i]).
void round_to_bf16(const float* src /*[n]*/, std::uint16_t* dst /*[n]*/, std::size_t n);

class Bf16Gemm {
 public:
  // Throws btm::Error when oneDNN is absent or cannot run a bf16 matmul on this CPU.
  Bf16Gemm();
  ~Bf16Gemm();
  Bf16Gemm(const Bf16Gemm&) = delete;
  Bf16Gemm& operator=(const Bf16Gemm&) = delete;

  // The semantics of btm::Backend's linear_* (fp32 in and out, W [out, in]).
  // x [n, in], w [out, in], y [n, out]: y = (or +=) x w^T
  void linear_forward(const float* x, const float* w, float* y, int n, int in, int out, bool accumulate);
  // dy [n, out], w [out, in], dx [n, in]: dx = (or +=) dy w
  void linear_backward_input(const float* dy, const float* w, float* dx, int n, int in, int out,
                             bool accumulate);
  // dy [n, out], x [n, in], dw [out, in]: dw += dy^T x
  void linear_backward_weight(const float* dy, const float* x, float* dw, int n, int in, int out);

  // The bf16 copy of a weight matrix is kept until its fp32 memory is written: every
  // backend call that writes device memory reports the bytes it wrote here.
  void invalidate(const void* begin, std::size_t bytes);

  // "isa=<oneDNN's effective ISA> impl=<the matmul implementation oneDNN chose>".
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace btm::cpu
