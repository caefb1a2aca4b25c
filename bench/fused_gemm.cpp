// btm_fused_gemm: would fusing the Q/K/V and gate/up projections pay on the cpu backend?
// Times one layer's projection GEMMs of a micro-batch (forward, backward-input and
// backward-weight) as btm runs them, one product per weight, against one product over the
// adjacent weights [q;k;v] and [gate;up], plus the row copies that split the fused output
// for the kernels that read q, k, v, gate and up as separate tensors (and gather their
// gradients back). fp32 (OpenBLAS) and bf16 (oneDNN), one rank.
//
//   btm_fused_gemm [--rows N] [--hidden D] [--kv-hidden KVD] [--ffn F] [--blas-threads T] [--seconds S]
//
// Defaults: bench/cpu_bench.toml's model (d=256, no GQA, SwiGLU 704) at micro batch 4 x 256.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "btm/error.hpp"
#include "btm/ops/backend.hpp"
#include "btm/runtime.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

// Milliseconds per call of `work`, repeated for about `seconds` after one warm-up call.
double ms_per_call(const std::function<void()>& work, double seconds) {
  work();
  int reps = 0;
  const auto t0 = clock_type::now();
  double elapsed = 0;
  do {
    work();
    ++reps;
    elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
  } while (elapsed < seconds);
  return 1e3 * elapsed / reps;
}

// Columns [col0, col0 + cols) of src [rows, src_cols] to dst [rows, cols], or back.
void copy_columns(float* dst, int dst_cols, int dst_col0, const float* src, int src_cols, int src_col0, int rows,
                  int cols) {
  for (int r = 0; r < rows; ++r) {
    std::memcpy(dst + std::size_t(r) * dst_cols + dst_col0, src + std::size_t(r) * src_cols + src_col0,
                sizeof(float) * cols);
  }
}

struct Projection {
  int in;
  std::vector<int> outs;  // the adjacent weights' output widths, e.g. {qd, kvd, kvd}
};

enum class Layout {
  separate,           // one product per weight (btm today)
  fused_with_copies,  // one product over the stacked weights, outputs split by row copies
  fused_strided,      // the same without the copies: what strided attention/SwiGLU kernels would see
};

// One projection group's forward, backward-input and backward-weight products.
double time_group(btm::Backend& be, const Projection& p, int n, Layout layout, double seconds) {
  int total = 0;
  for (int o : p.outs) total += o;
  std::vector<float> x(std::size_t(n) * p.in, 0.01f), w(std::size_t(total) * p.in, 0.02f);
  std::vector<float> y(std::size_t(n) * total), dy(std::size_t(n) * total, 0.03f), dx(std::size_t(n) * p.in);
  std::vector<float> dw(std::size_t(total) * p.in);
  std::vector<float> parts(std::size_t(n) * total), dparts(std::size_t(n) * total, 0.03f);
  auto work = [&] {
    if (layout != Layout::separate) {
      be.linear_forward(x.data(), w.data(), y.data(), n, p.in, total, false);
      for (int c0 = 0, i = 0; layout == Layout::fused_with_copies && i < int(p.outs.size()); c0 += p.outs[i], ++i) {
        copy_columns(parts.data() + std::size_t(n) * c0, p.outs[i], 0, y.data(), total, c0, n, p.outs[i]);
        copy_columns(dy.data(), total, c0, dparts.data() + std::size_t(n) * c0, p.outs[i], 0, n, p.outs[i]);
      }
      be.linear_backward_input(dy.data(), w.data(), dx.data(), n, p.in, total, false);
      be.linear_backward_weight(dy.data(), x.data(), dw.data(), n, p.in, total);
      return;
    }
    std::size_t w0 = 0, y0 = 0;
    for (int i = 0; i < int(p.outs.size()); ++i) {
      const int o = p.outs[i];
      be.linear_forward(x.data(), w.data() + w0, y.data() + y0, n, p.in, o, false);
      be.linear_backward_input(dy.data() + y0, w.data() + w0, dx.data(), n, p.in, o, i > 0);
      be.linear_backward_weight(dy.data() + y0, x.data(), dw.data() + w0, n, p.in, o);
      w0 += std::size_t(o) * p.in;
      y0 += std::size_t(n) * o;
    }
  };
  return ms_per_call(work, seconds);
}

}  // namespace

int main(int argc, char** argv) {
  btm::Runtime runtime(argc, argv);
  int n = 1024, d = 256, kvd = 0, f = 704, threads = 1;
  double seconds = 1.0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::atoi(argv[++i]); };
    if (i + 1 < argc && a == "--rows") n = next();
    else if (i + 1 < argc && a == "--hidden") d = next();
    else if (i + 1 < argc && a == "--kv-hidden") kvd = next();
    else if (i + 1 < argc && a == "--ffn") f = next();
    else if (i + 1 < argc && a == "--blas-threads") threads = next();
    else if (i + 1 < argc && a == "--seconds") seconds = std::atof(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: btm_fused_gemm [--rows N] [--hidden D] [--kv-hidden KVD] [--ffn F] "
                   "[--blas-threads T] [--seconds S]\n");
      return 2;
    }
  }
  if (kvd == 0) kvd = d;
  if (n < 1 || d < 1 || kvd < 1 || f < 1 || threads < 1 || !(seconds > 0)) {
    std::fprintf(stderr, "btm_fused_gemm: every size and --blas-threads >= 1, --seconds > 0\n");
    return 2;
  }
  auto be = btm::make_backend("cpu", {threads});
  const Projection qkv{d, {d, kvd, kvd}}, gate_up{d, {f, f}};
  for (const char* precision : {"fp32", "bf16"}) {
    if (std::string(precision) == "bf16") {
      try {
        be->set_matmul_dtype(btm::DType::bf16);
      } catch (const btm::Error& e) {
        std::fprintf(stderr, "btm_fused_gemm: no bf16 GEMMs: %s\n", e.what());
        break;
      }
    }
    for (const auto& [name, p] : {std::pair{"qkv", qkv}, std::pair{"gate_up", gate_up}}) {
      const double separate = time_group(*be, p, n, Layout::separate, seconds);
      const double copies = time_group(*be, p, n, Layout::fused_with_copies, seconds);
      const double strided = time_group(*be, p, n, Layout::fused_strided, seconds);
      std::printf("fused precision=%s group=%s rows=%d separate_ms=%.3f fused_copies_ms=%.3f fused_strided_ms=%.3f "
                  "saved_copies=%.1f%% saved_strided=%.1f%%\n",
                  precision, name, n, separate, copies, strided, 100.0 * (separate - copies) / separate,
                  100.0 * (separate - strided) / separate);
    }
  }
  return 0;
}
