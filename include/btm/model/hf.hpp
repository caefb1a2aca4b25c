#pragma once
// Hugging Face interop. A btm model file is exported as a transformers checkpoint folder
// (config.json, safetensors, the SentencePiece tokenizer): dense models as
// LlamaForCausalLM, MoE models as MixtralForCausalLM. A Llama or Mixtral folder with a
// SentencePiece tokenizer.model is imported into a finished btm model file.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "btm/model/model_file.hpp"
#include "btm/model/safetensors.hpp"

namespace btm {

struct HfExportOptions {
  TensorDtype dtype = TensorDtype::f32;
  std::uint64_t shard_bytes = 5'000'000'000;  // transformers' default max_shard_size (5GB)
};

// config.json for `model` (LlamaForCausalLM or MixtralForCausalLM). Throws when the model
// cannot be expressed in that architecture (btm's switch and sample_top1 routing).
std::string hf_config_json(const ModelFile& model, TensorDtype dtype);

// Writes the folder `dir` (created if needed): config.json, generation_config.json,
// model.safetensors (or shards + index), tokenizer.model, tokenizer_config.json and
// special_tokens_map.json. Refuses unfinished checkpoints and models without a tokenizer.
// Returns the files written.
std::vector<std::string> export_hf(const std::filesystem::path& model_file, const std::filesystem::path& dir,
                                   const HfExportOptions& options);

struct HfImportOptions {
  int context = 0;  // max_position_embeddings of the btm model; 0: the checkpoint's
};

// Reads a Llama or Mixtral checkpoint folder into a model (meta.phase "import", parent the
// folder). Errors name the file and the tensor or key.
ModelFile import_hf(const std::filesystem::path& dir, const HfImportOptions& options);

// Size texts such as "5GB", "500MB", "2GiB", "1000" (bytes), as transformers' max_shard_size.
std::uint64_t parse_byte_size(const std::string& text);

}  // namespace btm
