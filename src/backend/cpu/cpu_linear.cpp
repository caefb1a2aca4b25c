// Linear layers through BLAS (row-major sgemm). W is [out, in], the Hugging Face layout.
#include <cblas.h>

#include <cstring>

#include "backend/cpu/cpu_kernels.hpp"

namespace btm::cpu {

void empty_product(float* c, int m, int n, bool accumulate) {
  if (!accumulate) std::memset(c, 0, sizeof(float) * std::size_t(m) * std::size_t(n));
}

void linear_forward(const float* x /*[n,in]*/, const float* w /*[out,in]*/, float* y /*[n,out]*/,
                    int n, int in, int out, bool accumulate) {
  if (n <= 0 || out <= 0) return;
  const float beta = accumulate ? 1.0f : 0.0f;
  if (in <= 0) return empty_product(y, n, out, accumulate);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, beta, y,
              out);
}

void linear_backward_input(const float* dy /*[n,out]*/, const float* w /*[out,in]*/,
                           float* dx /*[n,in]*/, int n, int in, int out, bool accumulate) {
  if (n <= 0 || in <= 0) return;
  const float beta = accumulate ? 1.0f : 0.0f;
  if (out <= 0) return empty_product(dx, n, in, accumulate);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in, beta, dx,
              in);
}

void linear_backward_weight(const float* dy /*[n,out]*/, const float* x /*[n,in]*/,
                            float* dw /*[out,in]*/, int n, int in, int out) {
  if (n <= 0 || in <= 0 || out <= 0) return;  // dw += 0
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw,
              in);
}

}  // namespace btm::cpu
