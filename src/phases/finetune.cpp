// The finetune phase (BTX): each mixed model with finetune = true, trained data parallel on
// all ranks on the union of its experts' domains, with [finetune.train]; writes <name>.h5.
#include "btm/data/dataset.hpp"
#include "btm/error.hpp"
#include "btm/log.hpp"
#include "btm/mixing.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/trainer.hpp"

namespace btm {

PhaseStatus run_finetune(const Deck& deck, const Comm& world) { return run_finetune(deck, world, TrainControl{}); }

PhaseStatus run_finetune(const Deck& deck, const Comm& world, const TrainControl& control) {
  bool any = false;
  for (const auto& m : deck.mix.models) any = any || m.finetune;
  if (!any) {
    log_root("phase=finetune status=skipped reason=no_models (no [[mix.models]] with finetune = true)");
    return PhaseStatus::done;
  }
  Dataset data(deck.train_data_file());
  const Forest forest = Forest::load(deck.forest_file());
  const std::vector<std::string> train_domains = train_domains_of(deck, data);
  auto backend = make_backend(deck.run.backend, {deck.run.blas_threads});
  for (std::size_t i = 0; i < deck.mix.models.size(); ++i) {
    const MixModel& m = deck.mix.models[i];
    if (!m.finetune) continue;
    const std::string where = "mix.models[" + std::to_string(i) + "]";
    const std::filesystem::path mixed = deck.mixed_file(m.name);
    if (!model_is_complete(mixed)) {
      throw Error("finetune: " + where + " (\"" + m.name + "\") has no mixed model at " + mixed.string() +
                  "; run the mix phase first");
    }
    TrainJob job;
    job.phase = "finetune";
    job.name = m.name;
    job.file = deck.finetuned_file(m.name);
    job.domains = mixed_domains(mix_experts(deck, m, where, forest, train_domains));
    job.mixing = deck.finetune.mixing;
    job.valid_domains = job.domains;
    job.tokens = m.finetune_tokens > 0 ? m.finetune_tokens : deck.finetune.tokens;
    job.train = deck.finetune.train;
    {
      const h5::File f(mixed, h5::File::Mode::read);
      job.model = read_model_config(f);
    }
    job.train_experts = !deck.finetune.freeze_experts;
    auto start = [&] {
      StartPoint sp;
      sp.params = load_model(mixed).params;
      sp.parent = "mix:" + m.name;
      return sp;
    };
    if (train_model(deck, data, *backend, world, job, start, control) == TrainOutcome::interrupted) return PhaseStatus::interrupted;
  }
  return PhaseStatus::done;
}

}  // namespace btm
