#pragma once
// Architecture of a Llama-style decoder. Field names are the Hugging Face config.json keys
// so that model files and exports carry them unchanged.
#include <cstdint>
#include <string>

namespace btm {

struct ModelConfig {
  int hidden_size = 256;
  int intermediate_size = 0;  // 0: derived, see resolved_intermediate_size()
  int num_hidden_layers = 4;
  int num_attention_heads = 4;
  int num_key_value_heads = 0;  // 0: same as num_attention_heads (no grouping)
  int vocab_size = 0;           // 0: taken from the tokenizer
  int max_position_embeddings = 256;  // the training context length
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;

  int head_dim() const { return hidden_size / num_attention_heads; }
  int kv_heads() const { return num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads; }
  // SwiGLU width: 8/3 * hidden, rounded up to a multiple of 64 (Llama's rule).
  int resolved_intermediate_size() const;
  // Throws btm::Error naming the offending field when the shape is inconsistent.
  void validate() const;
  // Stable hash of every field that changes the parameter shapes or the function computed.
  std::string architecture_hash() const;
  // The fields of architecture_hash() that differ from `other`, as
  // "hidden_size 128 vs 64, vocab_size 4096 vs 2048"; empty when the architectures match.
  std::string architecture_differences(const ModelConfig& other) const;
};

}  // namespace btm
