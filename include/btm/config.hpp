#pragma once
// The input deck as typed structs. Every default lives here, in the member initialisers;
// src/config/schema.cpp describes each TOML key (type, allowed values) and binds it to its
// member, deck_reader.cpp reads TOML into these, and inputs/README.md documents each key.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "btm/model_config.hpp"

namespace btm {

// All phases, in pipeline order.
inline const std::vector<std::string> kAllPhases = {"prepare", "cluster", "seed",     "experts", "baseline",
                                                    "average", "mix",     "finetune", "eval"};

struct RunConfig {
  std::string name = "btm";
  std::filesystem::path out_dir = "runs/btm";  // relative paths resolve against the working directory
  std::uint64_t seed = 1234;
  std::string backend = "cpu";  // cpu | cuda
  std::vector<std::string> phases = kAllPhases;
  int blas_threads = 1;  // BLAS threads per rank (cpu backend)

  bool operator==(const RunConfig&) const = default;
};

struct DataConfig {
  std::filesystem::path corpus;  // JSONL file, text tree, or <domain>/<split>.jsonl.gz folder
  std::string format = "auto";   // auto | jsonl | text_tree | split_jsonl
  std::vector<std::string> train_domains;    // empty: every corpus domain not held out
  std::vector<std::string> heldout_domains;  // evaluated only, never trained on
  std::filesystem::path tokenizer;  // existing SentencePiece .model; empty: train one
  int vocab_size = 8192;
  double tokenizer_sample_mb = 8.0;  // text sampled for tokenizer training, balanced by domain
  double valid_fraction = 0.05;      // hash split, used when the corpus gives no splits
  double test_fraction = 0.05;
  double max_mb_per_domain = 0.0;    // 0: no cap; else keep the first N MB of each domain split

  bool operator==(const DataConfig&) const = default;
};

// C-BTM clustering (the [cluster] section): the training domains' documents are clustered
// by balanced k-means over tf-idf -> SVD embeddings, and the k clusters become the
// training domains ("cluster-0" ... "cluster-<k-1>"). Without the section nothing changes.
struct ClusterConfig {
  bool given = false;   // the deck has a [cluster] section (set by the reader, not a key)
  bool enabled = true;  // false: keep the section but train on the corpus domains
  int k = 8;
  std::string method = "balanced";  // balanced | unbalanced | random
  int svd_dims = 100;
  std::uint64_t sample_docs = 0;  // documents the vectorizer and centroids are fitted on; 0: all
  int iterations = 50;            // most k-means iterations
  std::string assign = "nearest";  // training documents: nearest centroid (C-BTM) | balanced
  double temperature = 0.1;       // routing softmax temperature at eval
  int top_k = 1;                  // clusters mixed per token at eval (router = "cluster" default)
  std::uint64_t seed = 1234;

  bool operator==(const ClusterConfig&) const = default;
};

struct TrainConfig {
  int micro_batch = 8;     // sequences per rank per forward/backward
  int global_batch = 32;   // sequences per optimizer step (per expert group)
  double lr = 3e-3;
  double min_lr_ratio = 0.1;  // cosine floor as a fraction of lr
  double warmup_fraction = 0.05;  // of the phase's steps
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double adam_eps = 1e-8;
  double grad_clip = 1.0;  // global norm; 0 disables
  int log_every = 10;
  int eval_every = 100;    // validation loss per domain; 0: only at the end
  int eval_batches = 4;    // micro batches per domain per validation
  int checkpoint_every = 200;  // 0: only at the end

  bool operator==(const TrainConfig&) const = default;
};

// Training phases take a [train] key to override the deck's [train] for themselves only.
struct SeedConfig {
  std::uint64_t tokens = 1'000'000;  // 0: the init model is the seed as is
  // A finished model file to start from (e.g. written by `btm import`); empty: fresh init.
  std::filesystem::path init;
  std::string mixing = "balanced";  // balanced | proportional
  TrainConfig train;

