#pragma once
// Parameter averaging of models that share an architecture (BTM's "merge" into one LM).
#include <filesystem>
#include <string>
#include <vector>

#include "btm/model/model_file.hpp"

namespace btm {

// sum_j weights[j] * params_j, tensor by tensor (one tensor of every model in memory at a
// time), accumulated in double. Weights are normalised to sum to 1; they must be >= 0 with a
// positive sum. The result carries the first model's config and tokenizer.
ModelFile average_models(const std::vector<std::filesystem::path>& models, std::vector<double> weights,
                         const ModelMeta& meta);

}  // namespace btm
