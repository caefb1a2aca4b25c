// bf16 linear layers (train.precision = "bf16") inside the whole model: its gradients against
// the fp32 model's, and a 200-step training run against the same run in fp32.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "btm/error.hpp"
#include "btm/model/llama.hpp"
#include "btm/train/optimizer.hpp"
#include "tiny_model.hpp"

namespace {

using btm::Backend;
using btm::DType;
using btm::Llama;

// A cpu backend whose linear layers run in `t`, or nullptr in a build without oneDNN.
std::unique_ptr<Backend> cpu_backend(DType t) {
  auto be = btm::make_backend("cpu");
  try {
    be->set_matmul_dtype(t);
  } catch (const btm::Error&) {
    return nullptr;
  }
  return be;
}

btm::ModelConfig small_config() {
  btm::ModelConfig c = btm::test::tiny_config();
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.vocab_size = 64;
  c.max_position_embeddings = 32;
  return c;
}

// Sequences of a fixed random Markov chain with two likely successors per token: learnable
// (the loss falls from ln 64 = 4.16 towards ~1) and the same in both runs.
std::vector<std::int32_t> markov_batch(int batch, int seq, int vocab, std::mt19937_64& rng) {
  std::vector<std::int32_t> t(std::size_t(batch) * (seq + 1));
  for (int b = 0; b < batch; ++b) {
    std::int32_t x = std::int32_t(rng() % vocab);
    for (int i = 0; i <= seq; ++i) {
      t[std::size_t(b) * (seq + 1) + i] = x;
      const auto r = rng() % 8;
      x = std::int32_t(r < 5 ? (x * 7 + 3) % vocab : r < 7 ? (x * 5 + 1) % vocab : rng() % vocab);
    }
  }
  return t;
}

TEST(Bf16Training, GradientsMatchTheFp32ModelWithinBf16Rounding) {
  auto bf = cpu_backend(DType::bf16);
  if (!bf) GTEST_SKIP() << "built without oneDNN";
  auto fp = cpu_backend(DType::f32);
  const btm::ModelConfig config = small_config();
  Llama m32(config, *fp), m16(config, *bf);
  m32.init_weights(3);
  m16.set_params(m32.get_params());
  std::mt19937_64 rng(5);
  const int batch = 4, seq = 32;
  const auto tokens = markov_batch(batch, seq, config.vocab_size, rng);
  m32.zero_grads();
  m16.zero_grads();
  const double l32 = m32.forward_backward(tokens.data(), batch, seq, 1.0f).nll;
  const double l16 = m16.forward_backward(tokens.data(), batch, seq, 1.0f).nll;
  EXPECT_NEAR(l16, l32, 2e-3 * std::abs(l32));
  std::vector<float> g32(m32.layout().total()), g16(g32.size());
  fp->copy_to_host(g32.data(), m32.grads(), g32.size() * sizeof(float));
  bf->copy_to_host(g16.data(), m16.grads(), g16.size() * sizeof(float));
  // Per tensor ||g16 - g32|| / ||g32||: bf16 keeps 8 bits (2^-9 relative rounding); through
  // two layers of products the gradients stay within a few percent.
  for (const auto& p : m32.layout().params()) {
    double diff = 0, norm = 0;
    for (std::size_t i = p.offset; i < p.offset + p.numel; ++i) {
      diff += double(g16[i] - g32[i]) * (g16[i] - g32[i]);
      norm += double(g32[i]) * g32[i];
    }
    EXPECT_LE(std::sqrt(diff / norm), 3e-2) << p.name;
  }
}

// 200 AdamW steps of the same model on the same batches, fp32 and bf16 linear layers.
std::vector<double> trajectory(Backend& be, const btm::ModelConfig& config, int steps) {
  Llama model(config, be);
  model.init_weights(11);
  btm::TrainConfig tc;
  tc.lr = 3e-3;
  btm::AdamW opt(model.layout(), be, tc);
  std::mt19937_64 rng(17);
  const int batch = 4, seq = 32;
  std::vector<double> losses;
  for (int s = 1; s <= steps; ++s) {
    const auto tokens = markov_batch(batch, seq, config.vocab_size, rng);
    model.zero_grads();
    const float scale = 1.0f / float(batch * seq);
    const auto r = model.forward_backward(tokens.data(), batch, seq, scale);
    opt.clip(model.grads());
    opt.step(model.params(), model.grads(), tc.lr, s);
    model.refresh_compute_params();
    losses.push_back(r.nll / double(r.tokens));
  }
  return losses;
}

TEST(Bf16Training, TwoHundredStepLossTrajectoryStaysWithinTwoPercentOfFp32) {
  auto bf = cpu_backend(DType::bf16);
  if (!bf) GTEST_SKIP() << "built without oneDNN";
  auto fp = cpu_backend(DType::f32);
  const btm::ModelConfig config = small_config();
  const int steps = 200;
  const auto l32 = trajectory(*fp, config, steps), l16 = trajectory(*bf, config, steps);
  ASSERT_EQ(l16.size(), l32.size());
  // It learns: the last 20 steps' mean loss far below the first step's ln 64.
  double last32 = 0, last16 = 0;
  for (int s = steps - 20; s < steps; ++s) last32 += l32[s] / 20, last16 += l16[s] / 20;
  EXPECT_LT(last32, 0.6 * l32[0]);
  // Every step within 2% (relative) of fp32, and the final 20-step means within 1%.
  double worst = 0;
  for (int s = 0; s < steps; ++s) {
    worst = std::max(worst, std::abs(l16[s] - l32[s]) / l32[s]);
    EXPECT_LE(std::abs(l16[s] - l32[s]), 2e-2 * l32[s]) << "step " << s + 1;
  }
  EXPECT_LE(std::abs(last16 - last32), 1e-2 * last32);
  RecordProperty("worst_relative_step_difference", std::to_string(worst));
  std::printf("bf16 vs fp32 over %d steps: worst relative step difference %.4f, final loss %.4f vs %.4f\n", steps,
              worst, last16, last32);
}

}  // namespace
