#pragma once
// Branch-Train-MiX (ARCHITECTURE, Shape: mix): the feed-forward blocks of dense models become the
// experts of one MoE layer per layer (Mixtral names), every other tensor is their weighted
// average, and each layer gets a router. Sparse upcycling is the case where every expert
// is the seed.
#include <filesystem>
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/config.hpp"
#include "btm/data/dataset.hpp"
#include "btm/forest.hpp"
#include "btm/model/model_file.hpp"
#include "btm/ops/backend.hpp"

namespace btm {

// One expert of a mixed model: its name (the column of the routing statistics), the dense
// model file it comes from, and the domains whose data it stands for (router centroids,
// finetuning mixture).
struct MixedExpert {
  std::string name;
  std::filesystem::path file;
  std::vector<std::string> domains;
};

// The experts of `model` in MoE order. source = "forest": model.experts (or every forest
// entry) in forest order, then the seed when include_seed (domains: `train_domains`);
// source = "seed": num_experts copies of the seed named seed.0, seed.1, ... Throws, naming
// `where` (mix.models[i]), when the forest or the seed is missing or unfinished.
std::vector<MixedExpert> mix_experts(const Deck& deck, const MixModel& model, const std::string& where,
                                     const Forest& forest, const std::vector<std::string>& train_domains);

// Weights of the non-FFN average, one per expert: model.weights by name (missing: 0), or
// uniform when model.weights is empty.
std::vector<double> trunk_weights(const MixModel& model, const std::vector<MixedExpert>& experts,
                                  const std::string& where);

// The MoE architecture: `dense` with num_experts experts and the model's routing settings.
ModelConfig moe_config(const ModelConfig& dense, const MixModel& model, int num_experts);

// The union of the experts' domains, in first-seen order (the finetuning mixture).
std::vector<std::string> mixed_domains(const std::vector<MixedExpert>& experts);

// Host parameters of the MoE model `moe` in ParamLayout::llama(moe) order: expert e's
// w1, w3, w2 of layer l are gate_proj, up_proj, down_proj of layer l of expert_files[e];
// block_sparse_moe.gate of layer l is routers[l] ([E, d] row-major); every other tensor is
// `trunk`'s (a dense model of the same base architecture).
std::vector<float> assemble_moe_params(const ModelConfig& moe, const ModelFile& trunk,
                                       const std::vector<std::filesystem::path>& expert_files,
                                       const std::vector<std::vector<float>>& routers);

// Router rows from domain centroids: row e of layer l is the L2-normalised mean FFN input
// (post-attention RMSNorm output) of layer l of the dense model `trunk` over up to
// `sequences` train blocks of expert e's domains (shared evenly among them). Collective
// over `comm` (each rank a share of the blocks); identical on every rank. [L][E * d].
std::vector<std::vector<float>> centroid_routers(const ModelFile& trunk, const std::vector<MixedExpert>& experts,
                                                 const Dataset& data, Backend& backend, int sequences, int batch,
                                                 const Comm& comm);

// Router rows as a fresh MoE model initialises them: normal(0, initializer_range),
// deterministic in `seed`. [L][E * d].
std::vector<std::vector<float>> random_routers(const ModelConfig& moe, Backend& backend, std::uint64_t seed);

// The expert names a mixed model file records in /mix/experts; "0", "1", ... when absent.
std::vector<std::string> mixed_expert_names(const std::filesystem::path& mixed_file, int num_experts);

}  // namespace btm
