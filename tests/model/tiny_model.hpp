#pragma once
// Small models and batches shared by the model tests.
#include <cstdint>
#include <random>
#include <vector>

#include "btm/model_config.hpp"

namespace btm::test {

inline ModelConfig tiny_config(int kv_heads = 2, bool tied = false) {
  ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.vocab_size = 37;
  c.max_position_embeddings = 8;
  c.tie_word_embeddings = tied;
  return c;
}

// [batch, seq+1] tokens in [0, vocab); entries listed in `ignored` become -1 targets.
inline std::vector<std::int32_t> random_tokens(int batch, int seq, int vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> t(std::size_t(batch) * (seq + 1));
  for (auto& x : t) x = static_cast<std::int32_t>(rng() % vocab);
  return t;
}

}  // namespace btm::test
