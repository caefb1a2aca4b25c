// The cuda backend's memory, GEMM, norm, RoPE, SwiGLU, embedding and cross-entropy kernels
// against the cpu reference backend on the same bf16-representable inputs. Outputs start as
// NaN (an element a kernel forgets to write fails) and are fenced by a guard region (an
// element written out of bounds fails).
//
// Error bounds. bf16 keeps 8 significant bits, so rounding a value v once costs at most
// 2^-8 |v| (kBf16Round). The cpu backend computes in fp32 without that rounding; fp32
// summation-order differences add at most ~n * 2^-24 * sum|terms|, far below the bf16 term
// for the sizes used here. Each bound below is "one bf16 rounding of the output + a small
// absolute term for fp32 differences", justified next to it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "btm/error.hpp"
#include "gpu_test_util.hpp"

namespace btm::test {
namespace {

using Kind = Buffer::Kind;
constexpr double kBf16Round = 1.0 / 256.0;  // max relative error of one bf16 rounding

TEST(CudaBackend, ReportsItsNameAndBf16Compute) {
  auto gpu = make_backend("cuda");
  EXPECT_EQ(gpu->name(), "cuda");
  EXPECT_EQ(gpu->compute_dtype(), DType::bf16);
}

TEST(CudaBackend, AllocReturnsZeroedMemoryAndCopiesRoundTrip) {
  auto gpu = make_backend("cuda");
  const std::size_t n = 1 << 20;
  DeviceBuffer buf(*gpu, n * 4);
  std::vector<float> host(n, 1.f);
  gpu->copy_to_host(host.data(), buf.get(), n * 4);
  for (std::size_t i = 0; i < n; i += 997) ASSERT_EQ(host[i], 0.f) << "alloc must zero, element " << i;
  std::mt19937 rng(1);
  auto values = random_f32(n, -5, 5, rng);
  gpu->copy_to_device(buf.get(), values.data(), n * 4);
  DeviceBuffer other(*gpu, n * 4);
  gpu->copy(other.get(), buf.get(), n * 4);
  gpu->zero(buf.get(), n * 4);
  std::vector<float> back(n), zeros(n, 1.f);
  gpu->copy_to_host(back.data(), other.get(), n * 4);
  gpu->copy_to_host(zeros.data(), buf.get(), n * 4);
  EXPECT_EQ(back, values);
  EXPECT_EQ(zeros, std::vector<float>(n, 0.f));
}

TEST(CudaBackend, ConversionsRoundToNearestEvenAndBack) {
  auto gpu = make_backend("cuda");
  std::mt19937 rng(2);
  auto values = random_f32(10007, -300, 300, rng);
  values.push_back(1.0f + 1.0f / 256.0f);  // a tie: rounds to even (1.0)
  values.push_back(0.f);
  values.push_back(-0.f);
  const std::size_t n = values.size();
  Buffer src(*gpu, Kind::f32, n, values);
  Buffer compute(*gpu, Kind::compute, n);
  Buffer back(*gpu, Kind::f32, n);
  gpu->to_compute(src.f32(), compute.get(), n);
  gpu->to_float(compute.get(), back.f32(), n);
  std::vector<float> want(n);
  for (std::size_t i = 0; i < n; ++i) want[i] = bf16_round(values[i]);
  expect_close(compute.read(), want, 0, 0, "to_compute");  // exact: both sides round to nearest even
  expect_close(back.read(), want, 0, 0, "to_float");       // exact: bf16 -> fp32 is lossless
  EXPECT_TRUE(compute.guard_intact());
  EXPECT_TRUE(back.guard_intact());
  EXPECT_THROW(gpu->to_compute(src.f32(), src.get(), n), Error) << "aliasing buffers must be refused";
}

// ---- linear layers ----------------------------------------------------------------------

struct LinearCase {
  int n, in, out;
};

class CudaLinear : public ::testing::TestWithParam<LinearCase> {};

// y = x W^T (+ y0): |x|, |w| <= 1, so sum|terms| <= in and fp32 order differences stay below
// in * 2e-6 (atol); the rest is the single bf16 rounding of y (kBf16Round).
TEST_P(CudaLinear, ForwardMatchesCpuWithAndWithoutResidual) {
  const auto [n, in, out] = GetParam();
  auto b = make_backends();
  std::mt19937 rng(100 + n * 7 + in);
  const auto x = random_bf16(std::size_t(n) * in, -1, 1, rng);
  const auto w = random_bf16(std::size_t(out) * in, -1, 1, rng);
  const auto y0 = random_bf16(std::size_t(n) * out, -1, 1, rng);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    const std::size_t ny = std::size_t(n) * out;
    Buffer cx(*b.cpu, Kind::compute, x.size(), x), cw(*b.cpu, Kind::compute, w.size(), w);
    Buffer cy(*b.cpu, Kind::compute, ny, accumulate ? y0 : std::vector<float>(ny, 0.f));
    Buffer gx(*b.gpu, Kind::compute, x.size(), x), gw(*b.gpu, Kind::compute, w.size(), w);
    Buffer gy(*b.gpu, Kind::compute, ny, accumulate ? y0 : std::vector<float>{});
    b.cpu->linear_forward(cx.get(), cw.get(), cy.get(), n, in, out, accumulate);
    b.gpu->linear_forward(gx.get(), gw.get(), gy.get(), n, in, out, accumulate);
    expect_close(gy.read(), cy.read(), 2e-6 * in + 1e-6, kBf16Round, "linear_forward y");
    EXPECT_TRUE(gy.guard_intact());
  }
}

// dx = dy W (+ dx0): same bound with the inner dimension `out`.
TEST_P(CudaLinear, BackwardInputMatchesCpuWithAndWithoutAccumulate) {
  const auto [n, in, out] = GetParam();
  auto b = make_backends();
  std::mt19937 rng(200 + n * 7 + in);
  const auto dy = random_bf16(std::size_t(n) * out, -1, 1, rng);
  const auto w = random_bf16(std::size_t(out) * in, -1, 1, rng);
  const auto dx0 = random_bf16(std::size_t(n) * in, -1, 1, rng);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    const std::size_t nx = std::size_t(n) * in;
    Buffer cdy(*b.cpu, Kind::compute, dy.size(), dy), cw(*b.cpu, Kind::compute, w.size(), w);
    Buffer cdx(*b.cpu, Kind::compute, nx, accumulate ? dx0 : std::vector<float>(nx, 0.f));
    Buffer gdy(*b.gpu, Kind::compute, dy.size(), dy), gw(*b.gpu, Kind::compute, w.size(), w);
    Buffer gdx(*b.gpu, Kind::compute, nx, accumulate ? dx0 : std::vector<float>{});
    b.cpu->linear_backward_input(cdy.get(), cw.get(), cdx.get(), n, in, out, accumulate);
    b.gpu->linear_backward_input(gdy.get(), gw.get(), gdx.get(), n, in, out, accumulate);
    expect_close(gdx.read(), cdx.read(), 2e-6 * out + 1e-6, kBf16Round, "linear_backward_input dx");
    EXPECT_TRUE(gdx.guard_intact());
  }
}

