#pragma once
// AdamW on fp32 master weights with decoupled weight decay on matrices only, and
// global-norm gradient clipping. Moments live on the device in the parameter layout.
#include <functional>
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
  // Tensors for which `frozen` is true are left alone by step() (no update, no weight decay,
  // moments kept): e.g. BTX's frozen experts.
  void freeze(const std::function<bool(const ParamInfo&)>& frozen);
  // One step on every tensor that is not frozen; `step` is 1-based (bias correction).
  void step(float* params, const float* grads, double lr, long step);

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
  std::vector<bool> frozen_;  // per tensor of layout_.params()
};

}  // namespace btm
