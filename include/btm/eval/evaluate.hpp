#pragma once
// Distributed perplexity of every model and ensemble on every evaluation domain
// (ARCHITECTURE, Evaluation), the eval.h5 table and the stdout table.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/config.hpp"
#include "btm/data/dataset.hpp"
#include "btm/eval/scoring.hpp"
#include "btm/ops/backend.hpp"

namespace btm {

// Which single-expert rows to compute: every expert on every domain, each expert on its
// own domain only (forest entry domain == eval domain), or none (ensembles still run them).
enum class SingleExperts { all, own, none };
// "all" | "own" | "none"; otherwise throws naming eval.single_experts.
SingleExperts parse_single_experts(const std::string& value);
std::string to_string(SingleExperts value);

struct DenseMethod {
  std::string method;                // column name
  std::filesystem::path file;        // model file
  std::vector<std::string> domains;  // evaluated on these only; empty: every domain
  std::vector<std::string> routed_experts;  // MoE models: expert names; routing statistics are recorded
};

struct ExpertModel {
  std::string name;    // column name
  std::string domain;  // the domain it was trained on
  std::filesystem::path file;
};

struct EvalPlan {
  std::vector<std::string> train_domains, heldout_domains;
  // C-BTM: the clusters' domains ("cluster-<i>"), read from the clustered data file that
  // evaluate() is given; evaluated after the held-out domains.
  std::vector<std::string> cluster_domains;
  // The clustering (clusters.h5) that ensembles with router = "cluster" route with; their
  // experts are the forest's experts of the domains cluster-0 ... cluster-<k-1>.
  std::filesystem::path clusters_file;
  std::string split = "test";
  int context = 0;  // block length; 0: the first model's max_position_embeddings
  std::uint64_t max_tokens_per_domain = 0;
  int prior_sequences = 100;
  double prior_alpha = 0.3;
  // The cached prior's estimation rule (btm/eval/ensemble.hpp), shared by every ensemble
  // with a cached prior, whatever its own posterior rule: "previous_token" | "exact".
  std::string prior_rule = "previous_token";
  int batch = 8;
  // Columns, in this order: models (seed, baseline), experts, averages, ensembles.
  std::vector<DenseMethod> models;
  std::vector<ExpertModel> experts;
  std::vector<DenseMethod> averages;
  std::vector<EnsembleConfig> ensembles;  // over all experts
  SingleExperts single_experts = SingleExperts::all;
  // Upper bound on the floats held by one pass of the expert grid (E x tokens per domain);
  // domains are processed in as few passes as fit.
  std::size_t grid_floats = std::size_t(1) << 28;

  std::vector<std::string> domains() const;  // train, held-out, then clusters
  std::vector<std::string> methods() const;  // column order
};

struct ResultRow {
  std::string method, domain, split;
  std::uint64_t tokens = 0;
  double nll = 0;  // mean token NLL (nats)
  double perplexity = 0;
};

struct EvalResults {
  int context = 0;
  std::vector<ResultRow> rows;  // method-major, in column then domain order
  std::map<std::string, std::uint64_t> tokens;  // per domain: targets scored
  // Cached priors, per ensemble and domain, over all experts (expert order), and the
  // experts each ensemble ran per domain (top-k).
  std::map<std::string, std::map<std::string, std::vector<double>>> priors;
  std::map<std::string, std::map<std::string, std::vector<int>>> selected;
  // MoE methods: routing statistics per domain, summed over every rank.
  std::map<std::string, std::map<std::string, RoutingStats>> routing;
  // Ensembles with router = "cluster", per domain: the expert-blocks (expert x eval block)
  // their routing needs, and those it skips (experts outside every target's top-k).
  struct RoutedCount {
    std::uint64_t blocks = 0, needed = 0, skipped = 0;
  };
  std::map<std::string, std::map<std::string, RoutedCount>> routed;
  // Expert-blocks the grid scored per domain (every method together).
  std::map<std::string, std::uint64_t> expert_blocks_run;

  const ResultRow* find(const std::string& method, const std::string& domain) const;
};

// Checks eval.ensembles: router, prior, posterior and top_k (top_k > 0 needs a cached prior),
// and for router = "cluster" temperature > 0 and distance_power 2 or 4.
// The error names eval.ensembles[i].<key> and the ensemble.
void validate_ensembles(const std::vector<EnsembleConfig>& ensembles);

// Checks the plan before any work: ensemble settings (the error names
// eval.ensembles[i].<key>), eval.prior_rule, method names, at least one model. Throws btm::Error.
void validate_plan(const EvalPlan& plan);

// Evaluates the plan over `comm` (collective; identical results on every rank). The
// plan's cluster domains are read from `clustered` (required when there are any), every
// other domain from `data`.
//
// Ensembles with router = "cluster" (btm/eval/routing.hpp): every rank computes the routing
// weights of every block identically (they depend on the tokens and the clustering only),
// and an expert is scored on a block only when some target of the block routes to it (or
// another method needs it there).
EvalResults evaluate(const EvalPlan& plan, const Dataset& data, ModelPool& pool, const Comm& comm,
                     const Dataset* clustered = nullptr);
EvalResults evaluate(const EvalPlan& plan, const Dataset& data, Backend& backend, const Comm& comm,
                     const Dataset* clustered = nullptr);

// eval.h5 (ARCHITECTURE, Files), written atomically by the caller's rank: /results parallel
// datasets method, domain, split (strings), tokens (uint64), nll, perplexity (float64), with
// the settings as attributes of /results; /priors/experts (strings) and
// /priors/<ensemble>/<domain> (float64 [E]) for ensembles with a cached prior (attribute
// prior_rule of /priors: the estimation rule); for MoE
// methods /routing/<method>/experts (strings) and /routing/<method>/<domain>/{tokens,
// gate_sum} (float64 [L, E]: tokens routed to each expert, their summed gate weights) and
// dropped (uint64 [L], over capacity), attribute routed_tokens; for routed ensembles
// /routing/<ensemble>/{domain, blocks, expert_blocks, skipped_expert_blocks} (parallel
// datasets; attrs top_k, temperature, distance_power, clusters_file).
void write_eval_file(const std::filesystem::path& path, const EvalPlan& plan, const EvalResults& results,
                     const std::string& deck_toml);

// The perplexity table: rows = domains (train, held-out, clusters), `in-domain mean`,
// `held-out mean` and `cluster mean` (arithmetic means of the per-domain perplexities; "-" when a method lacks
// a domain of the group); columns = methods.
std::string format_table(const EvalPlan& plan, const EvalResults& results);

// The plan `btm run` evaluates: seed, baseline, forest experts, averages and ensembles whose
// files exist under deck.run.out_dir (one warning line per missing phase on rank 0).
EvalPlan eval_plan_from_deck(const Deck& deck, const Dataset& data, SingleExperts single_experts);

// run_eval with an explicit single-expert setting (run_eval uses eval.single_experts).
void run_eval(const Deck& deck, const Comm& world, SingleExperts single_experts);

}  // namespace btm
