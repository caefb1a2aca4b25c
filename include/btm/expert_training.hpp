#pragma once
// Expert training inside one expert group (ARCHITECTURE, Process layout). Everything here uses
// only the group communicator it is given: groups never talk to each other while they
// train, which tests/phases proves by counting MPI calls.
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/config.hpp"
#include "btm/data/dataset.hpp"
#include "btm/forest.hpp"
#include "btm/ops/backend.hpp"
#include "btm/phases.hpp"
#include "btm/train/trainer.hpp"

namespace btm {

// Trains `experts` (names = domains) one after another on `group`. Finished experts are
// skipped, interrupted ones resume. `forest` is the manifest as it was when the phase
// started (for posterior_average and named-expert branching). An expert whose training
// fails on the group's ranks together (CollectiveError: past the non-finite guard, its
// checkpoint not written, its file or parent unreadable) is recorded failed in the forest
// (Forest::register_failure), appended to `failures` when given, and the group goes on.
PhaseStatus train_group_experts(const Deck& deck, const Dataset& data, Backend& backend, const Comm& group,
                                const std::vector<std::string>& experts, const Forest& forest,
                                const TrainControl& control = {}, std::vector<ForestFailure>* failures = nullptr);

// The finished seed's parameters (and its AdamW moments unless experts.reset_optimizer),
// the start of every expert branched from the seed and of the baseline. `who` names the
// user in the error when there is no finished seed.
StartPoint branch_from_seed(const Deck& deck, const std::string& who);

// The model file of a forest entry, checked to be a finished model: a missing file or an
// interrupted checkpoint in its place is an error naming the expert, never used silently.
// With `data_tokenizer` (SentencePiece model bytes) the expert must also carry that
// tokenizer: a model file swapped for one of another run would score foreign token ids.
std::filesystem::path finished_expert_file(const Forest& forest, const ForestEntry& entry,
                                           const std::string& data_tokenizer = {},
                                           const std::filesystem::path& data_file = {});

// `btm forest add`: registers the finished model file `model` in the forest (under `name`
// and `domain` when not empty, else its own), refusing a model that is unfinished, a
// phase's name (seed, baseline), a name already there unless `replace`, or another
// architecture or tokenizer than the forest's experts. Returns the new entry.
ForestEntry add_expert_file(const std::filesystem::path& forest_file, const std::filesystem::path& model,
                            const std::string& name, const std::string& domain, bool replace);

// The forest (manifest and registration records) with the deck's experts in the deck's
// order, whatever order they finished in; rank 0 writes it back to forest.h5. Collective.
Forest forest_in_deck_order(const Deck& deck, const Dataset& data, const Comm& world);

// The manifest row of a finished expert file (name, domain, parent, tokens, architecture).
ForestEntry forest_entry_of(const std::filesystem::path& model_file, const std::filesystem::path& forest_file);

}  // namespace btm
