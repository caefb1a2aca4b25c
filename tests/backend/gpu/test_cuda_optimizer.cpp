// AdamW, vector arithmetic and reductions of the cuda backend against the cpu reference
// (all fp32: the bounds are a few fp32 ulps, for FMA contraction and operation order).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "btm/error.hpp"
#include "gpu_test_util.hpp"

namespace btm::test {
namespace {

using Kind = Buffer::Kind;

// Several steps with weight decay: bias correction changes every step, and the moments
// carry over. fp32 on both sides; differences come from FMA contraction and the order of
// the few operations per element, compounding over steps: 1e-5 relative.
TEST(CudaAdamW, MatchesCpuOverSeveralSteps) {
  auto b = make_backends();
  std::mt19937 rng(1300);
  const std::size_t n = 40009;
  const auto p0 = random_f32(n, -1, 1, rng);
  Buffer cp(*b.cpu, Kind::f32, n, p0), cm(*b.cpu, Kind::f32, n, std::vector<float>(n, 0.f));
  Buffer cv(*b.cpu, Kind::f32, n, std::vector<float>(n, 0.f));
  Buffer gp(*b.gpu, Kind::f32, n, p0), gm(*b.gpu, Kind::f32, n, std::vector<float>(n, 0.f));
  Buffer gv(*b.gpu, Kind::f32, n, std::vector<float>(n, 0.f));
  for (long step = 1; step <= 5; ++step) {
    const auto g = random_f32(n, -0.5f, 0.5f, rng);
    Buffer cg(*b.cpu, Kind::f32, n, g), gg(*b.gpu, Kind::f32, n, g);
    b.cpu->adamw(cp.f32(), cg.f32(), cm.f32(), cv.f32(), n, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
    b.gpu->adamw(gp.f32(), gg.f32(), gm.f32(), gv.f32(), n, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
  }
  expect_close(gm.read(), cm.read(), 1e-9, 1e-5, "adamw m");
  expect_close(gv.read(), cv.read(), 1e-12, 1e-5, "adamw v");
  expect_close(gp.read(), cp.read(), 1e-7, 1e-5, "adamw p");
  EXPECT_TRUE(gp.guard_intact() && gm.guard_intact() && gv.guard_intact());
  EXPECT_THROW(b.gpu->adamw(gp.f32(), gp.f32(), gm.f32(), gv.f32(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.f, 0), Error);
}

// The GPU sums in double with a fixed two-pass order: within 1e-12 of an exact host sum,
// close to the cpu backend, and bitwise identical from call to call.
TEST(CudaReductions, SumAndSumSquaresAreAccurateAndDeterministic) {
  auto b = make_backends();
  std::mt19937 rng(1400);
  for (std::size_t n : {std::size_t(1), std::size_t(1000), std::size_t(1000003)}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const auto x = random_f32(n, -1, 1, rng);
    double exact_sum = 0, exact_sq = 0;
    for (float v : x) {
      exact_sum += v;
      exact_sq += double(v) * v;
    }
    Buffer cx(*b.cpu, Kind::f32, n, x), gx(*b.gpu, Kind::f32, n, x);
    const double s = b.gpu->sum(gx.f32(), n), sq = b.gpu->sum_squares(gx.f32(), n);
    EXPECT_NEAR(s, exact_sum, 1e-12 * double(n) + 1e-12);
    EXPECT_NEAR(sq, exact_sq, 1e-12 * double(n) + 1e-12);
    EXPECT_NEAR(s, b.cpu->sum(cx.f32(), n), 1e-6 * double(n));
    EXPECT_NEAR(sq, b.cpu->sum_squares(cx.f32(), n), 1e-6 * exact_sq + 1e-9);
    EXPECT_EQ(s, b.gpu->sum(gx.f32(), n));
    EXPECT_EQ(sq, b.gpu->sum_squares(gx.f32(), n));
  }
  Buffer empty(*b.gpu, Kind::f32, 0);
  EXPECT_EQ(b.gpu->sum(empty.f32(), 0), 0.0);
}

// scale is one rounding; axpy may contract to an FMA on one side: one ulp.
TEST(CudaVector, ScaleAndAxpyMatchCpu) {
  auto b = make_backends();
  std::mt19937 rng(1500);
  const std::size_t n = 70001;
  const auto x = random_f32(n, -3, 3, rng), y = random_f32(n, -3, 3, rng);
  Buffer cx(*b.cpu, Kind::f32, n, x), cy(*b.cpu, Kind::f32, n, y);
  Buffer gx(*b.gpu, Kind::f32, n, x), gy(*b.gpu, Kind::f32, n, y);
  b.cpu->scale(cx.f32(), -0.37f, n);
  b.gpu->scale(gx.f32(), -0.37f, n);
  b.cpu->axpy(0.25f, cx.f32(), cy.f32(), n);
  b.gpu->axpy(0.25f, gx.f32(), gy.f32(), n);
  expect_close(gx.read(), cx.read(), 0, 1.2e-7, "scale");
  expect_close(gy.read(), cy.read(), 1e-6, 2.4e-7, "axpy");
  EXPECT_TRUE(gx.guard_intact() && gy.guard_intact());
}

}  // namespace
}  // namespace btm::test
