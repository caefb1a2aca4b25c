// The mix phase (BTX): one MoE model file per [[mix.models]] entry, mixed/<name>.h5 — the
// experts' FFNs as MoE experts, every other tensor their (weighted) average, a router per
// layer (random or domain centroids). A mixed file of the same architecture is kept.
#include <sstream>

#include "btm/averaging.hpp"
#include "btm/data/dataset.hpp"
#include "btm/data/split.hpp"
#include "btm/data/loader.hpp"
#include "btm/error.hpp"
#include "btm/log.hpp"
#include "btm/mixing.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/trainer.hpp"

namespace btm {

namespace {

std::string describe(const std::vector<MixedExpert>& experts, const std::vector<double>& weights) {
  std::ostringstream s;
  for (std::size_t j = 0; j < experts.size(); ++j) s << (j ? "," : "") << experts[j].name << ":" << weights[j];
  return s.str();
}

}  // namespace

void run_mix(const Deck& deck, const Comm& world) {
  if (deck.mix.models.empty()) {
    log_root("phase=mix status=skipped reason=no_models (the deck has no [[mix.models]])");
    return;
  }
  Dataset data(deck.train_data_file());
  const Forest forest = Forest::load(deck.forest_file());
  const std::vector<std::string> train_domains = train_domains_of(deck, data);
  auto backend = make_backend(deck.run.backend, {deck.run.blas_threads});
  const ModelConfig dense = resolve_model_config(deck, data);
  for (std::size_t i = 0; i < deck.mix.models.size(); ++i) {
    const MixModel& m = deck.mix.models[i];
    const std::string where = "mix.models[" + std::to_string(i) + "]";
    const std::vector<MixedExpert> experts = mix_experts(deck, m, where, forest, train_domains);
    const std::vector<double> weights = trunk_weights(m, experts, where);
    const ModelConfig config = moe_config(dense, m, static_cast<int>(experts.size()));
    config.validate();
    const std::filesystem::path file = deck.mixed_file(m.name);
    const std::string tag = "phase=mix model=" + m.name;
    if (model_is_complete(file)) {
      const h5::File f(file, h5::File::Mode::read);
      const ModelConfig in_file = read_model_config(f);
      std::string diff = in_file.architecture_differences(config);
      if (in_file.router_aux_loss_coef != config.router_aux_loss_coef || in_file.moe_aux_loss != config.moe_aux_loss ||
          in_file.moe_capacity_factor != config.moe_capacity_factor) {
        diff += std::string(diff.empty() ? "" : ", ") + "load balancing or capacity settings";
      }
      if (!diff.empty()) {
        throw Error(file.string() + " holds another mixed model than " + where + " describes (file vs deck: " + diff +
                    "); delete it (and " + deck.finetuned_file(m.name).string() + ") to mix again");
      }
      log_root(tag + " status=skipped reason=complete file=" + file.string());
      continue;
    }
    std::vector<std::filesystem::path> files;
    for (const auto& e : experts) files.push_back(e.file);
    ModelMeta meta{m.name, "mix", "mix(" + describe(experts, weights) + ")", "", to_toml(deck)};
    // The averaged dense model: the MoE's trunk, and (on every rank) the model whose hidden
    // states place the centroids.
    const bool centroid = m.router_init == "centroid";
    const ModelFile trunk = centroid || world.is_root() ? average_models(files, weights, meta) : ModelFile{};
    std::vector<std::vector<float>> routers;
    if (centroid) {
      routers = centroid_routers(trunk, experts, data, *backend, deck.mix.centroid_sequences, deck.eval.batch /* sequences per pass */, world);
    } else if (world.is_root()) {
      // Initialised on the host whatever the run's backend.
      auto host = make_backend("cpu", {1});
      routers = random_routers(config, *host, mix64(deck.run.seed ^ fnv1a64("router:" + m.name)));
    }
    if (world.is_root()) {
      ModelFile out{config, meta, trunk.tokenizer, assemble_moe_params(config, trunk, files, routers)};
      std::vector<std::string> expert_names;
      for (const auto& e : experts) expert_names.push_back(e.name);
      save_model(file, out, [&](h5::File& f) { f.write_strings("/mix/experts", expert_names); });
      std::string names;
      for (const auto& e : experts) names += (names.empty() ? "" : ",") + e.name;
      log_line(tag + " experts=" + names + " top_k=" + std::to_string(m.num_experts_per_tok) + " routing=" + m.routing +
               " router_init=" + m.router_init + " trunk_weights=" + describe(experts, weights) + " file=" + file.string());
    }
    world.barrier();
  }
}

}  // namespace btm
