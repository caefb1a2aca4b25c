#pragma once
// Model files (ARCHITECTURE, Files): /config attributes named as Hugging Face config.json keys,
// /params/<hf name> fp32 tensors, /meta (deck text, version, phase, parent, domain) and
// /tokenizer/model (the SentencePiece model, so a model file stands on its own).
// Training checkpoints add /optim, /train and /metrics (train/checkpoint.hpp).
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "btm/h5.hpp"
#include "btm/model/param_layout.hpp"
#include "btm/model_config.hpp"

namespace btm {

struct ModelMeta {
  std::string name;    // seed, an expert's name, baseline, an average's name
  std::string phase;   // seed | experts | baseline | average
  std::string parent;  // what it was initialised from ("" for a fresh init)
  std::string domain;  // an expert's domain ("" otherwise)
  std::string deck;    // the resolved deck (TOML)
};

struct TokenizerBlob {
  std::string model;  // SentencePiece model bytes
  int vocab_size = 0, bos_id = -1, eos_id = -1;
};

struct ModelFile {
  ModelConfig config;
  ModelMeta meta;
  TokenizerBlob tokenizer;
  std::vector<float> params;  // host, in ParamLayout::llama(config) order
};

void write_model_config(h5::File& f, const ModelConfig& config);
ModelConfig read_model_config(const h5::File& f);
void write_params(h5::File& f, const std::string& group, const ParamLayout& layout,
                  const std::vector<float>& host);
// Checks that every tensor of `layout` is present with its shape; names the file and tensor.
std::vector<float> read_params(const h5::File& f, const std::string& group, const ParamLayout& layout);
void write_meta(h5::File& f, const ModelMeta& meta);
ModelMeta read_meta(const h5::File& f);
void write_tokenizer(h5::File& f, const TokenizerBlob& tokenizer);
TokenizerBlob read_tokenizer(const h5::File& f);

// Everything of a model file except training state; written atomically. `extra` adds
// datasets of its own before the file is committed (mix: /mix/experts).
void save_model(const std::filesystem::path& path, const ModelFile& model,
                const std::function<void(h5::File&)>& extra = {});
ModelFile load_model(const std::filesystem::path& path);

}  // namespace btm
