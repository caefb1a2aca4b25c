#pragma once
// The cached domain posterior of a set of experts on one domain (ARCHITECTURE, Evaluation), for
// the phases that weight experts by it: posterior-weighted averages (average phase) and
// experts.init = "posterior_average" (experts phase).
//
// The weights are the cached prior of btm/eval/ensemble.hpp: every expert scores the first
// `sequences` evenly spaced blocks of the domain's valid split, and the exponential moving
// average of the end-of-block posteriors (estimation rule `rule`, floored) is returned, in
// the order of `files`.
// Collective over `comm` and nothing else (it may be one expert group's communicator): the
// experts are spread over the ranks of `comm` as on the evaluation grid.
#include <filesystem>
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/config.hpp"
#include "btm/data/dataset.hpp"
#include "btm/eval/ensemble.hpp"
#include "btm/ops/backend.hpp"

namespace btm {

struct DomainPosteriorOptions {
  int sequences = 32;  // valid blocks (0: all)
  double alpha = 0.3;  // EMA rate
  PosteriorRule rule = PosteriorRule::previous_token;  // estimation rule
  int batch = 8;       // sequences per forward pass
  int context = 0;     // block length; 0: the first model's max_position_embeddings
};

std::vector<double> domain_posterior(const std::vector<std::filesystem::path>& files, const Dataset& data,
                                     const std::string& domain, Backend& backend, const Comm& comm,
                                     const DomainPosteriorOptions& options);

// The deck's settings, from [average] and [eval] only (never from [[eval.ensembles]], so
// their order cannot change a merged model): rule = average.posterior_rule, alpha =
// eval.prior_alpha, batch = eval.batch, context = model.max_position_embeddings, and
// `sequences` blocks (0: Deck::average_posterior_sequences()). The average phase passes 0;
// experts.init = "posterior_average" passes experts.posterior_sequences.
std::vector<double> domain_posterior(const Deck& deck, const Dataset& data, Backend& backend,
                                     const std::vector<std::filesystem::path>& files, const std::string& domain,
                                     const Comm& comm, int sequences = 0);

}  // namespace btm
