// Ensemble maths against brute-force references computed in probability space, on the
// token log-probabilities of tiny random Llama models (cpu backend).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "btm/error.hpp"
#include "btm/eval/ensemble.hpp"
#include "eval_fixture.hpp"
#include "model/tiny_model.hpp"

namespace {

using btm::BlockLogProbs;
using btm::PosteriorRule;

constexpr int E = 3;
constexpr int B = 4;  // blocks
constexpr int T = btm::test::kContext;

// logp[j][b*T + t] of three random experts on B random blocks.
struct Blocks {
  std::vector<float> logp;  // [E, B*T]
  BlockLogProbs block(int b) const { return {logp.data() + std::size_t(b) * T, E, T, std::size_t(B) * T}; }
};

const Blocks& blocks() {
  static const Blocks data = [] {
    Blocks out;
    const auto tokens = btm::test::random_tokens(B, T, btm::test::kVocab, 7);
    for (int j = 0; j < E; ++j) {
      const auto lp = btm::test::token_logp(btm::test::random_model("e" + std::to_string(j), "d", 300 + j), tokens, B, T);
      out.logp.insert(out.logp.end(), lp.begin(), lp.end());
    }
    return out;
  }();
  return data;
}

double p(const BlockLogProbs& lp, int j, int t) { return std::exp(lp.at(j, t)); }

// Bayesian mixture, directly: p_mix(x_<=t) = sum_j prior_j prod_{s<=t} p_j(x_s | x_<s).
std::vector<double> bayes_token_logp(const std::vector<double>& prior, const BlockLogProbs& lp) {
  std::vector<double> out;
  double prev = 1.0;  // p_mix of the empty prefix
  for (int t = 0; t < lp.tokens; ++t) {
    double joint = 0;
    for (int j = 0; j < lp.experts; ++j) {
      double prod = prior[j];
      for (int s = 0; s <= t; ++s) prod *= p(lp, j, s);
      joint += prod;
    }
    out.push_back(std::log(joint / prev));
    prev = joint;
  }
  return out;
}

// The released code's rule, as a direct loop in probability space.
std::vector<std::vector<double>> previous_token_weights(const std::vector<double>& prior, const BlockLogProbs& lp) {
  std::vector<std::vector<double>> w(lp.tokens, std::vector<double>(lp.experts));
  int support = 0;
  for (double x : prior) support += x > 0;
  for (int t = 0; t < lp.tokens; ++t) {
    double z = 0;
    for (int j = 0; j < lp.experts; ++j) {
      w[t][j] = t == 0 ? (prior[j] > 0 ? 1.0 / support : 0.0) : prior[j] * p(lp, j, t - 1);
      z += w[t][j];
    }
    for (int j = 0; j < lp.experts; ++j) w[t][j] /= z;
  }
  return w;
}

std::vector<std::vector<double>> exact_weights(const std::vector<double>& prior, const BlockLogProbs& lp) {
  std::vector<std::vector<double>> w(lp.tokens, std::vector<double>(lp.experts));
  for (int t = 0; t < lp.tokens; ++t) {
    double z = 0;
    for (int j = 0; j < lp.experts; ++j) {
      w[t][j] = prior[j];
      for (int s = 0; s < t; ++s) w[t][j] *= p(lp, j, s);
      z += w[t][j];
    }
    for (int j = 0; j < lp.experts; ++j) w[t][j] /= z;
  }
  return w;
}

const std::vector<double> kPrior = {0.5, 0.3, 0.2};

}  // namespace

TEST(Ensemble, ExactMixtureEqualsTheBayesianMixtureTokenByToken) {
  for (int b = 0; b < B; ++b) {
    const BlockLogProbs lp = blocks().block(b);
    std::vector<double> got(T);
    const double nll = btm::mixture_nll(PosteriorRule::exact, kPrior, lp, got.data());
    const auto want = bayes_token_logp(kPrior, lp);
    double sum = 0;
    for (int t = 0; t < T; ++t) {
      EXPECT_NEAR(got[t], want[t], 1e-9) << "block " << b << " token " << t;
      sum -= want[t];
    }
    EXPECT_NEAR(nll, sum, 1e-9);
  }
}

