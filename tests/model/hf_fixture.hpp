#pragma once
// Models with a real SentencePiece tokenizer for the Hugging Face tests (gtest and the
// transformers check): small, random, and with weights large enough that logits and MoE
// routing decisions are far from uniform.
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "btm/data/corpus.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/model/model_file.hpp"

namespace btm::test {

// Every line of the split_jsonl fixture corpus under `test_data`.
inline std::vector<std::string> hf_fixture_lines(const std::filesystem::path& test_data) {
  std::vector<std::string> lines;
  for_each_document(test_data / "fixtures" / "split_jsonl", CorpusFormat::split_jsonl, [&](RawDocument& d) {
    std::size_t pos = 0;
    while (pos < d.text.size()) {
      auto end = d.text.find('\n', pos);
      if (end == std::string::npos) end = d.text.size();
      if (end > pos) lines.push_back(d.text.substr(pos, end - pos));
      pos = end + 1;
    }
  });
  return lines;
}

inline TokenizerBlob hf_fixture_tokenizer(const std::filesystem::path& test_data) {
  const auto lines = hf_fixture_lines(test_data);
  std::vector<std::string_view> views(lines.begin(), lines.end());
  const Tokenizer tok(Tokenizer::train(views, 512));
  return {tok.model_bytes(), tok.vocab_size(), tok.bos_id(), tok.eos_id()};
}

// A finished model file's content: random weights ~ N(0, std), norms ~ 1 + N(0, 0.1).
inline ModelFile hf_fixture_model(const ModelConfig& config, const TokenizerBlob& tokenizer, std::uint64_t seed,
                                  float std = 0.12f) {
  ModelFile m;
  m.config = config;
  m.config.vocab_size = tokenizer.vocab_size;
  m.config.intermediate_size = m.config.resolved_intermediate_size();
  m.config.num_key_value_heads = m.config.kv_heads();
  m.meta = {"hf-test", "seed", "", "", ""};
  m.tokenizer = tokenizer;
  const ParamLayout layout = ParamLayout::llama(m.config);
  m.params.resize(layout.total());
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& p : layout.params()) {
    for (std::size_t i = 0; i < p.numel; ++i) {
      m.params[p.offset + i] = p.is_matrix() ? std * normal(rng) : 1.0f + 0.1f * normal(rng);
    }
  }
  return m;
}

// The architectures the transformers check covers.
inline ModelConfig hf_dense_gqa() {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  c.rope_theta = 500.0;
  c.rms_norm_eps = 1e-5;
  return c;
}

inline ModelConfig hf_dense_tied() {
  ModelConfig c = hf_dense_gqa();
  c.num_key_value_heads = 4;
  c.tie_word_embeddings = true;
  return c;
}

inline ModelConfig hf_mixtral() {
  ModelConfig c = hf_dense_gqa();
  c.num_local_experts = 4;
  c.num_experts_per_tok = 2;
  return c;
}

}  // namespace btm::test