// dW += dy^T x in fp32 on both sides: only summation order differs (n terms of |.| <= 1).
TEST_P(CudaLinear, BackwardWeightAccumulatesInFp32) {
  const auto [n, in, out] = GetParam();
  auto b = make_backends();
  std::mt19937 rng(300 + n * 7 + in);
  const auto dy = random_bf16(std::size_t(n) * out, -1, 1, rng);
  const auto x = random_bf16(std::size_t(n) * in, -1, 1, rng);
  const auto dw0 = random_f32(std::size_t(out) * in, -1, 1, rng);
  Buffer cdy(*b.cpu, Kind::compute, dy.size(), dy), cx(*b.cpu, Kind::compute, x.size(), x);
  Buffer cdw(*b.cpu, Kind::f32, dw0.size(), dw0);
  Buffer gdy(*b.gpu, Kind::compute, dy.size(), dy), gx(*b.gpu, Kind::compute, x.size(), x);
  Buffer gdw(*b.gpu, Kind::f32, dw0.size(), dw0);
  // Twice: the second call must add to the first.
  for (int rep = 0; rep < 2; ++rep) {
    b.cpu->linear_backward_weight(cdy.get(), cx.get(), cdw.f32(), n, in, out);
    b.gpu->linear_backward_weight(gdy.get(), gx.get(), gdw.f32(), n, in, out);
  }
  expect_close(gdw.read(), cdw.read(), 4e-6 * n + 1e-6, 1e-5, "linear_backward_weight dW");
  EXPECT_TRUE(gdw.guard_intact());
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaLinear,
                         ::testing::Values(LinearCase{64, 128, 96},    // tensor-core friendly
                                           LinearCase{37, 19, 23},     // odd: no 16-byte rows
                                           LinearCase{1, 8, 5},        // a single row
                                           LinearCase{300, 512, 384}), // several tiles
                         [](const auto& info) {
                           return "n" + std::to_string(info.param.n) + "_in" + std::to_string(info.param.in) +
                                  "_out" + std::to_string(info.param.out);
                         });

