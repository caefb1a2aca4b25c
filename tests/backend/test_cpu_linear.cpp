// Linear layers (y = x W^T, W [out, in]) against double-precision loops.
#include "backend_test_util.hpp"

namespace btm::test {
namespace {

struct LinearCase {
  int n, in, out;
};

class CpuLinear : public testing::TestWithParam<LinearCase> {};

TEST_P(CpuLinear, ForwardAndBothBackwardsMatchDoubleLoopsWithAndWithoutAccumulate) {
  const auto [n, in, out] = GetParam();
  auto be = cpu_backend();
  const Vec x = random_vec(std::size_t(n) * in, 1), w = random_vec(std::size_t(out) * in, 2);
  const Vec dy = random_vec(std::size_t(n) * out, 3);
  const Vec y0 = random_vec(std::size_t(n) * out, 4), dx0 = random_vec(std::size_t(n) * in, 5);
  const Vec dw0 = random_vec(std::size_t(out) * in, 6);

  DVec y_ref(std::size_t(n) * out), dx_ref(std::size_t(n) * in), dw_ref(std::size_t(out) * in);
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) {
      double acc = 0;
      for (int k = 0; k < in; ++k) acc += double(x[i * in + k]) * w[o * in + k];
      y_ref[i * out + o] = acc;
    }
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < in; ++k) {
      double acc = 0;
      for (int o = 0; o < out; ++o) acc += double(dy[i * out + o]) * w[o * in + k];
      dx_ref[i * in + k] = acc;
    }
  for (int o = 0; o < out; ++o)
    for (int k = 0; k < in; ++k) {
      double acc = 0;
      for (int i = 0; i < n; ++i) acc += double(dy[i * out + o]) * x[i * in + k];
      dw_ref[o * in + k] = acc;
    }
  auto plus = [](DVec a, const Vec& b) {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    return a;
  };

  const double tol = 2e-6;
  auto X = upload(*be, x), W = upload(*be, w), DY = upload(*be, dy);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    auto Y = upload(*be, y0);
    be->linear_forward(X.get(), W.get(), Y.get(), n, in, out, accumulate);
    EXPECT_REL_ERROR_BELOW(download(*be, Y, y0.size()), accumulate ? plus(y_ref, y0) : y_ref, tol);
    auto DX = upload(*be, dx0);
    be->linear_backward_input(DY.get(), W.get(), DX.get(), n, in, out, accumulate);
    EXPECT_REL_ERROR_BELOW(download(*be, DX, dx0.size()), accumulate ? plus(dx_ref, dx0) : dx_ref,
                           tol);
  }
  auto DW = upload(*be, dw0);
  be->linear_backward_weight(DY.get(), X.get(), DW.f32(), n, in, out);
  EXPECT_REL_ERROR_BELOW(download(*be, DW, dw0.size()), plus(dw_ref, dw0), tol);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuLinear,
                         testing::Values(LinearCase{1, 1, 1}, LinearCase{1, 5, 3},
                                         LinearCase{7, 67, 129}, LinearCase{33, 130, 17},
                                         LinearCase{64, 256, 96}),
                         [](const testing::TestParamInfo<LinearCase>& i) {
                           return "n" + std::to_string(i.param.n) + "_in" +
                                  std::to_string(i.param.in) + "_out" + std::to_string(i.param.out);
                         });

TEST(CpuLinear, OverwriteIgnoresNaNsAlreadyInTheOutput) {
  auto be = cpu_backend();
  const int n = 3, in = 4, out = 5;
  auto X = upload(*be, random_vec(n * in, 1)), W = upload(*be, random_vec(out * in, 2));
  auto Y = upload(*be, Vec(n * out, std::nanf("")));
  be->linear_forward(X.get(), W.get(), Y.get(), n, in, out, false);
  for (float v : download(*be, Y, n * out)) EXPECT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace btm::test
