// The whole Llama model on the cuda backend against the cpu reference backend: per-token NLL,
// mean loss and every gradient tensor from the same fp32 parameters, and KV-cache decoding
// against the full forward pass. Grouped KV heads and tied embeddings, each through cuDNN's
// fused attention (BTM_CUDA_ATTENTION=auto: head_dim 16 and T = 128 qualify on every cuDNN 9)
// and through the fallback kernels.
//
// Error bounds. The parameters are bf16-representable, so both backends use identical
// weights; what differs is that the cuda backend stores every activation (and every
// activation gradient) in bf16 between kernels, about 14 roundings of relative error <= 2^-8
// along each forward path and as many along the backward, with fp32 accumulation inside
// GEMMs and kernels (the cpu backend keeps fp32 throughout). These rounding errors have
// random signs, so they add in quadrature, not linearly. A float64 PyTorch model of this
// exact computation with a bf16 rounding at each place the cuda backend stores a tensor
// (attention probabilities rounded too, as cuDNN does), on these shapes and weight scales,
// gave over 3 seeds each of MHA, GQA and MQA, tied and untied: per-token |dNLL| <= 0.011, |d mean loss| <= 2.5e-4, per-tensor
// gradient relative norm error <= 0.012 (largest in the last layer's q/k projections and
// the norm weights); tests/backend/gpu/bf16_emulation.py reproduces this. The bounds below
// are 3.5x to 8x those: a kernel bug (a wrong index, a missing term) moves these quantities
// by far more.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "btm/model/llama.hpp"
#include "gpu_test_util.hpp"
#include "model/tiny_model.hpp"