TEST(CudaLinearEdge, EmptyInnerDimensionGivesZerosOrLeavesOutput) {
  auto gpu = make_backend("cuda");
  const int n = 4, out = 6;
  Buffer x(*gpu, Kind::compute, 1, {0.f}), w(*gpu, Kind::compute, 1, {0.f});
  Buffer y(*gpu, Kind::compute, n * out);  // NaN
  gpu->linear_forward(x.get(), w.get(), y.get(), n, 0, out, false);
  expect_close(y.read(), std::vector<float>(n * out, 0.f), 0, 0, "in = 0 overwrites with 0");
  std::vector<float> ones(n * out, 1.f);
  Buffer y1(*gpu, Kind::compute, n * out, ones);
  gpu->linear_forward(x.get(), w.get(), y1.get(), n, 0, out, true);
  expect_close(y1.read(), ones, 0, 0, "in = 0 with accumulate leaves y");
  EXPECT_THROW(gpu->linear_forward(x.get(), w.get(), y.get(), -1, 2, 2, false), Error);
}

// ---- RMSNorm ----------------------------------------------------------------------------

struct NormCase {
  int n, d;
};

class CudaRmsNorm : public ::testing::TestWithParam<NormCase> {};

// y rounds once (kBf16Round); rstd is fp32 on both sides: rsqrtf (2 ulp) and the order of
// the d-term sum of squares give at most ~(2 + d/8) * 2^-24 relative.
TEST_P(CudaRmsNorm, ForwardMatchesCpu) {
  const auto [n, d] = GetParam();
  auto b = make_backends();
  std::mt19937 rng(400 + d);
  const auto x = random_bf16(std::size_t(n) * d, -2, 2, rng);
  const auto w = random_f32(d, 0.5f, 1.5f, rng);
  const float eps = 1e-5f;
  Buffer cx(*b.cpu, Kind::compute, x.size(), x), cw(*b.cpu, Kind::f32, d, w);
  Buffer cy(*b.cpu, Kind::compute, x.size(), std::vector<float>(x.size(), 0.f)), cr(*b.cpu, Kind::f32, n);
  Buffer gx(*b.gpu, Kind::compute, x.size(), x), gw(*b.gpu, Kind::f32, d, w);
  Buffer gy(*b.gpu, Kind::compute, x.size()), gr(*b.gpu, Kind::f32, n);
  b.cpu->rmsnorm_forward(cx.get(), cw.f32(), cy.get(), cr.f32(), n, d, eps);
  b.gpu->rmsnorm_forward(gx.get(), gw.f32(), gy.get(), gr.f32(), n, d, eps);
  expect_close(gr.read(), cr.read(), 0, 2e-6 + d * 1e-8, "rmsnorm rstd");
  expect_close(gy.read(), cy.read(), 1e-6, kBf16Round + 1e-5, "rmsnorm y");
  EXPECT_TRUE(gy.guard_intact());
  EXPECT_TRUE(gr.guard_intact());
}

