#pragma once
// Architecture of a Llama-style decoder. Field names are the Hugging Face config.json keys
// so that model files and exports carry them unchanged.
#include <cstdint>
#include <string>
#include <vector>

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

  // Mixture of experts (BTX; Mixtral's keys where they exist). 0: a dense Llama; >= 1: every
  // layer's feed-forward block is a router plus this many SwiGLU experts of width
  // resolved_intermediate_size().
  int num_local_experts = 0;
  int num_experts_per_tok = 2;        // k of top_k routing
  double router_aux_loss_coef = 0.01;  // alpha of the load-balancing loss, added in every layer
  // top_k: softmax, top-k, kept gates renormalised (Mixtral). switch: top-1 with gate = its
  // probability, capacity-limited while training. soft: every expert, gates = softmax.
  // sample_top1: Gumbel-perturbed top-1 while training (argmax otherwise), gate = probability.
  std::string moe_routing = "top_k";
  // Load balancing alpha * E * sum_i u_i p_i, p_i = mean router probability of expert i; u_i =
  // btx: mean post-top-k gate of expert i; switch: mean number of slots routed to expert i.
  std::string moe_aux_loss = "btx";
  // switch routing while training: each expert takes at most ceil(factor * tokens / E) tokens
  // of a micro-batch; the overflow is dropped (passes on the residual stream only).
  double moe_capacity_factor = 1.5;

  int head_dim() const { return hidden_size / num_attention_heads; }
  int kv_heads() const { return num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads; }
  bool is_moe() const { return num_local_experts > 0; }
  // Experts each token is sent to: k for top_k, 1 for switch and sample_top1, E for soft.
  int experts_per_token() const;
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

// Allowed values of moe_routing and moe_aux_loss.
const std::vector<std::string>& moe_routing_modes();
const std::vector<std::string>& moe_aux_loss_forms();

}  // namespace btm
