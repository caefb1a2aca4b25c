#pragma once
// AdamW on fp32 master weights with decoupled weight decay on matrices only, and
// global-norm gradient clipping. Moments live on the device in the parameter layout.
#include <string>
#include <vector>

#include "btm/config.hpp"
#include "btm/model/param_layout.hpp"
#include "btm/ops/backend.hpp"

namespace btm {

class AdamW {
 public:
  AdamW(const ParamLayout& layout, Backend& backend, const TrainConfig& config);

  // Clips `grads` in place to global norm config.grad_clip (when > 0) and returns the norm
  // before clipping.
  double clip(float* grads);
  // One step on every tensor not frozen; `step` is 1-based (bias correction).
  void step(float* params, const float* grads, double lr, long step);
  // Tensors whose name contains `name_part` are left exactly as they are by step(): no
  // update and no weight decay (frozen MoE experts).
  void freeze(const std::string& name_part);

  float* m() const { return m_.f32(); }
  float* v() const { return v_.f32(); }
  std::vector<float> get_m() const;
  std::vector<float> get_v() const;
  void set_moments(const std::vector<float>& m, const std::vector<float>& v);
  void reset();  // zero moments

 private:
  const ParamLayout& layout_;
  Backend& backend_;
  TrainConfig config_;
  DeviceBuffer m_, v_;
  std::vector<char> frozen_;  // per layout tensor
};

}  // namespace btm
