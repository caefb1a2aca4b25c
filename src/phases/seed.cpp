// The seed phase: one dense LM on all domains, data parallel over every rank.
#include "btm/data/dataset.hpp"
#include "btm/phases.hpp"
#include "btm/train/trainer.hpp"

namespace btm {

PhaseStatus run_seed(const Deck& deck, const Comm& world) {
  Dataset data(deck.train_data_file());
  auto backend = make_backend(deck.run.backend, {deck.run.blas_threads});
  TrainJob job;
  job.phase = "seed";
  job.name = "seed";
  job.file = deck.seed_file();
  job.domains = train_domains_of(deck, data);
  job.mixing = deck.seed.mixing;
  job.valid_domains = job.domains;
  job.tokens = deck.seed.tokens;
  job.train = deck.seed.train;
  const auto outcome = train_model(deck, data, *backend, world, job, [] { return StartPoint{}; });
  return outcome == TrainOutcome::interrupted ? PhaseStatus::interrupted : PhaseStatus::done;
}

}  // namespace btm
