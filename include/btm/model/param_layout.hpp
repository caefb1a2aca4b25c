#pragma once
// Names, shapes and offsets of every parameter of a model in its one contiguous buffer
// (ARCHITECTURE, Model). Gradients and optimizer moments use the same layout, so one offset
// addresses a tensor in all of them.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "btm/model_config.hpp"

namespace btm {

struct ParamInfo {
  std::string name;             // Hugging Face name, e.g. model.layers.3.mlp.up_proj.weight
  std::vector<std::int64_t> shape;  // [out, in] for matrices, [n] for norm weights
  std::size_t offset = 0;       // in elements
  std::size_t numel = 0;
  // Weight decay applies to these, the MoE router included (AdamW everywhere, as in BTX).
  bool is_matrix() const { return shape.size() == 2; }
};

class ParamLayout {
 public:
  static ParamLayout llama(const ModelConfig& config);

  const std::vector<ParamInfo>& params() const { return params_; }
  std::size_t total() const { return total_; }
  const ParamInfo& at(const std::string& name) const;  // throws for an unknown name
  const ParamInfo* find(const std::string& name) const;

  // Offsets of one MoE expert's SwiGLU (Mixtral names): w1 = gate_proj [f, d],
  // w2 = down_proj [d, f], w3 = up_proj [f, d].
  struct ExpertOffsets {
    std::size_t w1 = 0, w2 = 0, w3 = 0;
  };
  // Offsets of a layer's tensors, for the model's hot loops. Dense layers use gate/up/down;
  // MoE layers (config.num_local_experts > 0) use router ([E, d], block_sparse_moe.gate) and
  // experts, and leave gate/up/down at 0.
  struct Layer {
    std::size_t input_norm = 0, q = 0, k = 0, v = 0, o = 0, post_norm = 0, gate = 0, up = 0, down = 0;
    std::size_t router = 0;
    std::vector<ExpertOffsets> experts;
  };
  const Layer& layer(int i) const { return layers_[i]; }
  std::size_t embed() const { return embed_; }
  std::size_t final_norm() const { return final_norm_; }
  std::size_t lm_head() const { return lm_head_; }  // == embed() when tied

 private:
  std::size_t add(const std::string& name, std::vector<std::int64_t> shape);

  std::vector<ParamInfo> params_;
  std::size_t total_ = 0;
  std::vector<Layer> layers_;
  std::size_t embed_ = 0, final_norm_ = 0, lm_head_ = 0;
};

}  // namespace btm
