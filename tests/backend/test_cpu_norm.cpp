// RMSNorm against double loops and finite differences.
#include "backend_test_util.hpp"

namespace btm::test {
namespace {

// y = w * x / sqrt(mean(x^2) + eps), rows of length d.
DVec rmsnorm_ref(const DVec& x, const DVec& w, int n, int d, double eps, DVec* rstd = nullptr) {
  DVec y(x.size());
  if (rstd) rstd->assign(n, 0);
  for (int i = 0; i < n; ++i) {
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += x[i * d + j] * x[i * d + j];
    const double r = 1 / std::sqrt(ss / d + eps);
    if (rstd) (*rstd)[i] = r;
    for (int j = 0; j < d; ++j) y[i * d + j] = w[j] * x[i * d + j] * r;
  }
  return y;
}

double weighted(const DVec& y, const Vec& r) {
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

struct NormCase {
  int n, d;
  float eps;
};
class CpuRmsNorm : public testing::TestWithParam<NormCase> {};

TEST_P(CpuRmsNorm, ForwardMatchesDoubleAndBackwardMatchesFiniteDifferences) {
  const auto [n, d, eps] = GetParam();
  auto be = cpu_backend();
  const Vec x = random_vec(std::size_t(n) * d, 11, -2, 2);
  const Vec w = random_vec(d, 12, 0.5f, 1.5f);
  const Vec dy = random_vec(x.size(), 13);
  DVec rstd_ref;
  const DVec y_ref = rmsnorm_ref(to_double(x), to_double(w), n, d, eps, &rstd_ref);

  auto X = upload(*be, x), W = upload(*be, w), Y = upload(*be, Vec(x.size()));
  auto R = upload(*be, Vec(n));
  be->rmsnorm_forward(X.get(), W.f32(), Y.get(), R.f32(), n, d, eps);
  EXPECT_REL_ERROR_BELOW(download(*be, Y, x.size()), y_ref, 1e-6);
  const Vec rstd = download(*be, R, n);
  EXPECT_REL_ERROR_BELOW(rstd, rstd_ref, 1e-6);

  // Backward: dx overwritten, dw accumulated onto what is already there.
  const Vec dw0 = random_vec(d, 14);
  auto DY = upload(*be, dy), DX = upload(*be, Vec(x.size(), 123.0f)), DW = upload(*be, dw0);
  be->rmsnorm_backward(DY.get(), X.get(), W.f32(), R.f32(), DX.get(), DW.f32(), n, d, false);
  const Vec dx = download(*be, DX, x.size());
  Vec dw = download(*be, DW, d);
  for (int j = 0; j < d; ++j) dw[j] -= dw0[j];

  DVec xd = to_double(x), wd = to_double(w);
  auto loss = [&] { return weighted(rmsnorm_ref(xd, wd, n, d, eps), dy); };
  expect_gradient_matches("dx", dx, loss, xd, 200, 1e-5);
  expect_gradient_matches("dw", dw, loss, wd, 200, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuRmsNorm,
                         testing::Values(NormCase{1, 2, 1e-6f}, NormCase{1, 7, 1e-5f},
                                         NormCase{5, 33, 1e-6f}, NormCase{19, 256, 1e-5f},
                                         NormCase{3, 1000, 1e-6f}),
                         [](const testing::TestParamInfo<NormCase>& i) {
                           return "n" + std::to_string(i.param.n) + "_d" +
                                  std::to_string(i.param.d);
                         });

TEST(CpuRmsNorm, BackwardAccumulatesIntoDxWhenAsked) {
  const int n = 6, d = 40;
  auto be = cpu_backend();
  const Vec x = random_vec(n * d, 1), w = random_vec(d, 2), dy = random_vec(n * d, 3);
  const Vec dx0 = random_vec(n * d, 4);
  auto X = upload(*be, x), W = upload(*be, w), Y = upload(*be, Vec(n * d)), R = upload(*be, Vec(n));
  be->rmsnorm_forward(X.get(), W.f32(), Y.get(), R.f32(), n, d, 1e-5f);
  auto DY = upload(*be, dy), DW = upload(*be, Vec(d));
  auto DX1 = upload(*be, Vec(n * d)), DX2 = upload(*be, dx0);
  be->rmsnorm_backward(DY.get(), X.get(), W.f32(), R.f32(), DX1.get(), DW.f32(), n, d, false);
  be->rmsnorm_backward(DY.get(), X.get(), W.f32(), R.f32(), DX2.get(), DW.f32(), n, d, true);
  const Vec a = download(*be, DX1, n * d), b = download(*be, DX2, n * d);
  for (int i = 0; i < n * d; ++i) EXPECT_FLOAT_EQ(b[i], dx0[i] + a[i]) << i;
  // dw was accumulated twice: it equals twice the single contribution.
  auto DW1 = upload(*be, Vec(d));
  be->rmsnorm_backward(DY.get(), X.get(), W.f32(), R.f32(), DX1.get(), DW1.f32(), n, d, false);
  const Vec dw2 = download(*be, DW, d), dw1 = download(*be, DW1, d);
  for (int j = 0; j < d; ++j) EXPECT_FLOAT_EQ(dw2[j], 2 * dw1[j]) << j;
}

TEST(CpuRmsNorm, BackwardInPlaceOverDyGivesTheSameResult) {
  const int n = 4, d = 50;
  auto be = cpu_backend();
  const Vec x = random_vec(n * d, 1), w = random_vec(d, 2), dy = random_vec(n * d, 3);
  auto X = upload(*be, x), W = upload(*be, w), Y = upload(*be, Vec(n * d)), R = upload(*be, Vec(n));
  be->rmsnorm_forward(X.get(), W.f32(), Y.get(), R.f32(), n, d, 1e-5f);
  auto DY = upload(*be, dy), DX = upload(*be, Vec(n * d)), DW1 = upload(*be, Vec(d)),
       DW2 = upload(*be, Vec(d));
  be->rmsnorm_backward(DY.get(), X.get(), W.f32(), R.f32(), DX.get(), DW1.f32(), n, d, false);
  be->rmsnorm_backward(DY.get(), X.get(), W.f32(), R.f32(), DY.get(), DW2.f32(), n, d, false);
  EXPECT_EQ(download(*be, DX, n * d), download(*be, DY, n * d));
  EXPECT_EQ(download(*be, DW1, d), download(*be, DW2, d));
}

}  // namespace
}  // namespace btm::test
