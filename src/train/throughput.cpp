#include "btm/train/throughput.hpp"

#include <chrono>
#include <map>
#include <string>

namespace btm {

double measured_peak_flops(Backend& backend) {
  // Per backend kind and GEMM precision: a process may train on cpu and cuda (tests compare
  // the two), in fp32 and bf16.
  static std::map<std::string, double> cache;
  const std::string info = backend.matmul_info();
  double& cached = cache[backend.name() + " " + info.substr(0, info.find(' '))];
  if (cached > 0) return cached;
  // Large enough to reach the BLAS / tensor-core plateau, small enough to take < 0.5 s.
  const int n = backend.compute_dtype() == DType::f32 ? 768 : 8192;
  const std::size_t bytes = std::size_t(n) * n * dtype_bytes(backend.compute_dtype());
  DeviceBuffer a(backend, bytes), b(backend, bytes), c(backend, bytes);
  backend.linear_forward(a.get(), b.get(), c.get(), n, n, n, false);  // warm-up
  backend.synchronize();
  using clock = std::chrono::steady_clock;
  int reps = 0;
  const auto t0 = clock::now();
  double elapsed = 0;
  do {
    backend.linear_forward(a.get(), b.get(), c.get(), n, n, n, false);
    backend.synchronize();
    ++reps;
    elapsed = std::chrono::duration<double>(clock::now() - t0).count();
  } while (elapsed < 0.2 && reps < 1000);
  cached = 2.0 * n * n * double(n) * reps / elapsed;
  return cached;
}

}  // namespace btm
