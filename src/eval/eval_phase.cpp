// The eval phase of `btm run`: every model the earlier phases wrote, every ensemble of the
// deck, on every train and held-out domain; eval.h5 and a table on stdout. Always
// recomputed (cheap next to training); the atomic write replaces the previous eval.h5.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

#include "btm/error.hpp"
#include "btm/eval/evaluate.hpp"
#include "btm/expert_training.hpp"
#include "btm/forest.hpp"
#include "btm/log.hpp"
#include "btm/mixing.hpp"
#include "btm/model/model_file.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"

namespace btm {

namespace {

// A model file the eval phase may read: finished (an interrupted training checkpoint is
// not a model to report). Warns once when it is missing or unfinished.
bool usable(const std::filesystem::path& file, const std::string& what, bool warn_missing) {
  if (!std::filesystem::exists(file)) {
    if (warn_missing) warn_root("eval: no " + what + " (" + file.string() + "): that phase did not run; skipping it");
    return false;
  }
  if (!model_is_complete(file)) {
    warn_root("eval: " + file.string() + " is an unfinished training checkpoint; skipping " + what);
    return false;
  }
  return true;
}

}  // namespace

EvalPlan eval_plan_from_deck(const Deck& deck, const Dataset& data, SingleExperts single_experts) {
  EvalPlan plan;
  plan.train_domains = train_domains_of(deck, data);
  plan.heldout_domains = deck.data.heldout_domains;
  if (deck.clustering()) {
    // C-BTM: the corpus's training domains (data.h5), the held-out ones, then each cluster
    // (clustered.h5); routed ensembles use clusters.h5.
    plan.train_domains = deck.data.train_domains;
    if (plan.train_domains.empty()) {
      for (const auto& d : data.domains()) {
        if (std::find(plan.heldout_domains.begin(), plan.heldout_domains.end(), d) == plan.heldout_domains.end()) {
          plan.train_domains.push_back(d);
        }
      }
    }
    plan.cluster_domains = deck.cluster_domains();
    plan.clusters_file = deck.clusters_file();
  }
  plan.split = deck.eval.split;
  plan.context = deck.model.max_position_embeddings;
  plan.max_tokens_per_domain = deck.eval.max_tokens_per_domain;
  plan.prior_sequences = deck.eval.prior_sequences;
  plan.prior_alpha = deck.eval.prior_alpha;
  plan.prior_rule = deck.eval.prior_rule;
  plan.batch = deck.eval.batch;
  plan.single_experts = single_experts;

  if (usable(deck.seed_file(), "seed model", true)) plan.models.push_back({"seed", deck.seed_file(), {}});
  if (usable(deck.baseline_file(), "baseline model", deck.baseline.enabled)) {
    plan.models.push_back({"baseline", deck.baseline_file(), {}});
  }

  // BTX: each finetuned MoE model, and each mixed one before finetuning (mix.eval_mixed).
  for (const auto& m : deck.mix.models) {
    auto add_moe = [&](const std::string& method, const std::filesystem::path& file, const std::string& what) {
      if (!usable(file, what, true)) return;
      const h5::File f = h5::open_for_read(file, "a model file");
      const int experts = read_model_config(f).num_local_experts;
      plan.models.push_back({method, file, {}, mixed_expert_names(deck.mixed_file(m.name), experts)});
    };
    if (m.finetune) add_moe(m.name, deck.finetuned_file(m.name), "finetuned MoE model \"" + m.name + "\"");
    if (deck.mix.eval_mixed) add_moe(m.name + "-mixed", deck.mixed_file(m.name), "mixed model \"" + m.name + "\"");
  }

  // The deck's order whatever order the experts finished in (columns of the table).
  Forest forest = Forest::load(deck.forest_file());
  forest.order_as(expert_names_of(deck, data));
  if (forest.experts().empty()) {
    warn_root("eval: no experts in " + deck.forest_file().string() +
              ": the experts phase did not run; skipping the experts and the ensembles");
  } else {
    for (const auto& e : forest.experts()) {
      plan.experts.push_back({e.name, e.domain, finished_expert_file(forest, e)});
    }
    plan.ensembles = deck.eval.ensembles;
  }

  // The averages the deck asks for (files of averages it no longer lists are left out),
  // with the names the average phase gives them.
  if (deck.average.uniform && usable(deck.average_file("uniform"), "uniform average", true)) {
    plan.averages.push_back({"avg-uniform", deck.average_file("uniform"), {}});
  }
  for (const auto& w : deck.average.weighted) {
    if (usable(deck.average_file(w.name), "weighted average \"" + w.name + "\"", true)) {
      plan.averages.push_back({w.name, deck.average_file(w.name), {}});
    }
  }
  std::vector<std::string> missing;
  for (const auto& d : deck.average.posterior ? plan.domains() : std::vector<std::string>{}) {
    const auto file = deck.average_file("posterior-" + d);
    if (usable(file, "posterior average for " + d, false)) plan.averages.push_back({"avg-posterior", file, {d}});
    else missing.push_back(d);
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& d : missing) list += (list.empty() ? "" : ", ") + d;
    warn_root("eval: no posterior average for " + list + " (" + deck.average_file("posterior-<domain>").string() +
              "): the average phase did not write it; skipping avg-posterior there");
  }

