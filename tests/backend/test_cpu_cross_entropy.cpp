// Fused softmax cross-entropy against double log-sum-exp and finite differences.
#include "backend_test_util.hpp"
#include "btm/error.hpp"

namespace btm::test {
namespace {

// Row nll = logsumexp(x) - x[t]; 0 for ignored rows (t < 0).
DVec nll_ref(const DVec& x, const std::vector<std::int32_t>& t, int n, int vocab) {
  DVec out(n, 0);
  for (int i = 0; i < n; ++i) {
    if (t[i] < 0) continue;
    double m = -INFINITY;
    for (int j = 0; j < vocab; ++j) m = std::max(m, x[i * vocab + j]);
    double s = 0;
    for (int j = 0; j < vocab; ++j) s += std::exp(x[i * vocab + j] - m);
    out[i] = m + std::log(s) - x[i * vocab + t[i]];
  }
  return out;
}

struct CeCase {
  int n, vocab;
  float offset;  // added to every logit: the result must not depend on it
};
class CpuCrossEntropy : public testing::TestWithParam<CeCase> {};

TEST_P(CpuCrossEntropy, LossMatchesDoubleAndGradientMatchesFiniteDifferences) {
  const auto [n, vocab, offset] = GetParam();
  auto be = cpu_backend();
  Vec logits = random_vec(std::size_t(n) * vocab, 61, -6, 6);
  for (auto& x : logits) x += offset;
  auto targets = random_tokens(n, vocab, 62);
  if (n > 2) targets[1] = -1;  // ignored row in the middle
  if (n > 3) targets[n - 1] = -100;
  const DVec want = nll_ref(to_double(logits), targets, n, vocab);

  // Loss only: the logits stay untouched.
  auto X = upload(*be, logits), T = upload(*be, targets), NLL = upload(*be, Vec(n, 9.0f));
  be->cross_entropy(X.get(), T.i32(), NLL.f32(), n, vocab, 0.0f);
  EXPECT_EQ(download(*be, X, logits.size()), logits);
  const Vec nll = download(*be, NLL, n);
  for (int i = 0; i < n; ++i) {
    EXPECT_NEAR(nll[i], want[i], 2e-6 * (1 + std::fabs(want[i]))) << "row " << i;
  }

  // Loss and gradient: logits become grad_scale * (softmax - onehot).
  const float grad_scale = 0.37f;
  auto NLL2 = upload(*be, Vec(n));
  be->cross_entropy(X.get(), T.i32(), NLL2.f32(), n, vocab, grad_scale);
  EXPECT_EQ(download(*be, NLL2, n), nll);
  const Vec grad = download(*be, X, logits.size());
  for (int i = 0; i < n; ++i) {
    if (targets[i] >= 0) continue;
    for (int j = 0; j < vocab; ++j) ASSERT_EQ(grad[i * vocab + j], 0.0f) << "ignored row " << i;
  }
  DVec xd = to_double(logits);
  auto loss = [&] {
    double s = 0;
    for (double v : nll_ref(xd, targets, n, vocab)) s += grad_scale * v;
    return s;
  };
  expect_gradient_matches("dlogits", grad, loss, xd, 400, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuCrossEntropy,
                         testing::Values(CeCase{1, 1, 0.0f}, CeCase{1, 2, 0.0f}, CeCase{5, 7, 0.0f},
                                         CeCase{9, 1000, 0.0f}, CeCase{3, 8195, 0.0f},
                                         CeCase{4, 300, 1000.0f}, CeCase{4, 300, -1000.0f}),
                         [](const testing::TestParamInfo<CeCase>& i) {
                           const int off = int(i.param.offset);
                           return "n" + std::to_string(i.param.n) + "_v" +
                                  std::to_string(i.param.vocab) +
                                  (off == 0  ? ""
                                   : off > 0 ? "_shift_up"
                                             : "_shift_down");
                         });

TEST(CpuCrossEntropy, TargetOutsideVocabularyIsAnErrorAndNothingIsWritten) {
  auto be = cpu_backend();
  const int n = 4, vocab = 5;
  const Vec logits = random_vec(n * vocab, 1);
  const std::vector<std::int32_t> targets{0, 4, 5, 1};
  auto X = upload(*be, logits), T = upload(*be, targets), NLL = upload(*be, Vec(n, 3.0f));
  try {
    be->cross_entropy(X.get(), T.i32(), NLL.f32(), n, vocab, 1.0f);
    FAIL() << "expected btm::Error";
  } catch (const btm::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("row 2"), std::string::npos) << what;
    EXPECT_NE(what.find("target 5"), std::string::npos) << what;
  }
  EXPECT_EQ(download(*be, X, logits.size()), logits);
  EXPECT_EQ(download(*be, NLL, n), Vec(n, 3.0f));
}

TEST(CpuCrossEntropy, NaNLogitsGiveANaNLoss) {
  auto be = cpu_backend();
  Vec logits = random_vec(2 * 50, 1);
  logits[17] = std::nanf("");  // row 0, not the target
  const std::vector<std::int32_t> targets{3, 3};
  auto X = upload(*be, logits), T = upload(*be, targets), NLL = upload(*be, Vec(2));
  be->cross_entropy(X.get(), T.i32(), NLL.f32(), 2, 50, 0.0f);
  const Vec nll = download(*be, NLL, 2);
  EXPECT_TRUE(std::isnan(nll[0]));
  EXPECT_TRUE(std::isfinite(nll[1]));
}

TEST(CpuCrossEntropy, MinusInfinityLogitsAreProbabilityZero) {
  auto be = cpu_backend();
  const Vec logits{0.0f, -INFINITY, 0.0f, -INFINITY};
  const std::vector<std::int32_t> targets{0};
  auto X = upload(*be, logits), T = upload(*be, targets), NLL = upload(*be, Vec(1));
  be->cross_entropy(X.get(), T.i32(), NLL.f32(), 1, 4, 1.0f);
  EXPECT_NEAR(download(*be, NLL, 1)[0], std::log(2.0f), 1e-7);
  const Vec g = download(*be, X, 4);
  EXPECT_NEAR(g[0], -0.5f, 1e-7);
  EXPECT_EQ(g[1], 0.0f);
  EXPECT_NEAR(g[2], 0.5f, 1e-7);
  EXPECT_EQ(g[3], 0.0f);
}

}  // namespace
}  // namespace btm::test
