// The baseline phase: the compute-matched dense LM — the seed continued on the balanced
// mixture for as many tokens as all experts together, on all ranks — so that every
// comparison in the eval table is at equal training compute.
#include "btm/data/dataset.hpp"
#include "btm/expert_training.hpp"
#include "btm/forest.hpp"
#include "btm/log.hpp"
#include "btm/phases.hpp"
#include "btm/plan.hpp"

namespace btm {

PhaseStatus run_baseline(const Deck& deck, const Comm& world) {
  if (!deck.baseline.enabled) {
    log_root("phase=baseline status=skipped reason=disabled");
    return PhaseStatus::done;
  }
  Dataset data(deck.train_data_file());
  auto backend = make_backend(deck.run.backend, {deck.run.blas_threads});
  TrainJob job;
  job.phase = "baseline";
  job.name = "baseline";
  job.file = deck.baseline_file();
  job.domains = train_domains_of(deck, data);
  job.mixing = deck.baseline.mixing;
  job.valid_domains = job.domains;
  // Compute-matched to the whole forest: the experts forest.h5 holds (earlier runs' too) and
  // those of this deck not registered yet.
  const std::vector<std::string> in_forest = Forest::load(deck.forest_file()).names();
  const auto matched = baseline_matched_experts(in_forest, expert_names_of(deck, data));
  job.tokens = baseline_tokens(deck, matched.size());
  if (deck.baseline.tokens == 0) {
    log_root("phase=baseline compute_matched_experts=" + std::to_string(matched.size()) +
             " in_forest=" + std::to_string(in_forest.size()) + " tokens=" + std::to_string(job.tokens));
  }
  job.train = deck.baseline.train;
  // Branched like each expert (same optimizer policy), so only the data differs.
  auto start = [&] { return branch_from_seed(deck, "the baseline"); };
  const auto outcome = train_model(deck, data, *backend, world, job, start);
  return outcome == TrainOutcome::interrupted ? PhaseStatus::interrupted : PhaseStatus::done;
}

}  // namespace btm
