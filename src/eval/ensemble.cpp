// Ensemble maths; the definitions are in include/btm/eval/ensemble.hpp.
#include "btm/eval/ensemble.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "btm/error.hpp"

namespace btm {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// log of the normalised prior; throws on a negative, non-finite or all-zero prior.
std::vector<double> log_prior_of(const std::vector<double>& prior, int experts) {
  if (static_cast<int>(prior.size()) != experts) {
    throw Error("ensemble: the prior has " + std::to_string(prior.size()) + " entries for " +
                std::to_string(experts) + " experts");
  }
  double total = 0;
  for (double p : prior) {
    if (!(p >= 0) || !std::isfinite(p)) throw Error("ensemble: prior entries must be finite and >= 0");
    total += p;
  }
  if (!(total > 0)) throw Error("ensemble: the prior is zero for every expert");
  std::vector<double> out(prior.size());
  for (std::size_t j = 0; j < prior.size(); ++j) out[j] = prior[j] > 0 ? std::log(prior[j] / total) : kNegInf;
  return out;
}

void check_block(const BlockLogProbs& lp) {
  if (lp.experts <= 0 || lp.tokens < 0 || (lp.tokens > 0 && !lp.data) || (lp.experts > 1 && lp.stride < std::size_t(lp.tokens))) {
    throw Error("ensemble: malformed block of log-probabilities");
  }
}

// Calls f(t, log_w) for every target t with log_w[j] = log P(j | x_<t) under `rule`.
template <class F>
void for_each_posterior(PosteriorRule rule, const std::vector<double>& log_prior, const BlockLogProbs& lp, F&& f) {
  const int E = lp.experts, T = lp.tokens;
  std::vector<double> w(E), a(E);
  if (rule == PosteriorRule::exact) {
    // a[j] = log prior_j + sum_{s<t} logp[j][s]: the unnormalised log posterior.
    a = log_prior;
    for (int t = 0; t < T; ++t) {
      const double z = logsumexp(a.data(), E);
      for (int j = 0; j < E; ++j) w[j] = a[j] - z;
      f(t, w);
      for (int j = 0; j < E; ++j) a[j] += lp.at(j, t);
    }
    return;
  }
  // previous_token: uniform over the prior's support at t = 0, then prior x previous token.
  int support = 0;
  for (double l : log_prior) support += l > kNegInf ? 1 : 0;
  for (int t = 0; t < T; ++t) {
    if (t == 0) {
      for (int j = 0; j < E; ++j) w[j] = log_prior[j] > kNegInf ? -std::log(double(support)) : kNegInf;
    } else {
      for (int j = 0; j < E; ++j) a[j] = log_prior[j] + lp.at(j, t - 1);
      const double z = logsumexp(a.data(), E);
      for (int j = 0; j < E; ++j) w[j] = a[j] - z;
    }
    f(t, w);
  }
}

}  // namespace

PosteriorRule parse_posterior_rule(const std::string& name, const std::string& where) {
  if (name == "exact") return PosteriorRule::exact;
  if (name == "previous_token") return PosteriorRule::previous_token;
  throw Error(where + " = \"" + name + "\": expected \"exact\" or \"previous_token\"");
}

std::string to_string(PosteriorRule rule) { return rule == PosteriorRule::exact ? "exact" : "previous_token"; }

double logsumexp(const double* x, std::size_t n) {
  double m = kNegInf;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  if (m == kNegInf) return kNegInf;
  if (std::isinf(m)) return m;  // +inf
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
  return m + std::log(s);
}

std::vector<double> uniform_prior(int experts) {
  return std::vector<double>(std::size_t(std::max(experts, 0)), experts > 0 ? 1.0 / experts : 0.0);
}

std::vector<double> log_posteriors(PosteriorRule rule, const std::vector<double>& prior, const BlockLogProbs& logp) {
  check_block(logp);
  const std::vector<double> lprior = log_prior_of(prior, logp.experts);
  std::vector<double> out(std::size_t(logp.experts) * logp.tokens);
  for_each_posterior(rule, lprior, logp, [&](int t, const std::vector<double>& w) {
    for (int j = 0; j < logp.experts; ++j) out[std::size_t(j) * logp.tokens + t] = w[j];
  });
  return out;
}

double mixture_nll(PosteriorRule rule, const std::vector<double>& prior, const BlockLogProbs& logp,
                   double* token_logp) {
  check_block(logp);
  const std::vector<double> lprior = log_prior_of(prior, logp.experts);
  std::vector<double> terms(logp.experts);
  double nll = 0;
  for_each_posterior(rule, lprior, logp, [&](int t, const std::vector<double>& w) {
    for (int j = 0; j < logp.experts; ++j) terms[j] = w[j] + logp.at(j, t);
    const double l = logsumexp(terms.data(), terms.size());
    if (token_logp) token_logp[t] = l;
    nll -= l;
  });
  return nll;
}

CachedPriorEstimator::CachedPriorEstimator(int experts, PosteriorRule rule, double alpha)
    : rule_(rule), alpha_(alpha), prior_(uniform_prior(experts)) {
  if (experts <= 0) throw Error("cached prior: no experts");
  if (!(alpha > 0 && alpha <= 1)) throw Error("cached prior: alpha must be in (0, 1], got " + std::to_string(alpha));
}

void CachedPriorEstimator::observe(const BlockLogProbs& logp) {
  check_block(logp);
  if (logp.experts != static_cast<int>(prior_.size())) {
    throw Error("cached prior: a block has " + std::to_string(logp.experts) + " experts, the prior " +
                std::to_string(prior_.size()));
  }
  if (logp.tokens == 0) return;
  const std::vector<double> lprior = log_prior_of(prior_, logp.experts);
  std::vector<double> last(logp.experts);
  for_each_posterior(rule_, lprior, logp, [&](int t, const std::vector<double>& w) {
    if (t == logp.tokens - 1) last = w;
  });
  // pandas ewm(adjust=False): seeded with the first observation; then the floor.
  double total = 0;
  for (int j = 0; j < logp.experts; ++j) {
    const double o = std::exp(last[j]);
    prior_[j] = std::max(observations_ == 0 ? o : (1 - alpha_) * prior_[j] + alpha_ * o, kPriorFloor);
    total += prior_[j];
  }
  for (double& p : prior_) p /= total;
  ++observations_;
}

std::vector<int> top_k_experts(const std::vector<double>& prior, int k) {
  std::vector<int> order(prior.size());
  std::iota(order.begin(), order.end(), 0);
  if (k <= 0 || k >= static_cast<int>(prior.size())) return order;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return prior[a] > prior[b]; });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<double> restrict_prior(const std::vector<double>& prior, const std::vector<int>& keep) {
  std::vector<double> out;
  double total = 0;
  for (int j : keep) {
    if (j < 0 || j >= static_cast<int>(prior.size())) throw Error("restrict_prior: expert index out of range");
    out.push_back(prior[j]);
    total += prior[j];
  }
  for (double& p : out) p = total > 0 ? p / total : 1.0 / double(out.size());
  return out;
}

}  // namespace btm
