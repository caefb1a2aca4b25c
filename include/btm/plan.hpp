#pragma once
// The resolved plan of a deck for a given world size, as `btm check` prints it: phases,
// expert groups, which ranks train which expert, token budgets and step counts.
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "btm/config.hpp"
#include "btm/group_layout.hpp"

namespace btm {

// Steps of a training phase: ceil(tokens / (global_batch * context)), at least 1.
std::uint64_t phase_steps(std::uint64_t tokens, const TrainConfig& train, int context);
// Tokens the baseline trains on: baseline.tokens, or (compute matched) the tokens that
// `num_experts` experts really train — experts.tokens rounded up to whole steps, each.
std::uint64_t baseline_tokens(const Deck& deck, std::size_t num_experts);
// The experts a compute-matched baseline matches: every expert forest.h5 holds (`in_forest`:
// trained by earlier runs or by this one) and then the deck's experts not among them yet, in
// that order, each once. With experts added over several runs the forest is the whole cost.
std::vector<std::string> baseline_matched_experts(const std::vector<std::string>& in_forest,
                                                  const std::vector<std::string>& deck_experts);

// `in_forest`: the experts forest.h5 already holds (the baseline is matched to them too, and
// eval runs them).
void print_plan(const Deck& deck, int world_size, std::ostream& out, const std::vector<std::string>& in_forest = {});

}  // namespace btm
