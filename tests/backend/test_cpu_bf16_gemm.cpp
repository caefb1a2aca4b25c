// bf16 linear layers (train.precision = "bf16": oneDNN matmul, bf16 operands, fp32
// accumulation) against double-precision loops: exact up to fp32 summation on operands
// rounded to bf16 first, and within bf16's rounding of the fp32 product otherwise.
#include <cstring>

#include "backend_test_util.hpp"
#include "btm/error.hpp"

namespace btm::test {
namespace {

// bf16(x) as a float: round to nearest even, the rounding of the GEMM operands.
float bf16_round(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&x, &u, 4);
  return x;
}

Vec rounded(Vec v) {
  for (auto& x : v) x = bf16_round(x);
  return v;
}

// A cpu backend with bf16 linear layers, or nullptr (test skipped) in a build without oneDNN.
std::unique_ptr<Backend> bf16_backend() {
  auto be = make_backend("cpu");
  try {
    be->set_matmul_dtype(DType::bf16);
  } catch (const Error& e) {
    return nullptr;
  }
  return be;
}

struct Products {
  DVec y, dx, dw;  // x w^T, dy w, dy^T x
};

// The three products in double; with `magnitude`, of |x|, |w|, |dy| (sums of |terms|).
Products reference(const Vec& x, const Vec& w, const Vec& dy, int n, int in, int out, bool magnitude = false) {
  Products r{DVec(std::size_t(n) * out), DVec(std::size_t(n) * in), DVec(std::size_t(out) * in)};
  auto v = [&](float a) { return magnitude ? std::fabs(double(a)) : double(a); };
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o)
      for (int k = 0; k < in; ++k) {
        r.y[i * out + o] += v(x[i * in + k]) * v(w[o * in + k]);
        r.dx[i * in + k] += v(dy[i * out + o]) * v(w[o * in + k]);
        r.dw[o * in + k] += v(dy[i * out + o]) * v(x[i * in + k]);
      }
  return r;
}

// Every element within bf16's rounding of the fp32 product: each operand is rounded by at
// most 2^-9 relative, so each term by (1 + 2^-9)^2 - 1 < 2^-8, and the sum by 2^-8 times the
// sum of the terms' magnitudes (plus fp32 summation).
void expect_within_bf16_rounding(const Vec& got, const DVec& want, const DVec& magnitude) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::fabs(got[i] - want[i]), std::ldexp(magnitude[i], -8) + 1e-5 * (std::fabs(want[i]) + 1))
        << "element " << i << ": " << got[i] << " vs " << want[i];
  }
}

struct Bf16Case {
  int n, in, out;
};

class CpuBf16Linear : public testing::TestWithParam<Bf16Case> {};