  bool operator==(const SeedConfig&) const = default;
};

struct ExpertsConfig {
  std::uint64_t tokens = 500'000;    // per expert
  std::vector<std::string> domains;  // empty: data.train_domains
  std::string init = "seed";         // seed | posterior_average | <expert name>
  bool reset_optimizer = true;       // false: keep the seed's AdamW moments
  // valid blocks used by init = "posterior_average" (weights by average.posterior_rule);
  // 0: as many as the posterior averages use (average.posterior_sequences)
  int posterior_sequences = 0;
  TrainConfig train;

  bool operator==(const ExpertsConfig&) const = default;
};

struct BaselineConfig {
  bool enabled = true;
  std::uint64_t tokens = 0;  // 0: experts.tokens * number of experts (compute-matched)
  std::string mixing = "balanced";
  TrainConfig train;

  bool operator==(const BaselineConfig&) const = default;
};

struct WeightedAverage {
  std::string name;
  std::map<std::string, double> weights;  // expert name -> weight (normalised to sum 1)

  bool operator==(const WeightedAverage&) const = default;
};

struct AverageConfig {
  bool uniform = true;
  bool posterior = true;     // one average per eval domain, weights = cached posterior
  // How those weights are estimated, on their own keys (never from [[eval.ensembles]]):
  // the cached-prior estimation rule (btm/eval/ensemble.hpp) and the valid blocks per domain
  // (0: eval.prior_sequences, the ensembles' number).
  std::string posterior_rule = "previous_token";  // previous_token (released code) | exact
  int posterior_sequences = 0;
  std::vector<WeightedAverage> weighted;

  bool operator==(const AverageConfig&) const = default;
};

struct EnsembleConfig {
  std::string name;
  std::string prior = "cached";     // uniform | cached
  std::string posterior = "exact";  // exact | previous_token
  int top_k = 0;                    // 0: all experts (router cluster: all clusters; default cluster.top_k)
  std::string router = "posterior";  // posterior (BTM) | cluster (C-BTM: distance to the cluster centres)
  double temperature = 0.1;         // router cluster: weights ∝ exp(-d^p / T) (default cluster.temperature)
  int distance_power = 2;           // router cluster: p = 2 (paper) | 4 (released code)

  bool operator==(const EnsembleConfig&) const = default;
};

struct EvalConfig {
  std::string split = "test";  // test | valid
  std::uint64_t max_tokens_per_domain = 0;  // 0: the whole split
  int prior_sequences = 100;   // valid blocks for the cached prior
  double prior_alpha = 0.3;    // EMA rate of the cached prior
  std::string prior_rule = "previous_token";  // cached-prior estimation: previous_token (released code) | exact
  int batch = 8;               // sequences per forward pass
  std::string single_experts = "all";  // rows per expert: all | own (its domain) | none
  std::vector<EnsembleConfig> ensembles = {{"ensemble", "cached", "exact", 0}};

  bool operator==(const EvalConfig&) const = default;
};

// BTX (ARCHITECTURE, Shape: mix, finetune): one MoE model built from the forest (or from copies
// of the seed: sparse upcycling), then finetuned. src/phases/mixing.cpp builds it.
struct MixModel {
  std::string name;                  // mixed/<name>.h5; finetuned: <name>.h5, eval column <name>
  std::string source = "forest";     // forest | seed (sparse upcycling: num_experts copies)
  std::vector<std::string> experts;  // forest experts, in this order; empty: the whole forest
  int num_experts = 0;               // source = seed: copies (required); forest: 0 or the count
  bool include_seed = false;         // the seed as one more (generalist) expert, last
  std::map<std::string, double> weights;  // non-FFN average weights by expert; empty: uniform
  std::string router_init = "random";    // random | centroid
  int num_experts_per_tok = 2;           // top-k
  std::string routing = "top_k";         // top_k | switch | soft | sample_top1
  std::string aux_loss = "btx";          // btx | switch
  double router_aux_loss_coef = 0.01;
  double capacity_factor = 1.5;
  bool finetune = true;  // false: kept as mixed (BTM-style MoE without finetune)
  std::uint64_t finetune_tokens = 0;  // 0: finetune.tokens (e.g. more for upcycling at matched compute)

  bool operator==(const MixModel&) const = default;
};

struct MixConfig {
  std::vector<MixModel> models;
  int centroid_sequences = 32;  // train blocks per expert for router_init = "centroid"
  bool eval_mixed = true;       // eval also reports each mixed model before finetuning, as <name>-mixed

