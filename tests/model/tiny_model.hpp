#pragma once
// Small models and batches shared by the model tests.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
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

// tiny_config() with every feed-forward block an MoE of `experts` experts.
inline ModelConfig tiny_moe_config(int experts = 3, int k = 2, const std::string& routing = "top_k") {
  ModelConfig c = tiny_config();
  c.num_local_experts = experts;
  c.num_experts_per_tok = k;
  c.moe_routing = routing;
  return c;
}

// [batch, seq+1] tokens in [0, vocab); entries listed in `ignored` become -1 targets.
inline std::vector<std::int32_t> random_tokens(int batch, int seq, int vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> t(std::size_t(batch) * (seq + 1));
  for (auto& x : t) x = static_cast<std::int32_t>(rng() % vocab);
  return t;
}

// -log softmax(logits)[target], in double (decode's logits against token_nll).
inline double nll_of_logits(const std::vector<float>& logits, int target) {
  double mx = -1e30, s = 0;
  for (float x : logits) mx = std::max<double>(mx, x);
  for (float x : logits) s += std::exp(x - mx);
  return mx + std::log(s) - logits[target];
}

}  // namespace btm::test