TEST(Ensemble, ExactPosteriorStartsAtThePriorAndFollowsTheLikelihood) {
  const BlockLogProbs lp = blocks().block(1);
  const auto lw = btm::log_posteriors(PosteriorRule::exact, kPrior, lp);
  const auto want = exact_weights(kPrior, lp);
  for (int j = 0; j < E; ++j) {
    EXPECT_NEAR(std::exp(lw[std::size_t(j) * T]), kPrior[j], 1e-12);
    for (int t = 0; t < T; ++t) EXPECT_NEAR(std::exp(lw[std::size_t(j) * T + t]), want[t][j], 1e-9);
  }
  // The experts genuinely disagree, so this test can tell rules apart.
  EXPECT_GT(std::abs(want[T - 1][0] - kPrior[0]), 1e-3);
}

TEST(Ensemble, PreviousTokenRuleMatchesADirectLoop) {
  for (int b = 0; b < B; ++b) {
    const BlockLogProbs lp = blocks().block(b);
    const auto w = previous_token_weights(kPrior, lp);
    std::vector<double> got(T);
    btm::mixture_nll(PosteriorRule::previous_token, kPrior, lp, got.data());
    const auto lw = btm::log_posteriors(PosteriorRule::previous_token, kPrior, lp);
    for (int t = 0; t < T; ++t) {
      double mix = 0;
      for (int j = 0; j < E; ++j) {
        mix += w[t][j] * p(lp, j, t);
        EXPECT_NEAR(std::exp(lw[std::size_t(j) * T + t]), w[t][j], 1e-12);
      }
      EXPECT_NEAR(got[t], std::log(mix), 1e-9) << "block " << b << " token " << t;
    }
  }
  // t = 0 is uniform over the prior's support, whatever the prior.
  const auto lw = btm::log_posteriors(PosteriorRule::previous_token, {0.7, 0.0, 0.3}, blocks().block(0));
  EXPECT_NEAR(std::exp(lw[0]), 0.5, 1e-12);
  EXPECT_EQ(std::exp(lw[T]), 0.0);
  EXPECT_NEAR(std::exp(lw[2 * T]), 0.5, 1e-12);
}

TEST(Ensemble, RulesDiffer) {
  const BlockLogProbs lp = blocks().block(2);
  EXPECT_GT(std::abs(btm::mixture_nll(PosteriorRule::exact, kPrior, lp) -
                     btm::mixture_nll(PosteriorRule::previous_token, kPrior, lp)),
            1e-6);
}

TEST(Ensemble, CachedPriorMatchesADirectExponentialMovingAverage) {
  for (PosteriorRule rule : {PosteriorRule::exact, PosteriorRule::previous_token}) {
    const double alpha = 0.3;
    btm::CachedPriorEstimator est(E, rule, alpha);
    EXPECT_EQ(est.prior(), btm::uniform_prior(E));
    std::vector<double> pi(E, 1.0 / E);
    for (int b = 0; b < B; ++b) {
      const BlockLogProbs lp = blocks().block(b);
      // Observation: the posterior at the block's last target, under the current prior.
      // Then the floor and renormalisation.
      const auto w = rule == PosteriorRule::exact ? exact_weights(pi, lp) : previous_token_weights(pi, lp);
      double sum = 0;
      for (int j = 0; j < E; ++j) {
        pi[j] = std::max(b == 0 ? w[T - 1][j] : (1 - alpha) * pi[j] + alpha * w[T - 1][j], btm::kPriorFloor);
        sum += pi[j];
      }
      for (double& x : pi) x /= sum;
      est.observe(lp);
    }
    EXPECT_EQ(est.observations(), B);
    double total = 0;
    for (int j = 0; j < E; ++j) {
      EXPECT_NEAR(est.prior()[j], pi[j], 1e-9) << btm::to_string(rule);
      total += est.prior()[j];
    }
    EXPECT_NEAR(total, 1.0, 1e-12);
  }
}