// dx rounds once; before rounding it is r*w*dy - x*c, whose terms are <= ~4 here, so fp32
// differences stay below 4e-5 absolute. dw is fp32 summed over n rows of |term| <= ~4.
TEST_P(CudaRmsNorm, BackwardMatchesCpuAndAccumulatesWeightGradient) {
  const auto [n, d] = GetParam();
  auto b = make_backends();
  std::mt19937 rng(500 + d);
  const auto x = random_bf16(std::size_t(n) * d, -2, 2, rng);
  const auto dy = random_bf16(std::size_t(n) * d, -1, 1, rng);
  const auto dx0 = random_bf16(std::size_t(n) * d, -1, 1, rng);
  const auto w = random_f32(d, 0.5f, 1.5f, rng);
  const auto dw0 = random_f32(d, -1, 1, rng);
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    Buffer cx(*b.cpu, Kind::compute, x.size(), x), cw(*b.cpu, Kind::f32, d, w), cr(*b.cpu, Kind::f32, n);
    Buffer cy(*b.cpu, Kind::compute, x.size(), std::vector<float>(x.size(), 0.f));
    Buffer cdy(*b.cpu, Kind::compute, dy.size(), dy), cdw(*b.cpu, Kind::f32, d, dw0);
    Buffer cdx(*b.cpu, Kind::compute, x.size(), accumulate ? dx0 : std::vector<float>(x.size(), 0.f));
    b.cpu->rmsnorm_forward(cx.get(), cw.f32(), cy.get(), cr.f32(), n, d, 1e-6f);
    b.cpu->rmsnorm_backward(cdy.get(), cx.get(), cw.f32(), cr.f32(), cdx.get(), cdw.f32(), n, d, accumulate);

    // The GPU gets the cpu's rstd, so that only the backward is compared.
    Buffer gx(*b.gpu, Kind::compute, x.size(), x), gw(*b.gpu, Kind::f32, d, w), gr(*b.gpu, Kind::f32, n, cr.read());
    Buffer gdy(*b.gpu, Kind::compute, dy.size(), dy), gdw(*b.gpu, Kind::f32, d, dw0);
    Buffer gdx(*b.gpu, Kind::compute, x.size(), accumulate ? dx0 : std::vector<float>{});
    b.gpu->rmsnorm_backward(gdy.get(), gx.get(), gw.f32(), gr.f32(), gdx.get(), gdw.f32(), n, d, accumulate);
    expect_close(gdx.read(), cdx.read(), 4e-5, kBf16Round, "rmsnorm dx");
    expect_close(gdw.read(), cdw.read(), 4e-6 * n + 1e-6, 1e-5, "rmsnorm dw");
    EXPECT_TRUE(gdx.guard_intact());
    EXPECT_TRUE(gdw.guard_intact());
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaRmsNorm,
                         ::testing::Values(NormCase{33, 96}, NormCase{5, 1000}, NormCase{300, 64},
                                           NormCase{1, 4096}),
                         [](const auto& info) {
                           return "n" + std::to_string(info.param.n) + "_d" + std::to_string(info.param.d);
                         });

// ---- RoPE -------------------------------------------------------------------------------

struct RopeCase {
  int batch, seq, heads, head_dim, pos0;
  float theta;
};

class CudaRope : public ::testing::TestWithParam<RopeCase> {};

// Both backends take the angle pos * theta^(-2i/hd) in double and round cos/sin to fp32,
// so they rotate by the same fp32 cos/sin; what remains is one bf16 rounding of each
// output (kBf16Round) and fp32 rounding of a*c - b*s (1e-6 for |x| <= 1).
TEST_P(CudaRope, BothDirectionsMatchCpu) {
  const RopeCase c = GetParam();
  auto b = make_backends();
  std::mt19937 rng(600 + c.head_dim + c.pos0);
  const std::size_t n = std::size_t(c.batch) * c.seq * c.heads * c.head_dim;
  const auto x = random_bf16(n, -1, 1, rng);
  const double atol = 1e-6;
  for (bool inverse : {false, true}) {
    SCOPED_TRACE(inverse ? "inverse" : "forward");
    Buffer cx(*b.cpu, Kind::compute, n, x), gx(*b.gpu, Kind::compute, n, x);
    b.cpu->rope(cx.get(), c.batch, c.seq, c.heads, c.head_dim, c.pos0, c.theta, inverse);
    b.gpu->rope(gx.get(), c.batch, c.seq, c.heads, c.head_dim, c.pos0, c.theta, inverse);
    expect_close(gx.read(), cx.read(), atol, kBf16Round, "rope");
    EXPECT_TRUE(gx.guard_intact());
  }
}

