#pragma once
// The whole model's backward pass against central finite differences of its training
// objective (NLL sum, plus the MoE load-balancing term), per tensor along random directions.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "btm/model/llama.hpp"

namespace btm::test {

// The objective whose gradient forward_backward(..., 1.0f) adds: NLL sum + aux sum; and, for
// MoE models, the token-slots each expert received (the routing, piecewise constant).
inline std::pair<double, std::vector<double>> objective(Llama& model, const std::vector<std::int32_t>& tokens,
                                                        int batch, int seq) {
  model.reset_routing_stats();
  const LossSum r = model.forward_backward(tokens.data(), batch, seq, 1.0f);
  auto routing = model.routing_stats().tokens;
  for (auto dropped : model.routing_stats().dropped) routing.push_back(double(dropped));
  return {r.nll + r.aux, routing};
}

// d/de L(p + e u) = g . u for a random u per tensor. `setup` runs on the fresh model (routing
// seed, frozen experts); `scale_weights` enlarges the init so every path contributes visibly.
inline void check_gradients(const ModelConfig& config, const std::vector<std::int32_t>& tokens, int batch, int seq,
                            const std::function<void(Llama&)>& setup = {}, float scale_weights = 4.0f) {
  auto backend = make_backend("cpu");
  Llama model(config, *backend);
  model.init_weights(7);
  if (setup) setup(model);
  auto p0 = model.get_params();
  for (auto& x : p0) x *= scale_weights;
  for (const auto& p : model.layout().params()) {
    if (!p.is_matrix()) {
      for (std::size_t i = 0; i < p.numel; ++i) p0[p.offset + i] = 1.0f + 0.1f * std::sin(float(i));
    }
  }
  model.set_params(p0);
  model.zero_grads();
  const auto routing = objective(model, tokens, batch, seq).second;
  std::vector<float> grads(model.layout().total());
  backend->copy_to_host(grads.data(), model.grads(), grads.size() * sizeof(float));

  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal;
  for (const auto& p : model.layout().params()) {
    std::vector<double> u(p.numel);
    double gu = 0;
    for (std::size_t i = 0; i < p.numel; ++i) {
      u[i] = normal(rng);
      gu += grads[p.offset + i] * u[i];
    }
    const double tol = 2e-2;
    auto difference = [&](double eps) {
      auto shifted = [&](double sign) {
        auto q = p0;
        for (std::size_t i = 0; i < p.numel; ++i) q[p.offset + i] += static_cast<float>(sign * eps * u[i]);
        model.set_params(q);
        return objective(model, tokens, batch, seq);
      };
      const auto plus = shifted(+1), minus = shifted(-1);
      const bool same_routing = plus.second == routing && minus.second == routing;
      return std::make_pair((plus.first - minus.first) / (2 * eps), same_routing);
    };
    // Top-k choices are piecewise constant: a step across a change of routing (seen in the
    // counts, or, for a swap of tokens, as a difference quotient that moves with the step)
    // is shortened until the objective is smooth over it.
    double eps = 1e-2 / std::sqrt(double(p.numel));
    double fd = 0;
    bool smooth = false;
    for (int attempt = 0; attempt < 5 && !smooth; ++attempt, eps /= 4) {
      const auto full = difference(eps), half = difference(eps / 2);
      fd = half.first;
      smooth = full.second && half.second && std::abs(full.first - half.first) <= tol * std::max(1.0, std::abs(fd));
    }
    ASSERT_TRUE(smooth) << p.name << ": the objective is not smooth around this point";
    EXPECT_NEAR(gu, fd, tol * std::max(1.0, std::abs(fd))) << p.name;
  }
}

}  // namespace btm::test
