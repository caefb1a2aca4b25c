#pragma once
// The pipeline phases of `btm run` (ARCHITECTURE, Shape). Each phase reads what earlier phases
// wrote under deck.run.out_dir, writes its own files, and is skipped when already done.
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/config.hpp"

namespace btm {

// A training phase either finishes or is interrupted (stop signal): then its checkpoint
// is on disk and a re-run resumes it.
enum class PhaseStatus { done, interrupted };

void run_prepare(const Deck& deck, const Comm& world);
void run_cluster(const Deck& deck, const Comm& world);
PhaseStatus run_seed(const Deck& deck, const Comm& world);
// Throws ModelsFailed on every rank, after every group is done, when experts failed.
struct TrainControl;
PhaseStatus run_experts(const Deck& deck, const Comm& world);
PhaseStatus run_experts(const Deck& deck, const Comm& world, const TrainControl& control);  // tests: inject faults
PhaseStatus run_baseline(const Deck& deck, const Comm& world);
PhaseStatus run_average(const Deck& deck, const Comm& world);
void run_mix(const Deck& deck, const Comm& world);
PhaseStatus run_finetune(const Deck& deck, const Comm& world);
PhaseStatus run_finetune(const Deck& deck, const Comm& world, const TrainControl& control);  // tests: stop early
void run_eval(const Deck& deck, const Comm& world);

// Domains resolved against the training data file (deck.train_data_file()): the clusters
// when clustering, else data.train_domains, or every domain of the data file that is not
// held out; experts: experts.domains, or the train domains; eval: train then held-out
// domains.
class Dataset;
std::vector<std::string> train_domains_of(const Deck& deck, const Dataset& data);
std::vector<std::string> expert_names_of(const Deck& deck, const Dataset& data);
std::vector<std::string> eval_domains_of(const Deck& deck, const Dataset& data);

// Throws when a name in `phases` is not one of kAllPhases (before any work or output).
void check_phase_names(const std::vector<std::string>& phases);

// Runs `phases` (names from kAllPhases) in pipeline order; stops after an interrupted one.
// Returns false when a phase was interrupted; throws ModelsFailed (every rank) when
// models of a phase failed while the others finished.
bool run_phases(const Deck& deck, const std::vector<std::string>& phases, const Comm& world);

}  // namespace btm