// inverse(forward(x)) = x up to two bf16 roundings of values <= sqrt(2).
TEST_P(CudaRope, InverseUndoesForward) {
  const RopeCase c = GetParam();
  auto gpu = make_backend("cuda");
  std::mt19937 rng(700 + c.head_dim);
  const std::size_t n = std::size_t(c.batch) * c.seq * c.heads * c.head_dim;
  const auto x = random_bf16(n, -1, 1, rng);
  Buffer gx(*gpu, Kind::compute, n, x);
  gpu->rope(gx.get(), c.batch, c.seq, c.heads, c.head_dim, c.pos0, c.theta, false);
  gpu->rope(gx.get(), c.batch, c.seq, c.heads, c.head_dim, c.pos0, c.theta, true);
  expect_close(gx.read(), x, 3 * kBf16Round * std::sqrt(2.0), 0, "rope round trip");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaRope,
                         ::testing::Values(RopeCase{2, 17, 3, 64, 0, 10000.f}, RopeCase{1, 9, 2, 128, 3000, 500000.f},
                                           RopeCase{3, 4, 5, 6, 7, 10000.f}),
                         [](const auto& info) {
                           return "hd" + std::to_string(info.param.head_dim) + "_pos" + std::to_string(info.param.pos0);
                         });

TEST(CudaRopeEdge, RejectsOddHeadDim) {
  auto gpu = make_backend("cuda");
  Buffer x(*gpu, Kind::compute, 15, std::vector<float>(15, 0.f));
  EXPECT_THROW(gpu->rope(x.get(), 1, 1, 3, 5, 0, 10000.f, false), Error);
}

// ---- SwiGLU -----------------------------------------------------------------------------

// Each output is an fp32 expression rounded once: kBf16Round plus ~1e-5 for expf and
// operation order; |g| <= 6 keeps every term below ~6.
TEST(CudaSwiGlu, ForwardAndBackwardMatchCpu) {
  auto b = make_backends();
  std::mt19937 rng(800);
  const std::size_t n = 100003;
  const auto g = random_bf16(n, -6, 6, rng), u = random_bf16(n, -2, 2, rng), da = random_bf16(n, -1, 1, rng);
  Buffer cg(*b.cpu, Kind::compute, n, g), cu(*b.cpu, Kind::compute, n, u), cda(*b.cpu, Kind::compute, n, da);
  Buffer ca(*b.cpu, Kind::compute, n, std::vector<float>(n, 0.f));
  Buffer cdg(*b.cpu, Kind::compute, n, std::vector<float>(n, 0.f)), cdu(*b.cpu, Kind::compute, n, std::vector<float>(n, 0.f));
  Buffer gg(*b.gpu, Kind::compute, n, g), gu(*b.gpu, Kind::compute, n, u), gda(*b.gpu, Kind::compute, n, da);
  Buffer ga(*b.gpu, Kind::compute, n), gdg(*b.gpu, Kind::compute, n), gdu(*b.gpu, Kind::compute, n);
  b.cpu->swiglu_forward(cg.get(), cu.get(), ca.get(), n);
  b.gpu->swiglu_forward(gg.get(), gu.get(), ga.get(), n);
  b.cpu->swiglu_backward(cda.get(), cg.get(), cu.get(), cdg.get(), cdu.get(), n);
  b.gpu->swiglu_backward(gda.get(), gg.get(), gu.get(), gdg.get(), gdu.get(), n);
  expect_close(ga.read(), ca.read(), 1e-6, kBf16Round + 1e-5, "swiglu a");
  expect_close(gdg.read(), cdg.read(), 1e-6, kBf16Round + 1e-5, "swiglu dg");
  expect_close(gdu.read(), cdu.read(), 1e-6, kBf16Round + 1e-5, "swiglu du");
  EXPECT_TRUE(ga.guard_intact() && gdg.guard_intact() && gdu.guard_intact());
}

