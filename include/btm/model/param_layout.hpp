#pragma once
// Names, shapes and offsets of every parameter of a model in its one contiguous buffer
// (DESIGN, Model). Gradients and optimizer moments use the same layout, so one offset
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
  bool is_matrix() const { return shape.size() == 2; }  // weight decay applies to these
};

class ParamLayout {
 public:
  static ParamLayout llama(const ModelConfig& config);

  const std::vector<ParamInfo>& params() const { return params_; }
  std::size_t total() const { return total_; }
  const ParamInfo& at(const std::string& name) const;  // throws for an unknown name
  const ParamInfo* find(const std::string& name) const;

  // Offsets of a layer's tensors, for the model's hot loops.
  struct Layer {
    std::size_t input_norm, q, k, v, o, post_norm, gate, up, down;
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
