#include "btm/train/optimizer.hpp"

#include <cmath>

#include "btm/error.hpp"

namespace btm {

AdamW::AdamW(const ParamLayout& layout, Backend& backend, const TrainConfig& config)
    : layout_(layout), backend_(backend), config_(config),
      m_(backend, layout.total() * sizeof(float)), v_(backend, layout.total() * sizeof(float)),
      frozen_(layout.params().size(), false) {}

void AdamW::freeze(const std::function<bool(const ParamInfo&)>& frozen) {
  for (std::size_t i = 0; i < frozen_.size(); ++i) frozen_[i] = frozen(layout_.params()[i]);
}

double AdamW::clip(float* grads) {
  const double norm = std::sqrt(backend_.sum_squares(grads, layout_.total()));
  if (config_.grad_clip > 0 && norm > config_.grad_clip) {
    backend_.scale(grads, static_cast<float>(config_.grad_clip / norm), layout_.total());
  }
  return norm;
}

void AdamW::step(float* params, const float* grads, double lr, long step) {
  for (std::size_t i = 0; i < frozen_.size(); ++i) {
    if (frozen_[i]) continue;
    const ParamInfo& p = layout_.params()[i];
    const double wd = p.is_matrix() ? config_.weight_decay : 0.0;
    backend_.adamw(params + p.offset, grads + p.offset, m() + p.offset, v() + p.offset, p.numel,
                   static_cast<float>(lr), static_cast<float>(config_.beta1),
                   static_cast<float>(config_.beta2), static_cast<float>(config_.adam_eps),
                   static_cast<float>(wd), step);
  }
}

std::vector<float> AdamW::get_m() const {
  std::vector<float> h(layout_.total());
  backend_.copy_to_host(h.data(), m_.get(), h.size() * sizeof(float));
  return h;
}

std::vector<float> AdamW::get_v() const {
  std::vector<float> h(layout_.total());
  backend_.copy_to_host(h.data(), v_.get(), h.size() * sizeof(float));
  return h;
}

void AdamW::set_moments(const std::vector<float>& m, const std::vector<float>& v) {
  if (m.size() != layout_.total() || v.size() != layout_.total()) {
    throw Error("optimizer state does not match the model's parameter count");
  }
  backend_.copy_to_device(m_.get(), m.data(), m.size() * sizeof(float));
  backend_.copy_to_device(v_.get(), v.data(), v.size() * sizeof(float));
}

void AdamW::reset() {
  backend_.zero(m_.get(), m_.bytes());
  backend_.zero(v_.get(), v_.bytes());
}

}  // namespace btm