// ---- embedding --------------------------------------------------------------------------

// A gather copies bf16 values: exact. The scatter-add sums bf16-exact values in fp32; only
// the order of repeated tokens differs (<= count * 2^-24 relative).
TEST(CudaEmbedding, GatherAndScatterAddMatchCpu) {
  auto b = make_backends();
  std::mt19937 rng(900);
  const int vocab = 50, d = 72, n = 301;
  std::vector<std::int32_t> tokens(n);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  for (auto& t : tokens) t = pick(rng) % 9;  // few distinct tokens: many repeats
  tokens[0] = vocab - 1;
  const auto table = random_bf16(std::size_t(vocab) * d, -1, 1, rng);
  const auto dx = random_bf16(std::size_t(n) * d, -1, 1, rng);
  const auto dtable0 = random_f32(std::size_t(vocab) * d, -1, 1, rng);
  Buffer ctok(*b.cpu, tokens), ctable(*b.cpu, Kind::compute, table.size(), table);
  Buffer cxo(*b.cpu, Kind::compute, std::size_t(n) * d, std::vector<float>(std::size_t(n) * d, 0.f));
  Buffer cdx(*b.cpu, Kind::compute, dx.size(), dx), cdt(*b.cpu, Kind::f32, dtable0.size(), dtable0);
  Buffer gtok(*b.gpu, tokens), gtable(*b.gpu, Kind::compute, table.size(), table);
  Buffer gxo(*b.gpu, Kind::compute, std::size_t(n) * d);
  Buffer gdx(*b.gpu, Kind::compute, dx.size(), dx), gdt(*b.gpu, Kind::f32, dtable0.size(), dtable0);
  b.cpu->embedding_forward(ctok.i32(), ctable.get(), cxo.get(), n, d);
  b.gpu->embedding_forward(gtok.i32(), gtable.get(), gxo.get(), n, d);
  b.cpu->embedding_backward(ctok.i32(), cdx.get(), cdt.f32(), n, d);
  b.gpu->embedding_backward(gtok.i32(), gdx.get(), gdt.f32(), n, d);
  expect_close(gxo.read(), cxo.read(), 0, 0, "embedding gather");
  expect_close(gdt.read(), cdt.read(), 1e-6 * n, 1e-6, "embedding scatter-add");
  EXPECT_TRUE(gxo.guard_intact() && gdt.guard_intact());
}

TEST(CudaEmbedding, NegativeTokenIsReportedAtTheNextSync) {
  auto gpu = make_backend("cuda");
  const int d = 8;
  Buffer tokens(*gpu, std::vector<std::int32_t>{0, 1, -3, 2});
  Buffer table(*gpu, Kind::compute, 3 * d, std::vector<float>(3 * d, 1.f));
  Buffer x(*gpu, Kind::compute, 4 * d);
  gpu->embedding_forward(tokens.i32(), table.get(), x.get(), 4, d);
  try {
    gpu->synchronize();
    FAIL() << "a negative token went unreported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token -3 at row 2"), std::string::npos) << e.what();
  }
  gpu->synchronize();  // reported once, then cleared
}

// ---- cross-entropy ----------------------------------------------------------------------

struct CeCase {
  int n, vocab;
};

class CudaCrossEntropy : public ::testing::TestWithParam<CeCase> {};

