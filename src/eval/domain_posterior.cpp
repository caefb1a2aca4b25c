// The cached domain posterior of a set of experts on one domain's valid split.
#include "btm/eval/domain_posterior.hpp"

#include "btm/data/loader.hpp"
#include "btm/error.hpp"
#include "btm/eval/scoring.hpp"
#include "btm/h5.hpp"
#include "btm/model/model_file.hpp"

namespace btm {

std::vector<double> domain_posterior(const std::vector<std::filesystem::path>& files, const Dataset& data,
                                     const std::string& domain, Backend& backend, const Comm& comm,
                                     const DomainPosteriorOptions& options) {
  if (files.empty()) throw Error("domain posterior for \"" + domain + "\": no expert files");
  if (options.sequences < 0) throw Error("domain posterior: the number of sequences must be >= 0");
  int context = options.context;
  if (context <= 0) {
    h5::File f = h5::open_for_read(files.front(), "an expert model file");
    context = read_model_config(f).max_position_embeddings;
  }
  data.require({domain}, "valid");
  const int E = static_cast<int>(files.size());
  ExpertTask task{domain, "valid",
                  spaced_blocks(data.num_blocks(domain, "valid", context), static_cast<std::uint64_t>(options.sequences)),
                  {}};
  for (int j = 0; j < E; ++j) task.experts.push_back(j);
  ModelPool pool(backend, data.vocab_size(), context);
  const auto logp = score_expert_tasks(pool, files, {task}, data, options.batch, comm);
  CachedPriorEstimator est(E, options.rule, options.alpha);
  const std::size_t stride = task.blocks.size() * std::size_t(context);
  for (std::size_t b = 0; b < task.blocks.size(); ++b) est.observe({logp[0].data() + b * context, E, context, stride});
  return est.prior();
}

std::vector<double> domain_posterior(const Deck& deck, const Dataset& data, Backend& backend,
                                     const std::vector<std::filesystem::path>& files, const std::string& domain,
                                     const Comm& comm, int sequences) {
  DomainPosteriorOptions o;
  o.sequences = sequences > 0 ? sequences : deck.average_posterior_sequences();
  o.alpha = deck.eval.prior_alpha;
  o.batch = deck.eval.batch;
  o.context = deck.model.max_position_embeddings;
  o.rule = parse_posterior_rule(deck.average.posterior_rule, "average.posterior_rule");
  return domain_posterior(files, data, domain, backend, comm, o);
}

}  // namespace btm
