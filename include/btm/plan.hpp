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

void print_plan(const Deck& deck, int world_size, std::ostream& out);

}  // namespace btm
