#pragma once
// The pipeline phases of `btm run` (DESIGN, Shape). Each phase reads what earlier phases
// wrote under deck.run.out_dir, writes its own files, and is skipped when already done.
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/config.hpp"

namespace btm {

void run_prepare(const Deck& deck, const Comm& world);
void run_seed(const Deck& deck, const Comm& world);
void run_experts(const Deck& deck, const Comm& world);
void run_baseline(const Deck& deck, const Comm& world);
void run_average(const Deck& deck, const Comm& world);
void run_eval(const Deck& deck, const Comm& world);

// Runs `phases` (names from kAllPhases) in pipeline order.
void run_phases(const Deck& deck, const std::vector<std::string>& phases, const Comm& world);

}  // namespace btm