TEST(Ensemble, TopKKeepsTheLargestPriorsWithTiesToTheLowerIndex) {
  const std::vector<double> prior = {0.2, 0.3, 0.2, 0.3};
  EXPECT_EQ(btm::top_k_experts(prior, 1), (std::vector<int>{1}));
  EXPECT_EQ(btm::top_k_experts(prior, 2), (std::vector<int>{1, 3}));
  EXPECT_EQ(btm::top_k_experts(prior, 3), (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(btm::top_k_experts(prior, 0), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(btm::top_k_experts(prior, 9), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(btm::top_k_experts({0.1, 0.6, 0.3}, 2), (std::vector<int>{1, 2}));
  const auto r = btm::restrict_prior({0.1, 0.6, 0.3}, {1, 2});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_NEAR(r[0], 2.0 / 3, 1e-15);
  EXPECT_NEAR(r[1], 1.0 / 3, 1e-15);
  EXPECT_EQ(btm::restrict_prior({0.0, 0.0, 1.0}, {0, 1}), (std::vector<double>{0.5, 0.5}));
}

TEST(Ensemble, TopKMixtureEqualsTheMixtureOfTheSelectedExpertsAlone) {
  // Zero prior on expert 1 == leaving it out: the exact rule gives it weight 0 throughout.
  const BlockLogProbs lp = blocks().block(0);
  std::vector<float> two;
  for (int j : {0, 2}) {
    for (int t = 0; t < T; ++t) two.push_back(static_cast<float>(lp.at(j, t)));
  }
  for (PosteriorRule rule : {PosteriorRule::exact, PosteriorRule::previous_token}) {
    EXPECT_NEAR(btm::mixture_nll(rule, {0.6, 0.0, 0.4}, lp), btm::mixture_nll(rule, {0.6, 0.4}, {two.data(), 2, T, T}),
                1e-12);
  }
}

TEST(Ensemble, ASingleExpertEnsembleIsThatExpert) {
  const BlockLogProbs lp = blocks().block(3);
  const BlockLogProbs one{lp.data + 2 * lp.stride, 1, T, lp.stride};
  double want = 0;
  for (int t = 0; t < T; ++t) want -= lp.at(2, t);
  for (PosteriorRule rule : {PosteriorRule::exact, PosteriorRule::previous_token}) {
    EXPECT_NEAR(btm::mixture_nll(rule, {1.0}, one), want, 1e-12);
    btm::CachedPriorEstimator est(1, rule, 0.3);
    est.observe(one);
    EXPECT_NEAR(est.prior()[0], 1.0, 1e-15);
  }
}

TEST(Ensemble, IdenticalExpertsMixToTheExpert) {
  const BlockLogProbs lp = blocks().block(0);
  std::vector<float> same;
  for (int j = 0; j < 3; ++j) {
    for (int t = 0; t < T; ++t) same.push_back(static_cast<float>(lp.at(0, t)));
  }
  double want = 0;
  for (int t = 0; t < T; ++t) want -= lp.at(0, t);
  EXPECT_NEAR(btm::mixture_nll(PosteriorRule::exact, kPrior, {same.data(), 3, T, T}), want, 1e-12);
  EXPECT_NEAR(btm::mixture_nll(PosteriorRule::previous_token, kPrior, {same.data(), 3, T, T}), want, 1e-12);
}

TEST(Ensemble, LogSumExpHandlesInfinities) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> none = {-inf, -inf};
  EXPECT_EQ(btm::logsumexp(none.data(), 2), -inf);
  const std::vector<double> big = {1000.0, 1000.0, -inf};
  EXPECT_NEAR(btm::logsumexp(big.data(), 3), 1000.0 + std::log(2.0), 1e-12);
  EXPECT_EQ(btm::logsumexp(nullptr, 0), -inf);
}

TEST(Ensemble, LongBlocksStayFinite) {
  // 4096 targets at ~-5 nats each: the cumulative log-likelihoods reach -2e4, far past
  // what exp() can hold; the posterior must still be exact.
  const int n = 4096;
  std::vector<float> lp(2 * n);
  for (int t = 0; t < n; ++t) {
    lp[t] = -5.0f;
    lp[n + t] = -5.5f;
  }
  std::vector<double> tok(n);
  const double nll = btm::mixture_nll(PosteriorRule::exact, {0.5, 0.5}, {lp.data(), 2, n, std::size_t(n)}, tok.data());
  EXPECT_TRUE(std::isfinite(nll));
  EXPECT_NEAR(tok[n - 1], -5.0, 1e-9);  // the posterior has settled on expert 0
  btm::CachedPriorEstimator est(2, PosteriorRule::exact, 0.3);
  est.observe({lp.data(), 2, n, std::size_t(n)});
  EXPECT_NEAR(est.prior()[0], 1.0, 2 * btm::kPriorFloor);
  EXPECT_GT(est.prior()[1], 0.0);  // exp(-2048) underflows; the floor keeps the weight
}

// Blocks of n targets where expert 0 assigns `good` nats and expert 1 `bad` to every target
// (a domain expert against an off-domain one).
std::vector<float> two_experts(int n, float good, float bad) {
  std::vector<float> lp(2 * std::size_t(n));
  for (int t = 0; t < n; ++t) {
    lp[t] = good;
    lp[n + t] = bad;
  }
  return lp;
}

TEST(Ensemble, CachedPriorNeverUnderflowsToZeroAndAnExpertCanComeBack) {
  // 100 blocks of 128 targets, 2 nats per target between the experts: the exact posterior
  // of the off-domain expert after a block is exp(-254), so its EMA weight decays by 0.7
  // per block to below 1e-150 without the floor.
  const int n = 128;
  const auto lp = two_experts(n, -3.0f, -5.0f);
  for (PosteriorRule rule : {PosteriorRule::exact, PosteriorRule::previous_token}) {
    btm::CachedPriorEstimator est(2, rule, 0.3);
    for (int b = 0; b < 100; ++b) est.observe({lp.data(), 2, n, std::size_t(n)});
    EXPECT_GE(est.prior()[1], btm::kPriorFloor / (1 + 2 * btm::kPriorFloor)) << btm::to_string(rule);
    EXPECT_GT(est.prior()[0], 0.99) << btm::to_string(rule);
    // The domain changes: expert 1 is now the better one. From its floor it wins the prior back.
    const auto swapped = two_experts(n, -5.0f, -3.0f);
    for (int b = 0; b < 100; ++b) est.observe({swapped.data(), 2, n, std::size_t(n)});
    EXPECT_GT(est.prior()[1], 0.99) << btm::to_string(rule);
  }
}

TEST(Ensemble, PreviousTokenEstimateDoesNotCollapseOnAModestLikelihoodRatio) {
  // Expert 0 is better by 0.1 nats per token: over a 128-token block the exact posterior is
  // exp(12.7) : 1 for it, one token's ratio only exp(0.1) : 1. The released estimator (one
  // token per block) keeps both experts in the prior; the exact one settles on expert 0.
  const int n = 128;
  const auto lp = two_experts(n, -4.0f, -4.1f);
  btm::CachedPriorEstimator previous(2, PosteriorRule::previous_token, 0.3);
  btm::CachedPriorEstimator exact(2, PosteriorRule::exact, 0.3);
  for (int b = 0; b < 10; ++b) {
    previous.observe({lp.data(), 2, n, std::size_t(n)});
    exact.observe({lp.data(), 2, n, std::size_t(n)});
  }
  // previous_token: pi_b[0] / pi_b[1] grows by at most exp(0.1) per block.
  EXPECT_GT(previous.prior()[1], 0.2);
  EXPECT_LT(previous.prior()[1], 0.5);
  EXPECT_LT(exact.prior()[1], 1e-4);
}

TEST(Ensemble, BadInputsAreRefused) {
  const BlockLogProbs lp = blocks().block(0);
  try {
    btm::parse_posterior_rule("cumulative", "eval.ensembles[2].posterior");
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval.ensembles[2].posterior = \"cumulative\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("previous_token"), std::string::npos);
  }
  EXPECT_THROW(btm::mixture_nll(PosteriorRule::exact, {0.5, 0.5}, lp), btm::Error);       // 2 priors, 3 experts
  EXPECT_THROW(btm::mixture_nll(PosteriorRule::exact, {0.0, 0.0, 0.0}, lp), btm::Error);  // no mass
  EXPECT_THROW(btm::mixture_nll(PosteriorRule::exact, {-0.1, 0.6, 0.5}, lp), btm::Error);
  EXPECT_THROW(btm::CachedPriorEstimator(3, PosteriorRule::exact, 0.0), btm::Error);
  EXPECT_THROW(btm::CachedPriorEstimator(3, PosteriorRule::exact, 1.5), btm::Error);
  btm::CachedPriorEstimator est(2, PosteriorRule::exact, 0.3);
  EXPECT_THROW(est.observe(lp), btm::Error);  // 3 experts into a 2-expert prior
  EXPECT_THROW(btm::restrict_prior({0.5, 0.5}, {2}), btm::Error);
}
