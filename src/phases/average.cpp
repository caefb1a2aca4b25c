// The average phase: parameter averages of the forest's experts — uniform, explicit
// weights from the deck, and posterior-weighted per evaluation domain (weights = the
// cached domain posterior on that domain's valid split).
#include <algorithm>
#include <sstream>

#include "btm/averaging.hpp"
#include "btm/data/dataset.hpp"
#include "btm/error.hpp"
#include "btm/eval/domain_posterior.hpp"
#include "btm/expert_training.hpp"
#include "btm/forest.hpp"
#include "btm/log.hpp"
#include "btm/phases.hpp"
#include "btm/train/stop_signal.hpp"

namespace btm {

namespace {

std::string describe(const std::vector<std::string>& names, const std::vector<double>& w) {
  std::ostringstream s;
  for (std::size_t j = 0; j < names.size(); ++j) s << (j ? "," : "") << names[j] << ":" << w[j];
  return s.str();
}

void write_average(const Deck& deck, const std::string& name, const std::vector<std::filesystem::path>& files,
                   const std::vector<std::string>& names, const std::vector<double>& weights) {
  ModelMeta meta{name, "average", "average(" + describe(names, weights) + ")", "", to_toml(deck)};
  save_model(deck.average_file(name), average_models(files, weights, meta));
  log_line("phase=average model=" + name + " weights=" + describe(names, weights) + " file=" +
           deck.average_file(name).string());
}

}  // namespace

PhaseStatus run_average(const Deck& deck, const Comm& world) {
  Dataset data(deck.train_data_file());
  const Forest forest = forest_in_deck_order(deck, data, world);
  if (forest.experts().empty()) {
    throw Error("the average phase needs experts in " + deck.forest_file().string() + "; run the experts phase first");
  }
  std::vector<std::filesystem::path> files;
  std::vector<std::string> names;
  for (const auto& e : forest.experts()) {
    files.push_back(finished_expert_file(forest, e));
    names.push_back(e.name);
  }
  // Uniform and explicit averages: rank 0 (I/O bound, one tensor at a time).
  if (world.is_root()) {
    if (deck.average.uniform) write_average(deck, "uniform", files, names, std::vector<double>(files.size(), 1.0));
    for (const auto& w : deck.average.weighted) {
      std::vector<double> weights(files.size(), 0.0);
      for (const auto& [expert, value] : w.weights) {
        const auto it = std::find(names.begin(), names.end(), expert);
        if (it == names.end()) {
          throw Error("average.weighted \"" + w.name + "\" names expert '" + expert + "', which is not in " +
                      deck.forest_file().string());
        }
        weights[it - names.begin()] = value;
      }
      write_average(deck, w.name, files, names, weights);
    }
  }
  if (deck.average.posterior) {
    // Posteriors need every expert's forward pass: computed over all ranks, domain by domain;
    // the average of domain i is then written by rank i % P.
    auto backend = make_backend(deck.run.backend, {deck.run.blas_threads});
    const std::vector<std::string> domains = eval_domains_of(deck, data);
    for (std::size_t i = 0; i < domains.size(); ++i) {
      // Each domain's posterior takes forward passes of every expert: a stop signal ends the
      // phase between two (a re-run recomputes the averages).
      if (world.any(StopSignals::requested())) {
        log_root("phase=average status=interrupted before=posterior-" + domains[i] + " (re-run to resume)");
        return PhaseStatus::interrupted;
      }
      const std::vector<double> w = domain_posterior(deck, data, *backend, files, domains[i], world,
                                                     deck.average_posterior_sequences());
      if (static_cast<int>(i % world.size()) == world.rank()) {
        write_average(deck, "posterior-" + domains[i], files, names, w);
      }
    }
  }
  return PhaseStatus::done;
}

}  // namespace btm