  bool operator==(const MixConfig&) const = default;
};

inline constexpr double kFinetuneLr = 1e-4;  // BTX finetunes far below the pretraining rate

struct FinetuneConfig {
  std::uint64_t tokens = 500'000;  // per mixed model
  std::string mixing = "balanced";  // over the union of the model's experts' domains
  bool freeze_experts = false;      // train only the router and the averaged trunk
  // [train], except lr = kFinetuneLr unless [finetune.train] sets it.
  TrainConfig train = [] {
    TrainConfig t;
    t.lr = kFinetuneLr;
    return t;
  }();

  bool operator==(const FinetuneConfig&) const = default;
};

struct Deck {
  std::filesystem::path source;  // the deck file ("" for decks built in code)
  RunConfig run;
  DataConfig data;
  ClusterConfig cluster;
  ModelConfig model;
  TrainConfig train;
  SeedConfig seed;
  ExpertsConfig experts;
  BaselineConfig baseline;
  AverageConfig average;
  EvalConfig eval;
  MixConfig mix;
  FinetuneConfig finetune;

  // Derived paths inside run.out_dir.
  std::filesystem::path data_file() const { return run.out_dir / "data.h5"; }
  // The clustering (cluster phase) and the clusters' tokens in data.h5's layout.
  std::filesystem::path clusters_file() const { return run.out_dir / "clusters.h5"; }
  std::filesystem::path clustered_file() const { return run.out_dir / "clustered.h5"; }
  bool clustering() const { return cluster.given && cluster.enabled; }
  // The data file seed, experts, baseline, average and eval read: clustered.h5 when
  // clustering, else data.h5. Its training domains are the clusters, its held-out domains
  // data.h5's.
  std::filesystem::path train_data_file() const { return clustering() ? clustered_file() : data_file(); }
  // "cluster-0" ... "cluster-<k-1>" when clustering, else empty.
  std::vector<std::string> cluster_domains() const;
  std::filesystem::path seed_file() const { return run.out_dir / "seed.h5"; }
  std::filesystem::path expert_file(const std::string& name) const {
    return run.out_dir / "experts" / (name + ".h5");
  }
  std::filesystem::path baseline_file() const { return run.out_dir / "baseline.h5"; }
  std::filesystem::path average_file(const std::string& name) const {
    return run.out_dir / "averages" / (name + ".h5");
  }
  std::filesystem::path forest_file() const { return run.out_dir / "forest.h5"; }
  std::filesystem::path eval_file() const { return run.out_dir / "eval.h5"; }
  std::filesystem::path mixed_file(const std::string& name) const { return run.out_dir / "mixed" / (name + ".h5"); }
  std::filesystem::path finetuned_file(const std::string& name) const { return run.out_dir / (name + ".h5"); }

  // Valid blocks per domain of the posterior-weighted averages: average.posterior_sequences,
  // else eval.prior_sequences (the same blocks as the ensembles' cached prior).
  int average_posterior_sequences() const {
    return average.posterior_sequences > 0 ? average.posterior_sequences : eval.prior_sequences;
  }
  // ... and of experts.init = "posterior_average": experts.posterior_sequences, else the above.
  int branch_posterior_sequences() const {
    return experts.posterior_sequences > 0 ? experts.posterior_sequences : average_posterior_sequences();
  }

  // Experts in training order: experts.domains, else the clusters when clustering, else
  // data.train_domains. Empty when all are (one expert per corpus domain, known only once
  // the corpus is read).
  std::vector<std::string> expert_domains() const;
};

// Reads and validates a deck. `overrides` are "section.key=value" strings from --set,
// applied on top of the file. Throws btm::Error with file, line:column, key path and the
// allowed values on any problem.
Deck load_deck(const std::filesystem::path& path, const std::vector<std::string>& overrides = {});
Deck parse_deck(const std::string& toml_text, const std::filesystem::path& source_name,
                const std::vector<std::string>& overrides = {});

// The resolved deck (every key, defaults filled in) as TOML text: echoed on rank 0 and
// stored in /meta of every output file.
std::string to_toml(const Deck& deck);

}  // namespace btm
