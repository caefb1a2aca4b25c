// AdamW against the PyTorch formula in double over several steps; reductions and updates.
#include "backend_test_util.hpp"
#include "btm/error.hpp"

namespace btm::test {
namespace {

class CpuAdamW : public testing::TestWithParam<float> {};

TEST_P(CpuAdamW, SeveralStepsMatchTheFormulaInDouble) {
  const float wd = GetParam();
  const std::size_t n = 3 * 4096 + 5;
  const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
  auto be = cpu_backend();
  const Vec p0 = random_vec(n, 71);
  auto P = upload(*be, p0), M = upload(*be, Vec(n)), V = upload(*be, Vec(n));
  DVec p = to_double(p0), m(n, 0), v(n, 0);
  for (long step = 1; step <= 5; ++step) {
    Vec g = random_vec(n, 100 + step);
    g[0] = 0.0f;  // a zero gradient still decays and moves by the momentum
    auto G = upload(*be, g);
    be->adamw(P.f32(), G.f32(), M.f32(), V.f32(), n, lr, b1, b2, eps, wd, step);
    for (std::size_t i = 0; i < n; ++i) {
      p[i] -= double(lr) * wd * p[i];
      m[i] = b1 * m[i] + (1 - double(b1)) * g[i];
      v[i] = b2 * v[i] + (1 - double(b2)) * double(g[i]) * g[i];
      const double mhat = m[i] / (1 - std::pow(double(b1), step));
      const double vhat = v[i] / (1 - std::pow(double(b2), step));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
    EXPECT_REL_ERROR_BELOW(download(*be, M, n), m, 1e-6) << "step " << step;
    EXPECT_REL_ERROR_BELOW(download(*be, V, n), v, 1e-6) << "step " << step;
    EXPECT_REL_ERROR_BELOW(download(*be, P, n), p, 1e-6) << "step " << step;
  }
  // The parameters moved by about lr per step: the check above is not vacuous.
  EXPECT_GT(std::fabs(download(*be, P, n)[3] - p0[3]), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(WeightDecay, CpuAdamW, testing::Values(0.0f, 0.1f),
                         [](const testing::TestParamInfo<float>& i) {
                           return i.param == 0 ? "none" : "wd0p1";
                         });

TEST(CpuAdamW, StepMustBeOneBased) {
  auto be = cpu_backend();
  auto B = upload(*be, Vec(4));
  EXPECT_THROW(be->adamw(B.f32(), B.f32(), B.f32(), B.f32(), 4, 1e-3f, 0.9f, 0.99f, 1e-8f, 0.0f, 0),
               btm::Error);
}

class CpuReductions : public testing::TestWithParam<std::size_t> {};

TEST_P(CpuReductions, SumSumSquaresScaleAndAxpyMatchDouble) {
  const std::size_t n = GetParam();
  auto be = cpu_backend();
  const Vec x = random_vec(n, 81, -3, 5), y = random_vec(n, 82);
  auto X = upload(*be, x), Y = upload(*be, y);
  double s = 0, ss = 0;
  for (float v : x) s += v, ss += double(v) * v;
  EXPECT_NEAR(be->sum(X.f32(), n), s, 1e-12 * (1 + std::fabs(s)) + 1e-9);
  EXPECT_NEAR(be->sum_squares(X.f32(), n), ss, 1e-12 * (1 + ss));
  EXPECT_EQ(be->sum(X.f32(), n), be->sum(X.f32(), n));

  be->axpy(-0.75f, X.f32(), Y.f32(), n);
  DVec want(n);
  for (std::size_t i = 0; i < n; ++i) want[i] = y[i] - 0.75 * x[i];
  if (n) EXPECT_REL_ERROR_BELOW(download(*be, Y, n), want, 1e-7);

  be->scale(X.f32(), 0.3f, n);
  for (std::size_t i = 0; i < n; ++i) want[i] = 0.3f * x[i];
  if (n) EXPECT_REL_ERROR_BELOW(download(*be, X, n), want, 1e-7);
}

INSTANTIATE_TEST_SUITE_P(Sizes, CpuReductions, testing::Values(0, 1, 15, 17, 4096, 4097, 100003),
                         [](const testing::TestParamInfo<std::size_t>& i) {
                           return "n" + std::to_string(i.param);
                         });

TEST(CpuReductions, SumOfLargeVectorIsAccurateBeyondFloat) {
  // 2^24 + 3 ones: a float accumulator would stop at 2^24.
  const std::size_t n = (1u << 24) + 3;
  auto be = cpu_backend();
  auto X = upload(*be, Vec(n, 1.0f));
  EXPECT_EQ(be->sum(X.f32(), n), double(n));
  EXPECT_EQ(be->sum_squares(X.f32(), n), double(n));
}

}  // namespace
}  // namespace btm::test