// nll is fp32 on both sides: logsumexp over V terms differs by summation order and expf,
// ~1e-6 + V * 2e-9 absolute. The gradient grad_scale*(p - onehot) rounds once to bf16; p
// inherits the lse difference as a relative error (same size).
TEST_P(CudaCrossEntropy, MatchesCpuWithIgnoredRows) {
  const auto [n, vocab] = GetParam();
  auto b = make_backends();
  std::mt19937 rng(1000 + vocab);
  const auto logits = random_bf16(std::size_t(n) * vocab, -4, 4, rng);
  std::vector<std::int32_t> targets(n);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  for (auto& t : targets) t = pick(rng);
  targets[1 % n] = -1;  // ignored
  if (n > 3) targets[3] = -100;
  const float grad_scale = 1.0f / float(n);
  const double nll_tol = 1e-6 + vocab * 2e-9;

  Buffer cl(*b.cpu, Kind::compute, logits.size(), logits), ct(*b.cpu, targets), cn(*b.cpu, Kind::f32, n);
  Buffer gl(*b.gpu, Kind::compute, logits.size(), logits), gt(*b.gpu, targets), gn(*b.gpu, Kind::f32, n);
  b.cpu->cross_entropy(cl.get(), ct.i32(), cn.f32(), n, vocab, grad_scale);
  b.gpu->cross_entropy(gl.get(), gt.i32(), gn.f32(), n, vocab, grad_scale);
  const auto nll = gn.read();
  expect_close(nll, cn.read(), nll_tol, 1e-6, "cross_entropy nll");
  expect_close(gl.read(), cl.read(), 1e-9, kBf16Round + nll_tol, "cross_entropy gradient");
  // Ignored rows: nll exactly 0 and an all-zero gradient row.
  const auto grad = gl.read();
  for (int r = 0; r < n; ++r) {
    if (targets[r] >= 0) continue;
    EXPECT_EQ(nll[r], 0.f) << "ignored row " << r;
    for (int j = 0; j < vocab; ++j) ASSERT_EQ(grad[std::size_t(r) * vocab + j], 0.f) << "ignored row " << r;
  }
  EXPECT_TRUE(gl.guard_intact() && gn.guard_intact());
}

// grad_scale = 0: loss only; the logits must come back untouched.
TEST_P(CudaCrossEntropy, LossOnlyLeavesLogitsUntouched) {
  const auto [n, vocab] = GetParam();
  auto b = make_backends();
  std::mt19937 rng(1100 + vocab);
  const auto logits = random_bf16(std::size_t(n) * vocab, -8, 8, rng);
  std::vector<std::int32_t> targets(n, vocab - 1);
  targets[0] = 0;
  Buffer cl(*b.cpu, Kind::compute, logits.size(), logits), ct(*b.cpu, targets), cn(*b.cpu, Kind::f32, n);
  Buffer gl(*b.gpu, Kind::compute, logits.size(), logits), gt(*b.gpu, targets), gn(*b.gpu, Kind::f32, n);
  b.cpu->cross_entropy(cl.get(), ct.i32(), cn.f32(), n, vocab, 0.f);
  b.gpu->cross_entropy(gl.get(), gt.i32(), gn.f32(), n, vocab, 0.f);
  expect_close(gn.read(), cn.read(), 1e-6 + vocab * 4e-9, 1e-6, "cross_entropy nll (loss only)");
  expect_close(gl.read(), logits, 0, 0, "logits untouched");
}

TEST(CudaCrossEntropyEdge, TargetOutsideVocabularyIsReported) {
  auto gpu = make_backend("cuda");
  const int vocab = 10;
  Buffer logits(*gpu, Kind::compute, 2 * vocab, std::vector<float>(2 * vocab, 0.f));
  Buffer targets(*gpu, std::vector<std::int32_t>{3, 10});
  Buffer nll(*gpu, Kind::f32, 2);
  gpu->cross_entropy(logits.get(), targets.i32(), nll.f32(), 2, vocab, 1.f);
  try {
    nll.read();
    FAIL() << "a target outside the vocabulary went unreported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target 10 at row 1"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaCrossEntropy,
                         ::testing::Values(CeCase{7, 32000}, CeCase{64, 50}, CeCase{5, 1}, CeCase{3, 4099}),
                         [](const auto& info) {
                           return "n" + std::to_string(info.param.n) + "_V" + std::to_string(info.param.vocab);
                         });

}  // namespace
}  // namespace btm::test
