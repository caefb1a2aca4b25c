// The seed phase: one dense LM on all domains, data parallel over every rank. With
// seed.init it starts from a finished model file (e.g. `btm import` of a pretrained model);
// with seed.tokens = 0 too, that model becomes the seed as is.
#include "btm/data/dataset.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "btm/log.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/trainer.hpp"

namespace btm {

namespace {

// The init model, checked against the deck's [model] and data.h5's tokenizer.
ModelFile load_init_model(const Deck& deck, const Dataset& data) {
  const std::filesystem::path& file = deck.seed.init;
  const std::string who = "seed.init = \"" + file.string() + "\"";
  if (!std::filesystem::exists(file)) throw Error(who + ": no such file (expected a finished btm model file, e.g. from btm import)");
  if (!h5::open_for_read(file, "a btm model file").exists("/config")) {
    throw Error(who + ": not a btm model file (no /config); expected a finished btm model file, e.g. from btm import");
  }
  if (!model_is_complete(file)) {
    throw Error(who + ": an unfinished training checkpoint; finish it or give a finished model file");
  }
  ModelFile init = load_model(file);
  const ModelConfig config = resolve_model_config(deck, data);
  if (const std::string diff = init.config.architecture_differences(config); !diff.empty()) {
    throw Error(who + " holds another architecture than the deck's [model] (file vs deck: " + diff +
                "); set [model] to the file's (btm import prints the keys; btm inspect shows them)");
  }
  if (init.tokenizer.model != data.tokenizer_model()) {
    throw Error(who + " was trained with another tokenizer than " + data.path().string() +
                "; prepare the data with the model's tokenizer (data.tokenizer = the tokenizer.model of the "
                "imported folder) and run the prepare phase again");
  }
  init.config = config;  // the deck's context (RoPE has no learned positions)
  return init;
}

}  // namespace

PhaseStatus run_seed(const Deck& deck, const Comm& world) {
  Dataset data(deck.train_data_file());
  if (!deck.seed.init.empty() && deck.seed.tokens == 0) {
    // The init model is the seed: written once as a finished checkpoint of zero steps.
    ModelFile init = load_init_model(deck, data);
    const bool present = std::filesystem::exists(deck.seed_file());
    world.barrier();  // every rank has looked before rank 0 writes the file
    if (present) {
      const std::string file = deck.seed_file().string();
      if (!model_is_complete(deck.seed_file())) {
        throw Error(file + " is an interrupted training checkpoint; seed.tokens = 0 would replace it with " +
                    deck.seed.init.string() + ": delete it, or give seed.tokens to finish it");
      }
      const ModelFile done = load_model(deck.seed_file());
      if (done.meta.parent != deck.seed.init.string() || done.params != init.params) {
        throw Error(file + " is another seed than seed.init = \"" + deck.seed.init.string() + "\" (its parent: \"" +
                    done.meta.parent + "\"); delete it to make the init model the seed");
      }
      if (world.is_root()) log_line("phase=seed model=seed status=skipped reason=complete file=" + file);
      return PhaseStatus::done;
    }
    if (world.is_root()) {
      Checkpoint seed;
      seed.model.config = init.config;
      seed.model.params = std::move(init.params);
      seed.model.meta = {"seed", "seed", deck.seed.init.string(), "", to_toml(deck)};
      seed.model.tokenizer = {data.tokenizer_model(), data.vocab_size(), data.bos_id(), data.eos_id()};
      seed.state.cursor_domains = train_domains_of(deck, data);
      seed.state.complete = true;
      save_checkpoint(deck.seed_file(), seed);
      log_line("phase=seed model=seed status=done init=" + deck.seed.init.string() + " tokens=0 file=" +
               deck.seed_file().string());
    }
    world.barrier();
    return PhaseStatus::done;
  }
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
  auto start = [&] {
    StartPoint sp;
    if (deck.seed.init.empty()) return sp;  // fresh initialisation
    sp.params = load_init_model(deck, data).params;
    sp.parent = deck.seed.init.string();
    return sp;
  };
  const auto outcome = train_model(deck, data, *backend, world, job, start);
  return outcome == TrainOutcome::interrupted ? PhaseStatus::interrupted : PhaseStatus::done;
}

}  // namespace btm
