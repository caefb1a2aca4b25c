#pragma once
// BTM ensembles: domain posteriors, mixtures, cached priors and top-k (ARCHITECTURE, Evaluation).
// Pure functions, no MPI; double precision, log space.
//
// ---- Definitions -----------------------------------------------------------------------
// One block of T targets x_0 .. x_{T-1} is scored on its own (its first input token is
// context, never a target). E experts; logp[j][t] = log p_j(x_t | x_<t), the expert's token
// log-probability. w[j][t] = P(j | x_<t) is the weight of expert j for target t.
//
// Posterior `exact` (Li et al. 2022, BTM, §4.1; Gururangan et al. 2022, DEMix, eq. 4-5):
//     log w[j][t] = log prior_j + sum_{s<t} logp[j][s]
//                   - logsumexp_k( log prior_k + sum_{s<t} logp[k][s] );
//     at t = 0 this is the prior. With it the mixture below is the exact Bayesian mixture
//     p(x_<=t) = sum_j prior_j prod_{s<=t} p_j(x_s | x_<s), taken one token at a time.
//
// Posterior `previous_token`: the rule of the released code. kernelmachine/demix,
//     fairseq/sequence_scorer.py, SequenceScorer.generate, branch `ensemble_weighted_average`
//     (the BTM release, hadasah/btm fairseq_cli/ensemble_eval_lm.py, calls the same scorer):
//       weights = model_probs[:, :, :-1]; weights[j] *= prior_j; weights /= sum_j(...)
//       weights = cat([beginning_weights, weights], -1)
//     i.e. the posterior uses only the likelihood of the previous token, not the prefix:
//       w[j][t] = prior_j p_j(x_{t-1} | x_<t-1) / sum_k prior_k p_k(x_{t-1} | x_<t-1),  t >= 1;
//       w[j][0] = uniform over the experts whose prior is not zero.
//     The release puts 1/E on every expert at t = 0 (`beginning_weights`, whether or not a
//     prior is given). With top-k the release still runs all E experts and so puts 1/E on
//     unselected ones too; btm never runs an unselected expert, so its t = 0 weights are
//     1/k over the selected ones (identical to the release without top-k).
//
// Mixture: log p(x_t) = logsumexp_j( log w[j][t] + logp[j][t] );
//     block NLL = -sum_t log p(x_t); perplexity = exp(sum of NLL / number of targets).
//
// Cached prior (released code: dynamic_eval_lm in fairseq_cli/ensemble_eval_lm.py with
//     --ensemble-type updating_prior on the valid split; its last exp_avg_posterior is then
//     passed to the test run as --precomputed-prior, see btm_shell_scripts/ensemble_eval.sh):
//     the valid blocks b = 1..N (N = eval.prior_sequences evenly spaced blocks, in order);
//     pi_0 = uniform. Each block gives one observation o_b = w[.][T-1], the posterior of the
//     block's last target under the prior pi_{b-1} (the release's
//     `expert_probs = weights[:, :, -1]`), computed with the estimation rule (eval.prior_rule,
//     average.posterior_rule), which is independent of the ensemble's own posterior rule:
//       previous_token (default; the release, whatever the ensemble): the release's weights
//         are always its previous-token posterior, so o_b[j] ∝ pi_{b-1}[j] p_j(x_{T-2} | ...):
//         one token's likelihood ratio moves the prior a little per block.
//       exact: o_b is the exact posterior after T-1 targets, ∝ pi_{b-1}[j] prod_s p_j(x_s):
//         a whole block's likelihood ratio (hundreds of nats) per block, so the EMA is fed
//         near one-hot observations and settles on one expert within a few blocks (weights
//         like 1 vs 1e-100); a sharper domain classifier, not the published estimator.
//     Then, as pandas `ewm(alpha=a, adjust=False).mean()` does:
//       pi_1 = o_1,   pi_b = (1 - a) pi_{b-1} + a o_b,   cached prior = pi_N,
//     with a = eval.prior_alpha (0.3 in the release). The EMA is seeded with the first
//     observation; uniform is only the prior the first block is scored under.
//     Floor: after every update each weight is raised to at least kPriorFloor and the prior
//     renormalised (so no weight ends below kPriorFloor / (1 + E kPriorFloor)). Without it a weight can underflow to exactly 0, and a zero prior is a
//     fixed point of the feedback (o_b[j] ∝ pi_{b-1}[j]): the expert could never come back,
//     and top-k could not rank it. 1e-6 is far above double underflow and far below any
//     weight that matters: it moves the mixture by at most E * 1e-6 of its probability mass
//     (< 1e-5 nats per token for E <= 8).
//     One difference: the release first averages o over each batch (2 sequences in its
//     scripts); btm takes one observation per block, so the prior does not depend on
//     eval.batch or on the number of ranks.
//
// Top-k: the k experts with the largest (cached) prior, ties to the lower expert index;
//     the prior is renormalised over them and the other experts are never run. k = 0 or
//     k >= E: all experts. (The release, --eval-topk, keeps the k largest with Python's
//     `sorted`, i.e. ties to the higher index, zeroes the rest and renormalises.) top-k with
//     a uniform prior ranks nothing and is refused.
#include <cstddef>
#include <string>
#include <vector>

