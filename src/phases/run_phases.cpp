#include <algorithm>

#include "btm/error.hpp"
#include "btm/log.hpp"
#include "btm/ops/backend.hpp"
#include "btm/phases.hpp"
#include "btm/train/stop_signal.hpp"

namespace btm {

void check_phase_names(const std::vector<std::string>& phases) {
  for (const auto& p : phases) {
    if (std::find(kAllPhases.begin(), kAllPhases.end(), p) == kAllPhases.end()) {
      std::string all;
      for (const auto& a : kAllPhases) all += (all.empty() ? "" : ", ") + a;
      throw Error("unknown phase '" + p + "'; expected one of: " + all);
    }
  }
}

bool run_phases(const Deck& deck, const std::vector<std::string>& phases, const Comm& world) {
  check_phase_names(phases);
  // Before any work, not when the first MoE model is built.
  if (deck.model.is_moe() && !backend_supports_moe(deck.run.backend)) {
    throw Error("model.num_local_experts = " + std::to_string(deck.model.num_local_experts) +
                ": MoE layers are not implemented on the " + deck.run.backend + " backend yet; use backend = \"cpu\"");
  }
  const bool runs_moe = std::find(phases.begin(), phases.end(), "finetune") != phases.end() ||
                        std::find(phases.begin(), phases.end(), "eval") != phases.end();
  if (!deck.mix.models.empty() && runs_moe && !backend_supports_moe(deck.run.backend)) {
    throw Error("mix.models[0] (\"" + deck.mix.models[0].name + "\"): finetune and eval run MoE models, which the " +
                deck.run.backend + " backend does not implement yet; use backend = \"cpu\"");
  }
  // For the whole run, so that a stop signal never kills a phase: training checkpoints at
  // its next step, everything else stops at the next phase boundary (status 75, resumable).
  StopSignals signals;
  for (const auto& phase : kAllPhases) {
    if (std::find(phases.begin(), phases.end(), phase) == phases.end()) continue;
    if (world.any(StopSignals::requested())) {
      log_root("# stopped before the " + phase + " phase (stop signal); run the same command again to continue");
      return false;
    }
    log_root("# phase " + phase);
    PhaseStatus status = PhaseStatus::done;
    if (phase == "prepare") run_prepare(deck, world);
    else if (phase == "cluster") run_cluster(deck, world);
    else if (phase == "seed") status = run_seed(deck, world);
    else if (phase == "experts") status = run_experts(deck, world);
    else if (phase == "baseline") status = run_baseline(deck, world);
    else if (phase == "average") status = run_average(deck, world);
    else if (phase == "mix") run_mix(deck, world);
    else if (phase == "finetune") status = run_finetune(deck, world);
    else if (phase == "eval") run_eval(deck, world);
    // Later phases read what this one wrote, on every rank.
    world.barrier();
    if (status == PhaseStatus::interrupted) {
      log_root("# stopped after an interrupted " + phase + " phase; run the same command again to resume");
      return false;
    }
  }
  return true;
}

}  // namespace btm
