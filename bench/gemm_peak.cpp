// btm_gemm_peak: the GEMM rates this machine reaches through btm's cpu backend, fp32
// (OpenBLAS sgemm) and bf16 (oneDNN matmul, fp32 accumulation), for bench/train_cpu.sh's
// "achieved / peak" figures. One rank; threads = --blas-threads (run.blas_threads).
//
//   btm_gemm_peak [--blas-threads T] [--size N] [--seconds S]
//
// Prints one line: peak threads=T size=N fp32_gflops=... bf16_gflops=... bf16_isa=... bf16_impl=...
// (bf16 fields "none" in a build without oneDNN).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "btm/error.hpp"
#include "btm/ops/backend.hpp"
#include "btm/runtime.hpp"

namespace {

// GFLOP/s of y[n,n] = x[n,n] w[n,n]^T repeated for about `seconds`.
double rate(btm::Backend& be, int n, double seconds) {
  const std::size_t bytes = std::size_t(n) * n * sizeof(float);
  btm::DeviceBuffer x(be, bytes), w(be, bytes), y(be, bytes);
  for (std::size_t i = 0; i < std::size_t(n) * n; ++i) x.f32()[i] = w.f32()[i] = float(i % 7) * 0.125f;
  be.linear_forward(x.get(), w.get(), y.get(), n, n, n, false);  // warm-up
  using clock = std::chrono::steady_clock;
  int reps = 0;
  const auto t0 = clock::now();
  double elapsed = 0;
  do {
    be.linear_forward(x.get(), w.get(), y.get(), n, n, n, false);
    ++reps;
    elapsed = std::chrono::duration<double>(clock::now() - t0).count();
  } while (elapsed < seconds);
  return 2.0 * n * double(n) * n * reps / elapsed / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  btm::Runtime runtime(argc, argv);
  int threads = 1, n = 1024;
  double seconds = 1.0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 < argc && a == "--blas-threads") threads = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--size") n = std::atoi(argv[++i]);
    else if (i + 1 < argc && a == "--seconds") seconds = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: btm_gemm_peak [--blas-threads T] [--size N] [--seconds S]\n");
      return 2;
    }
  }
  if (threads < 1 || n < 16 || !(seconds > 0)) {
    std::fprintf(stderr, "btm_gemm_peak: --blas-threads >= 1, --size >= 16 and --seconds > 0\n");
    return 2;
  }
  auto be = btm::make_backend("cpu", {threads});
  const double fp32 = rate(*be, n, seconds);
  std::string bf16 = "none", info = "isa=none impl=none";
  try {
    be->set_matmul_dtype(btm::DType::bf16);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", rate(*be, n, seconds));
    bf16 = buf;
    std::istringstream words(be->matmul_info());  // precision=bf16 isa=... impl=... threads=...
    std::string precision, isa, impl;
    words >> precision >> isa >> impl;
    info = isa + " " + impl;
  } catch (const btm::Error& e) {
    std::fprintf(stderr, "btm_gemm_peak: no bf16 GEMMs: %s\n", e.what());
  }
  const std::size_t space = info.find(' ');
  std::printf("peak threads=%d size=%d fp32_gflops=%.1f bf16_gflops=%s bf16_%s bf16_%s\n", threads, n, fp32,
              bf16.c_str(), info.substr(0, space).c_str(), info.substr(space + 1).c_str());
  return 0;
}