namespace btm {

enum class PosteriorRule { exact, previous_token };

// "exact" | "previous_token"; otherwise throws naming `where` (e.g. "eval.ensembles[0].posterior").
PosteriorRule parse_posterior_rule(const std::string& name, const std::string& where);
std::string to_string(PosteriorRule rule);

// Per-expert token log-probabilities of one block: logp(j, t) = data[j * stride + t],
// j < experts, t < tokens.
struct BlockLogProbs {
  const float* data = nullptr;
  int experts = 0;
  int tokens = 0;
  std::size_t stride = 0;
  double at(int j, int t) const { return static_cast<double>(data[std::size_t(j) * stride + t]); }
};

// log(sum_i exp(x_i)); -inf when every x_i is -inf (or n == 0).
double logsumexp(const double* x, std::size_t n);

std::vector<double> uniform_prior(int experts);

// log w[j * T + t] = log P(j | x_<t) under `rule` (see the definitions above). `prior` has
// one non-negative entry per expert and is normalised here.
std::vector<double> log_posteriors(PosteriorRule rule, const std::vector<double>& prior, const BlockLogProbs& logp);

// The mixture's NLL summed over the block's targets; token_logp (optional, [T]) receives
// log p(x_t).
double mixture_nll(PosteriorRule rule, const std::vector<double>& prior, const BlockLogProbs& logp,
                   double* token_logp = nullptr);

// The floor of every cached prior weight (see "Floor" above).
inline constexpr double kPriorFloor = 1e-6;

// The cached prior's exponential moving average, fed one valid block at a time; `rule` is
// the estimation rule (previous_token: the released code).
class CachedPriorEstimator {
 public:
  CachedPriorEstimator(int experts, PosteriorRule rule, double alpha);
  void observe(const BlockLogProbs& logp);
  // pi_b after b observations (uniform before the first).
  const std::vector<double>& prior() const { return prior_; }
  int observations() const { return observations_; }

 private:
  PosteriorRule rule_;
  double alpha_;
  std::vector<double> prior_;
  int observations_ = 0;
};

// The indices (ascending) of the k experts with the largest prior; ties to the lower index.
// k <= 0 or k >= prior.size(): every expert.
std::vector<int> top_k_experts(const std::vector<double>& prior, int k);
// prior restricted to `keep` (in that order) and renormalised; uniform over `keep` when
// they all have zero prior.
std::vector<double> restrict_prior(const std::vector<double>& prior, const std::vector<int>& keep);

}  // namespace btm