  if (plan.models.empty() && plan.experts.empty() && plan.averages.empty()) {
    throw Error("eval: nothing to evaluate in " + deck.run.out_dir.string() + ": no " + deck.seed_file().filename().string() +
                ", " + deck.baseline_file().filename().string() + ", experts in " +
                deck.forest_file().filename().string() + " or averages; run the training phases first");
  }
  return plan;
}

void run_eval(const Deck& deck, const Comm& world, SingleExperts single_experts) {
  const auto t0 = std::chrono::steady_clock::now();
  validate_ensembles(deck.eval.ensembles);  // before anything else: a deck error is a deck error
  Dataset data(deck.data_file());
  forest_in_deck_order(deck, data, world);  // forest.h5 in the order of the table
  std::optional<Dataset> clustered;
  if (deck.clustering()) clustered.emplace(deck.clustered_file());
  const EvalPlan plan = eval_plan_from_deck(deck, data, single_experts);
  auto backend = make_backend(deck.run.backend, {deck.run.blas_threads});
  ModelPool pool(*backend, data.vocab_size(), plan.context);
  std::string methods;
  for (const auto& m : plan.methods()) methods += (methods.empty() ? "" : ",") + m;
  log_root("phase=eval status=start split=" + plan.split + " domains=" + std::to_string(plan.domains().size()) +
           " methods=" + methods + " ranks=" + std::to_string(world.size()));
  const EvalResults results = evaluate(plan, data, pool, world, clustered ? &*clustered : nullptr);
  for (const auto& [ensemble, by_domain] : results.routed) {
    for (const auto& [d, c] : by_domain) {
      log_root("phase=eval ensemble=" + ensemble + " router=cluster domain=" + d + " blocks=" + std::to_string(c.blocks) +
               " expert_blocks=" + std::to_string(c.needed) + " skipped_expert_blocks=" + std::to_string(c.skipped) +
               " expert_blocks_run=" + std::to_string(results.expert_blocks_run.count(d) ? results.expert_blocks_run.at(d) : 0));
    }
  }
  if (world.is_root()) {
    write_eval_file(deck.eval_file(), plan, results, to_toml(deck));
    log_line(format_table(plan, results));
  }
  world.barrier();  // eval.h5 is in place when run_eval returns on any rank
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_root("phase=eval status=done seconds=" + std::to_string(static_cast<long long>(std::lround(s))) +
           " file=" + deck.eval_file().string());
}

void run_eval(const Deck& deck, const Comm& world) {
  run_eval(deck, world, parse_single_experts(deck.eval.single_experts));
}

}  // namespace btm
