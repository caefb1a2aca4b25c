#pragma once
// Model FLOPs utilisation: achieved training FLOP/s over the peak GEMM rate measured on
// this backend at startup (fp32 BLAS on cpu, bf16 cuBLASLt on cuda).
#include "btm/ops/backend.hpp"

namespace btm {

// FLOP/s of a square GEMM on `backend`, measured once per process and backend kind.
double measured_peak_flops(Backend& backend);

}  // namespace btm