TEST_P(CpuBf16Linear, SumsBf16OperandsInFp32AndStaysWithinBf16RoundingOfTheFp32Product) {
  const auto [n, in, out] = GetParam();
  auto be = bf16_backend();
  if (!be) GTEST_SKIP() << "built without oneDNN";
  const Vec x = random_vec(std::size_t(n) * in, 1), w = random_vec(std::size_t(out) * in, 2);
  const Vec dy = random_vec(std::size_t(n) * out, 3), y0 = random_vec(std::size_t(n) * out, 4);
  const Vec dx0 = random_vec(std::size_t(n) * in, 5), dw0 = random_vec(std::size_t(out) * in, 6);
  const Products exact = reference(rounded(x), rounded(w), rounded(dy), n, in, out);
  const Products fp32 = reference(x, w, dy, n, in, out);
  const Products mag = reference(x, w, dy, n, in, out, true);
  auto plus = [](DVec a, const Vec& b) {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    return a;
  };
  // Products of bf16 values are exact in fp32, so against the rounded operands only fp32
  // summation errs (~ in * 2^-24 relative); against the unrounded fp32 operands, the bound
  // of expect_within_bf16_rounding.
  const double summed = 1e-5;
  // (An accumulated fp32 addend is added exactly, up to fp32 rounding.)
  auto X = upload(*be, x), W = upload(*be, w), DY = upload(*be, dy);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    auto Y = upload(*be, y0);
    be->linear_forward(X.get(), W.get(), Y.get(), n, in, out, accumulate);
    const Vec y = download(*be, Y, y0.size());
    EXPECT_REL_ERROR_BELOW(y, accumulate ? plus(exact.y, y0) : exact.y, summed);
    expect_within_bf16_rounding(y, accumulate ? plus(fp32.y, y0) : fp32.y, mag.y);
    auto DX = upload(*be, dx0);
    be->linear_backward_input(DY.get(), W.get(), DX.get(), n, in, out, accumulate);
    const Vec dx = download(*be, DX, dx0.size());
    EXPECT_REL_ERROR_BELOW(dx, accumulate ? plus(exact.dx, dx0) : exact.dx, summed);
    expect_within_bf16_rounding(dx, accumulate ? plus(fp32.dx, dx0) : fp32.dx, mag.dx);
  }
  auto DW = upload(*be, dw0);
  be->linear_backward_weight(DY.get(), X.get(), DW.f32(), n, in, out);
  const Vec dw = download(*be, DW, dw0.size());
  EXPECT_REL_ERROR_BELOW(dw, plus(exact.dw, dw0), summed);
  expect_within_bf16_rounding(dw, plus(fp32.dw, dw0), mag.dw);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuBf16Linear,
                         testing::Values(Bf16Case{1, 1, 1}, Bf16Case{1, 5, 3}, Bf16Case{7, 67, 129},
                                         Bf16Case{33, 130, 17}, Bf16Case{64, 256, 96}),
                         [](const testing::TestParamInfo<Bf16Case>& i) {
                           return "n" + std::to_string(i.param.n) + "_in" + std::to_string(i.param.in) + "_out" +
                                  std::to_string(i.param.out);
                         });

TEST(CpuBf16Linear, WeightWrittenThroughTheBackendIsConvertedAgain) {
  auto be = bf16_backend();
  if (!be) GTEST_SKIP() << "built without oneDNN";
  const int n = 4, in = 8, out = 3;
  const Vec x = random_vec(n * in, 1), w1 = random_vec(out * in, 2), w2 = random_vec(out * in, 3);
  auto X = upload(*be, x), W = upload(*be, w1), Y = upload(*be, Vec(n * out));
  be->linear_forward(X.get(), W.get(), Y.get(), n, in, out, false);  // caches bf16(w1)
  be->copy_to_device(W.get(), w2.data(), w2.size() * sizeof(float));
  be->linear_forward(X.get(), W.get(), Y.get(), n, in, out, false);
  EXPECT_REL_ERROR_BELOW(download(*be, Y, n * out), reference(rounded(x), rounded(w2), Vec(n * out), n, in, out).y,
                         1e-5);
  // An optimizer step on the weights, too.
  auto G = upload(*be, random_vec(out * in, 4)), M = upload(*be, Vec(out * in)), V = upload(*be, Vec(out * in));
  be->adamw(W.f32(), G.f32(), M.f32(), V.f32(), out * in, 0.1f, 0.9f, 0.95f, 1e-8f, 0.0f, 1);
  const Vec w3 = download(*be, W, out * in);
  be->linear_forward(X.get(), W.get(), Y.get(), n, in, out, false);
  EXPECT_REL_ERROR_BELOW(download(*be, Y, n * out), reference(rounded(x), rounded(w3), Vec(n * out), n, in, out).y,
                         1e-5);
}

TEST(CpuBf16Linear, SaysWhichPrecisionAndInstructionSetRun) {
  auto be = make_backend("cpu");
  EXPECT_EQ(be->matmul_info().rfind("precision=fp32", 0), 0u) << be->matmul_info();
  // And the threads: run.blas_threads for the GEMMs, Kokkos' pool for the other kernels.
  EXPECT_NE(be->matmul_info().find(" threads=1 kokkos="), std::string::npos) << be->matmul_info();
  auto bf = bf16_backend();
  if (!bf) GTEST_SKIP() << "built without oneDNN";
  const std::string info = bf->matmul_info();
  EXPECT_EQ(info.rfind("precision=bf16 isa=", 0), 0u) << info;
  EXPECT_NE(info.find(" impl="), std::string::npos) << info;
  bf->set_matmul_dtype(DType::f32);
  EXPECT_EQ(bf->matmul_info().rfind("precision=fp32", 0), 0u);
}

}  // namespace
}  // namespace btm::test
