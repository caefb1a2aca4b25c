#pragma once
// Text generation from a model with its KV cache: temperature and nucleus (top-p) sampling.
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "btm/model/llama.hpp"

namespace btm {

struct SamplingOptions {
  int max_tokens = 200;
  double temperature = 0.8;  // 0: greedy
  double top_p = 0.95;       // nucleus mass; 1: the whole distribution
  std::uint64_t seed = 0;
  int stop_token = -1;       // generation ends after this token (e.g. EOS); -1: none
  // Only ids below this are drawn (the tokenizer's vocabulary, when the model's is padded
  // beyond it); 0: every id of the model.
  int vocab_limit = 0;
};

// Index drawn from softmax(logits / temperature) restricted to the smallest set of tokens
// whose probability mass reaches top_p (greedy when temperature == 0).
int sample_token(const std::vector<float>& logits, double temperature, double top_p, std::mt19937_64& rng);

// Feeds `prompt` (non-empty) and generates up to max_tokens tokens, calling `on_token` for
// each. When the context fills up, the cache restarts from the last half of the text.
std::vector<std::int32_t> generate(Llama& model, const std::vector<std::int32_t>& prompt, const SamplingOptions& options,
                                   const std::function<void(std::int32_t)>& on_token = {});

}  // namespace btm
