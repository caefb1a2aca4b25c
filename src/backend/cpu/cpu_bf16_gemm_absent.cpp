// A btm built without oneDNN: the bf16 GEMMs refuse to start, saying what to install.
#include "backend/cpu/cpu_bf16_gemm.hpp"

#include "btm/error.hpp"

namespace btm::cpu {

bool bf16_gemm_built() { return false; }

struct Bf16Gemm::Impl {};

Bf16Gemm::Bf16Gemm() {
  throw Error(
      "train.precision = \"bf16\": this btm was built without oneDNN, which the cpu backend's bf16 GEMMs need; "
      "install it (Debian: apt-get install libdnnl-dev; Spack: btm +onednn) and rebuild, or use "
      "train.precision = \"fp32\"");
}
Bf16Gemm::~Bf16Gemm() = default;
// Unreachable: no Bf16Gemm is ever constructed.
void Bf16Gemm::linear_forward(const float*, const float*, float*, int, int, int, bool) {}
void Bf16Gemm::linear_backward_input(const float*, const float*, float*, int, int, int, bool) {}
void Bf16Gemm::linear_backward_weight(const float*, const float*, float*, int, int, int) {}
void Bf16Gemm::invalidate(const void*, std::size_t) {}
std::string Bf16Gemm::describe() const { return "isa=none impl=none"; }

}  // namespace btm::cpu
