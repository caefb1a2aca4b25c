// SwiGLU a = silu(g) * u against double loops and finite differences.
#include "backend_test_util.hpp"

namespace btm::test {
namespace {

double silu(double g) { return g / (1 + std::exp(-g)); }

class CpuSwiglu : public testing::TestWithParam<std::size_t> {};

TEST_P(CpuSwiglu, ForwardMatchesDoubleAndBackwardMatchesFiniteDifferences) {
  const std::size_t n = GetParam();
  auto be = cpu_backend();
  // Gates span the saturated regions of the sigmoid on both sides.
  const Vec g = random_vec(n, 41, -12, 12), u = random_vec(n, 42, -2, 2), da = random_vec(n, 43);
  DVec a_ref(n);
  for (std::size_t i = 0; i < n; ++i) a_ref[i] = silu(g[i]) * u[i];
  auto G = upload(*be, g), U = upload(*be, u), A = upload(*be, Vec(n, 1.0f)), DA = upload(*be, da);
  be->swiglu_forward(G.get(), U.get(), A.get(), n);
  EXPECT_REL_ERROR_BELOW(download(*be, A, n), a_ref, 1e-6);
  // Each output depends on its own element only: compare every element relative to itself too.
  const Vec a = download(*be, A, n);
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_NEAR(a[i], a_ref[i], 1e-6 * std::fabs(a_ref[i]) + 1e-30) << i;

  auto DG = upload(*be, Vec(n, 3.0f)), DU = upload(*be, Vec(n, 3.0f));
  be->swiglu_backward(DA.get(), G.get(), U.get(), DG.get(), DU.get(), n);
  const Vec dg = download(*be, DG, n), du = download(*be, DU, n);
  DVec gd = to_double(g), ud = to_double(u);
  auto loss = [&] {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += silu(gd[i]) * ud[i] * da[i];
    return s;
  };
  expect_gradient_matches("dg", dg, loss, gd, 300, 1e-6);
  expect_gradient_matches("du", du, loss, ud, 300, 1e-6);
}

// 4096 is the kernel's chunk: cover one element, odd sizes and partial last chunks.
INSTANTIATE_TEST_SUITE_P(Sizes, CpuSwiglu, testing::Values(1, 7, 4096, 4099, 3 * 4096 + 17),
                         [](const testing::TestParamInfo<std::size_t>& i) {
                           return "n" + std::to_string(i.param);
                         });

TEST(CpuSwiglu, BackwardMayOverwriteItsInputsInPlace) {
  const std::size_t n = 5000;
  auto be = cpu_backend();
  const Vec g = random_vec(n, 1, -5, 5), u = random_vec(n, 2), da = random_vec(n, 3);
  auto G = upload(*be, g), U = upload(*be, u), DA = upload(*be, da);
  auto DG = upload(*be, Vec(n)), DU = upload(*be, Vec(n));
  be->swiglu_backward(DA.get(), G.get(), U.get(), DG.get(), DU.get(), n);
  be->swiglu_backward(DA.get(), G.get(), U.get(), G.get(), U.get(), n);
  EXPECT_EQ(download(*be, G, n), download(*be, DG, n));
  EXPECT_EQ(download(*be, U, n), download(*be, DU, n));
}

TEST(CpuSwiglu, ExtremeGatesStayFinite) {
  auto be = cpu_backend();
  const Vec g{-1000.0f, -100.0f, -88.0f, 88.0f, 100.0f, 1000.0f, 0.0f};
  const std::size_t n = g.size();
  auto G = upload(*be, g), U = upload(*be, Vec(n, 1.0f)), A = upload(*be, Vec(n)),
       DA = upload(*be, Vec(n, 1.0f));
  be->swiglu_forward(G.get(), U.get(), A.get(), n);
  const Vec a = download(*be, A, n);
  for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(a[i], silu(g[i]), 1e-6 * std::fabs(g[i])) << g[i];
  auto DG = upload(*be, Vec(n)), DU = upload(*be, Vec(n));
  be->swiglu_backward(DA.get(), G.get(), U.get(), DG.get(), DU.get(), n);
  const Vec dg = download(*be, DG, n);
  for (std::size_t i = 0; i < n; ++i) EXPECT_TRUE(std::isfinite(dg[i])) << g[i];
  EXPECT_NEAR(dg[0], 0.0f, 1e-30);
  EXPECT_NEAR(dg[5], 1.0f, 1e-6);
  EXPECT_NEAR(dg[6], 0.5f, 1e-7);
}

}  // namespace
}  // namespace btm::test