namespace btm::test {
namespace {

constexpr double kTokenNllAtol = 0.04;    // per token, nats
constexpr double kMeanLossAtol = 2e-3;    // mean over the batch, nats
constexpr double kGradRelNorm = 0.04;     // ||g_cuda - g_cpu|| / ||g_cpu|| per tensor

struct ModelCase {
  const char* name;
  int kv_heads;
  bool tied;
  const char* attention;  // BTM_CUDA_ATTENTION
};

ModelConfig case_config(const ModelCase& c) {
  ModelConfig m;
  m.hidden_size = 64;  // 4 heads of 16
  m.intermediate_size = 0;  // 8/3 * 64 rounded up to 192
  m.num_hidden_layers = 2;
  m.num_attention_heads = 4;
  m.num_key_value_heads = c.kv_heads;
  m.vocab_size = 256;
  m.max_position_embeddings = 128;
  m.tie_word_embeddings = c.tied;
  return m;
}

// init_weights with the matrices scaled by 3 (std 0.06: logits spread over a few nats, so
// every path carries weight and per-token NLLs differ) and norm weights away from 1, all
// rounded to bf16 so that the cuda backend's compute copy equals the fp32 master copy.
std::vector<float> shared_params(Llama& cpu_model) {
  cpu_model.init_weights(21);
  auto p = cpu_model.get_params();
  for (const auto& info : cpu_model.layout().params()) {
    for (std::size_t i = 0; i < info.numel; ++i) {
      float& x = p[info.offset + i];
      x = info.is_matrix() ? 3.0f * x : 1.0f + 0.1f * std::sin(0.7f * float(i) + float(info.offset % 13));
      x = bf16_round(x);
    }
  }
  return p;
}

struct Pair {
  Backends backends;
  ModelConfig config;
  std::unique_ptr<Llama> cpu, gpu;
};

// Both models with the same parameters. The attention mode is read when the cuda backend is
// made, so the environment only needs to hold during construction.
Pair make_pair_for(const ModelCase& c) {
  Pair p;
  {
    ScopedEnv env("BTM_CUDA_ATTENTION", c.attention);
    p.backends = make_backends();
  }
  p.config = case_config(c);
  p.cpu = std::make_unique<Llama>(p.config, *p.backends.cpu);
  p.gpu = std::make_unique<Llama>(p.config, *p.backends.gpu);
  const auto params = shared_params(*p.cpu);
  p.cpu->set_params(params);
  p.gpu->set_params(params);
  EXPECT_EQ(p.gpu->get_params(), params) << "the master copy must round-trip exactly";
  return p;
}

double mean(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

class CudaModel : public ::testing::TestWithParam<ModelCase> {};

TEST_P(CudaModel, PerTokenNllAndMeanLossMatchTheCpuBackend) {
  auto p = make_pair_for(GetParam());
  const int batch = 2, seq = 128;
  auto tokens = random_tokens(batch, seq, p.config.vocab_size, 31);
  // The last target of each row ignored (only the last token is never an input): NLL exactly 0.
  tokens[seq] = -1;
  tokens[std::size_t(2) * (seq + 1) - 1] = -1;
  std::vector<float> want(std::size_t(batch) * seq), got(want.size());
  p.cpu->token_nll(tokens.data(), batch, seq, want.data());
  p.gpu->token_nll(tokens.data(), batch, seq, got.data());

  // The fixture is only a test if the model's predictions differ from token to token.
  double var = 0;
  const double mu = mean(want);
  for (float x : want) var += (x - mu) * (x - mu);
  ASSERT_GT(std::sqrt(var / double(want.size())), 0.2) << "weights too small for a meaningful comparison";

  expect_close(got, want, kTokenNllAtol, 0, "per-token NLL");
  EXPECT_EQ(got[std::size_t(seq) - 1], 0.0f) << "ignored target";
  EXPECT_EQ(got[std::size_t(2) * seq - 1], 0.0f) << "ignored target";
  EXPECT_NEAR(mean(got), mean(want), kMeanLossAtol);

  // forward_backward reports the same loss sum and target count as token_nll.
  p.gpu->zero_grads();
  const LossSum fb = p.gpu->forward_backward(tokens.data(), batch, seq, 1.0f);
  EXPECT_EQ(fb.tokens, std::uint64_t(batch * seq - 2));
  const double want_sum = mean(want) * double(want.size());
  EXPECT_NEAR(fb.nll / double(fb.tokens), want_sum / double(fb.tokens), kMeanLossAtol);
}

TEST_P(CudaModel, EveryGradientTensorMatchesTheCpuBackendInRelativeNorm) {
  auto p = make_pair_for(GetParam());
  const int batch = 2, seq = 128;
  const auto tokens = random_tokens(batch, seq, p.config.vocab_size, 32);
  const float scale = 1.0f / float(batch * seq);  // the trainer's mean-loss scaling
  std::vector<float> want(p.cpu->layout().total()), got(want.size());
  p.cpu->zero_grads();
  p.cpu->forward_backward(tokens.data(), batch, seq, scale);
  p.backends.cpu->copy_to_host(want.data(), p.cpu->grads(), want.size() * sizeof(float));
  p.gpu->zero_grads();
  p.gpu->forward_backward(tokens.data(), batch, seq, scale);
  p.backends.gpu->copy_to_host(got.data(), p.gpu->grads(), got.size() * sizeof(float));

  for (const auto& info : p.cpu->layout().params()) {
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < info.numel; ++i) {
      const double w = want[info.offset + i], g = got[info.offset + i];
      diff += (g - w) * (g - w);
      norm += w * w;
    }
    ASSERT_GT(norm, 0.0) << info.name << ": zero gradient on the cpu backend";
    const double rel = std::sqrt(diff / norm);
    EXPECT_LE(rel, kGradRelNorm) << info.name << ": relative error " << rel << " (NaN fails too)";
  }
}

TEST_P(CudaModel, KvCacheDecodeMatchesTheFullForwardPass) {
  auto p = make_pair_for(GetParam());
  const int seq = 40;
  const auto tokens = random_tokens(1, seq, p.config.vocab_size, 33);
  std::vector<float> full(seq);
  p.gpu->token_nll(tokens.data(), 1, seq, full.data());
  auto nll_from = [](const std::vector<float>& logits, int target) {
    double mx = -1e30, s = 0;
    for (float x : logits) mx = std::max<double>(mx, x);
    for (float x : logits) s += std::exp(x - mx);
    return mx + std::log(s) - logits[target];
  };
  // Prefill 5 tokens (Tq = Tk), then one at a time (Tq = 1 < Tk: the fallback kernels).
  p.gpu->reset_cache();
  auto logits = p.gpu->decode(tokens.data(), 5);
  ASSERT_EQ(logits.size(), std::size_t(p.config.vocab_size));
  EXPECT_NEAR(nll_from(logits, tokens[5]), full[4], kTokenNllAtol);
  for (int t = 5; t < seq; ++t) {
    logits = p.gpu->decode(tokens.data() + t, 1);
    EXPECT_NEAR(nll_from(logits, tokens[t + 1]), full[t], kTokenNllAtol) << "position " << t;
  }
  EXPECT_EQ(p.gpu->cache_length(), seq);
  // A second sequence after reset_cache starts from an empty cache again.
  p.gpu->reset_cache();
  logits = p.gpu->decode(tokens.data(), 1);
  EXPECT_NEAR(nll_from(logits, tokens[1]), full[0], kTokenNllAtol);
}

INSTANTIATE_TEST_SUITE_P(
    Llama, CudaModel,
    ::testing::Values(ModelCase{"GqaAuto", 2, false, "auto"}, ModelCase{"GqaFallback", 2, false, "fallback"},
                      ModelCase{"TiedAuto", 4, true, "auto"}, ModelCase{"TiedMqaFallback", 1, true, "fallback"}),
    [](const ::testing::TestParamInfo<ModelCase>& param) { return std::string(param.param.name); });

}  // namespace
}  // namespace btm::test
