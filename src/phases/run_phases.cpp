#include <algorithm>

#include "btm/error.hpp"
#include "btm/log.hpp"
#include "btm/phases.hpp"

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
  for (const auto& phase : kAllPhases) {
    if (std::find(phases.begin(), phases.end(), phase) == phases.end()) continue;
    log_root("# phase " + phase);
    PhaseStatus status = PhaseStatus::done;
    if (phase == "prepare") run_prepare(deck, world);
    else if (phase == "cluster") run_cluster(deck, world);
    else if (phase == "seed") status = run_seed(deck, world);
    else if (phase == "experts") status = run_experts(deck, world);
    else if (phase == "baseline") status = run_baseline(deck, world);
    else if (phase == "average") run_average(deck, world);
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
