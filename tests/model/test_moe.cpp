// The MoE model (BTX): gradients of experts, router and load balancing against finite
// differences in every routing mode; identical experts reproduce the dense model; routing
// statistics, capacity, sampling, frozen experts, KV-cache decode, FFN input means.
#include <gtest/gtest.h>

#include <cmath>

#include "btm/error.hpp"
#include "btm/model/llama.hpp"
#include "gradient_check.hpp"
#include "tiny_model.hpp"

namespace {

using btm::Llama;
using btm::ModelConfig;

std::vector<float> token_nll(Llama& model, const std::vector<std::int32_t>& tokens, int batch, int seq) {
  std::vector<float> nll(std::size_t(batch) * seq);
  model.token_nll(tokens.data(), batch, seq, nll.data());
  return nll;
}

std::vector<float> gradients(Llama& model, const std::vector<std::int32_t>& tokens, int batch, int seq) {
  model.zero_grads();
  model.forward_backward(tokens.data(), batch, seq, 1.0f);
  std::vector<float> g(model.layout().total());
  model.backend().copy_to_host(g.data(), model.grads(), g.size() * sizeof(float));
  return g;
}

// An MoE model whose experts are all copies of a dense model's FFN; every other tensor copied
// by name; the routers random (not zero: routing must really happen).
std::vector<float> moe_params_from_dense(const Llama& dense, const Llama& moe, std::uint64_t seed) {
  const auto dp = dense.get_params();
  auto mp = moe.get_params();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& p : moe.layout().params()) {
    std::string from = p.name;
    const auto experts = from.find("block_sparse_moe.experts.");
    if (from.find("block_sparse_moe.gate.") != std::string::npos) {
      for (std::size_t i = 0; i < p.numel; ++i) mp[p.offset + i] = normal(rng);
      continue;
    }
    if (experts != std::string::npos) {
      const std::string w = from.substr(from.rfind(".weight") - 2, 2);  // w1 | w2 | w3
      const std::string dense_name = w == "w1" ? "gate_proj" : w == "w2" ? "down_proj" : "up_proj";
      from = from.substr(0, experts) + "mlp." + dense_name + ".weight";
    }
    const auto& src = dense.layout().at(from);
    std::copy_n(dp.begin() + src.offset, p.numel, mp.begin() + p.offset);
  }
  return mp;
}

void expect_near(const std::vector<float>& a, const std::vector<float>& b, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << what << " " << i;
}

}  // namespace

TEST(MoeGradients, TopTwoMatchFiniteDifferencesWithTheBtxLoadBalancingLoss) {
  auto c = btm::test::tiny_moe_config(3, 2);
  c.router_aux_loss_coef = 0.5;  // large enough to show in every router gradient
  btm::test::check_gradients(c, btm::test::random_tokens(2, 6, c.vocab_size, 1), 2, 6);
}

TEST(MoeGradients, TopTwoMatchFiniteDifferencesWithTheSwitchLoadBalancingLoss) {
  auto c = btm::test::tiny_moe_config(4, 2);
  c.router_aux_loss_coef = 0.5;
  c.moe_aux_loss = "switch";
  btm::test::check_gradients(c, btm::test::random_tokens(2, 6, c.vocab_size, 2), 2, 6);
}

TEST(MoeGradients, SoftRoutingMatchesFiniteDifferences) {
  auto c = btm::test::tiny_moe_config(3, 2, "soft");
  c.router_aux_loss_coef = 0.5;
  btm::test::check_gradients(c, btm::test::random_tokens(2, 5, c.vocab_size, 3), 2, 5);
}

TEST(MoeGradients, SwitchRoutingWithDroppedTokensMatchesFiniteDifferences) {
  auto c = btm::test::tiny_moe_config(4, 1, "switch");
  c.router_aux_loss_coef = 0.5;
  c.moe_capacity_factor = 0.5;  // 2 tokens per expert of 12: some are dropped
  btm::test::check_gradients(c, btm::test::random_tokens(2, 6, c.vocab_size, 4), 2, 6, [](Llama& m) {
    const auto tokens = btm::test::random_tokens(2, 6, m.config().vocab_size, 4);
    m.forward_backward(tokens.data(), 2, 6, 1.0f);
    EXPECT_GT(m.routing_stats().dropped[0] + m.routing_stats().dropped[1], 0u);
  });
}

TEST(MoeGradients, SampledTopOneMatchesFiniteDifferencesForAFixedSeed) {
  auto c = btm::test::tiny_moe_config(3, 1, "sample_top1");
  c.router_aux_loss_coef = 0.5;
  btm::test::check_gradients(c, btm::test::random_tokens(2, 6, c.vocab_size, 5), 2, 6,
                             [](Llama& m) { m.set_routing_seed(1234); });
}

TEST(MoeGradients, FrozenExpertsGetNoGradientAndTheRestIsUnchanged) {
  auto c = btm::test::tiny_moe_config(3, 2);
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(9);
  const auto tokens = btm::test::random_tokens(2, 6, c.vocab_size, 6);
  const auto all = gradients(model, tokens, 2, 6);
  model.set_train_experts(false);
  const auto frozen = gradients(model, tokens, 2, 6);
  int router_nonzero = 0;
  for (const auto& p : model.layout().params()) {
    const bool expert = p.name.find(".experts.") != std::string::npos;
    for (std::size_t i = 0; i < p.numel; ++i) {
      if (expert) {
        ASSERT_EQ(frozen[p.offset + i], 0.0f) << p.name;
      } else {
        ASSERT_EQ(frozen[p.offset + i], all[p.offset + i]) << p.name;  // bitwise: the same computation
      }
      router_nonzero += p.name.find(".gate.weight") != std::string::npos && frozen[p.offset + i] != 0.0f;
    }
  }
  EXPECT_GT(router_nonzero, 0);
}

TEST(MoeModel, IdenticalExpertsReproduceTheDenseModelForAnyRouterAndK) {
  auto backend = btm::make_backend("cpu");
  const auto dense_config = btm::test::tiny_config();
  Llama dense(dense_config, *backend);
  dense.init_weights(3);
  const auto tokens = btm::test::random_tokens(3, 7, dense_config.vocab_size, 8);
  const auto want = token_nll(dense, tokens, 3, 7);
  const auto dense_grads = gradients(dense, tokens, 3, 7);
  struct Mode {
    std::string routing;
    int k;
  };
  for (const Mode& mode : {Mode{"top_k", 1}, Mode{"top_k", 2}, Mode{"top_k", 3}, Mode{"soft", 2}}) {
    const std::string what = mode.routing + " k=" + std::to_string(mode.k);
    auto c = btm::test::tiny_moe_config(3, mode.k, mode.routing);
    c.router_aux_loss_coef = 0;
    Llama moe(c, *backend);
    moe.set_params(moe_params_from_dense(dense, moe, 17 + mode.k));
    expect_near(token_nll(moe, tokens, 3, 7), want, 2e-5, what);
    // The experts' gradients add up to the dense FFN's (the gates of a token sum to one), and
    // every other tensor's gradient is the dense one.
    const auto g = gradients(moe, tokens, 3, 7);
    for (const auto& p : dense.layout().params()) {
      std::vector<float> mine(p.numel, 0.0f), theirs(dense_grads.begin() + p.offset, dense_grads.begin() + p.offset + p.numel);
      const auto mlp = p.name.find("mlp.");
      if (mlp == std::string::npos) {
        const auto& q = moe.layout().at(p.name);
        std::copy_n(g.begin() + q.offset, p.numel, mine.begin());
      } else {
        const std::string w = p.name.find("gate_proj") != std::string::npos  ? "w1"
                              : p.name.find("down_proj") != std::string::npos ? "w2"
                                                                               : "w3";
        for (int e = 0; e < 3; ++e) {
          const auto& q = moe.layout().at(p.name.substr(0, mlp) + "block_sparse_moe.experts." + std::to_string(e) +
                                          "." + w + ".weight");
          for (std::size_t i = 0; i < p.numel; ++i) mine[i] += g[q.offset + i];
        }
      }
      expect_near(mine, theirs, 2e-4, what + " " + p.name);
    }
  }
}

TEST(MoeModel, RoutingStatisticsCountEveryTokenSlotAndGate) {
  auto c = btm::test::tiny_moe_config(3, 2);
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(4);
  const auto tokens = btm::test::random_tokens(2, 6, c.vocab_size, 10);
  token_nll(model, tokens, 2, 6);
  model.forward_backward(tokens.data(), 2, 6, 1.0f);
  const btm::RoutingStats& s = model.routing_stats();
  ASSERT_EQ(s.layers, 2);
  ASSERT_EQ(s.experts, 3);
  EXPECT_EQ(s.routed_tokens, 24u);
  for (int l = 0; l < 2; ++l) {
    double tokens_sum = 0, gates = 0;
    for (int e = 0; e < 3; ++e) tokens_sum += s.tokens[l * 3 + e], gates += s.gate_sum[l * 3 + e];
    EXPECT_EQ(tokens_sum, 48.0);         // 24 tokens x 2 experts each
    EXPECT_NEAR(gates, 24.0, 1e-4);      // renormalised gates sum to one per token
    EXPECT_EQ(s.dropped[l], 0u);
  }
  model.reset_routing_stats();
  EXPECT_EQ(model.routing_stats().routed_tokens, 0u);
  EXPECT_EQ(model.routing_stats().tokens, std::vector<double>(6, 0.0));
  // A dense model has no routing.
  Llama dense(btm::test::tiny_config(), *backend);
  EXPECT_EQ(dense.routing_stats().layers, 0);
  dense.init_weights(1);
  EXPECT_EQ(dense.forward_backward(tokens.data(), 2, 6, 1.0f).aux, 0.0);
}

TEST(MoeModel, SwitchCapacityDropsTokensWhileTrainingOnly) {
  auto c = btm::test::tiny_moe_config(2, 1, "switch");
  c.moe_capacity_factor = 0.75;  // ceil(0.75 * 12 / 2) = 5 tokens per expert: at least 2 of 12 dropped
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(5);
  const auto tokens = btm::test::random_tokens(2, 6, c.vocab_size, 11);
  model.forward_backward(tokens.data(), 2, 6, 1.0f);
  const btm::RoutingStats& s = model.routing_stats();
  for (int l = 0; l < 2; ++l) {
    EXPECT_LE(s.tokens[l * 2], 5.0);
    EXPECT_LE(s.tokens[l * 2 + 1], 5.0);
    EXPECT_GE(s.dropped[l], 2u);
    EXPECT_EQ(s.tokens[l * 2] + s.tokens[l * 2 + 1] + double(s.dropped[l]), 12.0);
  }
  model.reset_routing_stats();
  token_nll(model, tokens, 2, 6);  // evaluation is dropless
  for (int l = 0; l < 2; ++l) {
    EXPECT_EQ(s.dropped[l], 0u);
    EXPECT_EQ(s.tokens[l * 2] + s.tokens[l * 2 + 1], 12.0);
  }
}

TEST(MoeModel, SampledTopOneIsDeterministicGivenTheSeed) {
  auto c = btm::test::tiny_moe_config(4, 1, "sample_top1");
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(6);
  const auto tokens = btm::test::random_tokens(4, 8, c.vocab_size, 12);
  auto train = [&](std::uint64_t seed) {
    model.set_routing_seed(seed);
    model.reset_routing_stats();
    const auto r = model.forward_backward(tokens.data(), 4, 8, 1.0f);
    return std::make_pair(r.nll, model.routing_stats().tokens);
  };
  const auto a = train(1), b = train(1), other = train(2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a.second, other.second);  // another seed routes otherwise
  // Evaluation takes the argmax: the seed does not matter.
  model.set_routing_seed(1);
  const auto e1 = token_nll(model, tokens, 4, 8);
  model.set_routing_seed(2);
  EXPECT_EQ(token_nll(model, tokens, 4, 8), e1);
}

TEST(MoeModel, KvCacheDecodeReproducesTheFullForwardPass) {
  for (const std::string routing : {"top_k", "switch", "soft"}) {
    auto c = btm::test::tiny_moe_config(3, 2, routing);
    auto backend = btm::make_backend("cpu");
    Llama model(c, *backend);
    model.init_weights(4);
    auto p = model.get_params();
    for (auto& x : p) x *= 3.0f;  // sharper routing
    model.set_params(p);
    const auto tokens = btm::test::random_tokens(1, 7, c.vocab_size, 9);
    const auto nll = token_nll(model, tokens, 1, 7);
    model.reset_cache();
    auto logits = model.decode(tokens.data(), 3);
    EXPECT_NEAR(btm::test::nll_of_logits(logits, tokens[3]), nll[2], 1e-4) << routing;
    for (int t = 3; t < 7; ++t) {
      logits = model.decode(tokens.data() + t, 1);
      EXPECT_NEAR(btm::test::nll_of_logits(logits, tokens[t + 1]), nll[t], 1e-4) << routing << " " << t;
    }
  }
}

TEST(MoeModel, FfnInputMeansAreTheMeanPostAttentionNormOutput) {
  for (int experts : {0, 3}) {
    auto c = btm::test::tiny_moe_config(experts, 2);
    auto backend = btm::make_backend("cpu");
    Llama model(c, *backend);
    model.init_weights(13);
    const int d = c.hidden_size, H = c.num_attention_heads, KV = c.kv_heads(), hd = c.head_dim();
    // Sequences of one token: attention returns that token's value, rotary position 0 is the
    // identity, so layer 0's FFN input is computable by hand.
    const std::vector<std::int32_t> tokens{5, 0, 17, 0, 30, 0};
    const auto means = model.ffn_input_means(tokens.data(), 3, 1);
    ASSERT_EQ(means.size(), std::size_t(c.num_hidden_layers) * d);
    const auto P = model.get_params();
    const auto& L = model.layout();
    auto W = [&](const std::string& name) { return P.data() + L.at(name).offset; };
    auto rmsnorm = [&](const std::vector<double>& x, const float* w) {
      double ss = 0;
      for (double v : x) ss += v * v;
      const double r = 1.0 / std::sqrt(ss / x.size() + c.rms_norm_eps);
      std::vector<double> y(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * w[i];
      return y;
    };
    std::vector<double> want(d, 0.0);
    for (int b = 0; b < 3; ++b) {
      std::vector<double> x(d);
      for (int i = 0; i < d; ++i) x[i] = W("model.embed_tokens.weight")[tokens[2 * b] * d + i];
      const auto h1 = rmsnorm(x, W("model.layers.0.input_layernorm.weight"));
      std::vector<double> v(KV * hd, 0.0), o(H * hd);
      for (int r = 0; r < KV * hd; ++r) {
        for (int i = 0; i < d; ++i) v[r] += W("model.layers.0.self_attn.v_proj.weight")[r * d + i] * h1[i];
      }
      for (int h = 0; h < H; ++h) {
        for (int i = 0; i < hd; ++i) o[h * hd + i] = v[(h / (H / KV)) * hd + i];
      }
      auto mid = x;
      for (int r = 0; r < d; ++r) {
        for (int i = 0; i < H * hd; ++i) mid[r] += W("model.layers.0.self_attn.o_proj.weight")[r * H * hd + i] * o[i];
      }
      const auto h2 = rmsnorm(mid, W("model.layers.0.post_attention_layernorm.weight"));
      for (int i = 0; i < d; ++i) want[i] += h2[i] / 3;
    }
    for (int i = 0; i < d; ++i) EXPECT_NEAR(means[i], want[i], 1e-5) << experts << " " << i;
    // Over longer sequences: the mean over every position of the batch.
    const auto t2 = btm::test::random_tokens(2, 5, c.vocab_size, 14);
    const auto both = model.ffn_input_means(t2.data(), 2, 5);
    const auto first = model.ffn_input_means(t2.data(), 1, 5);
    const auto second = model.ffn_input_means(t2.data() + 6, 1, 5);
    for (std::size_t i = 0; i < both.size(); ++i) EXPECT_NEAR(both[i], 0.5 * (first[i] + second[i]), 1e-5) << i;
  }
}

TEST(MoeModel, ExpertDownProjectionsAreScaledLikeTheDenseOnes) {
  auto c = btm::test::tiny_moe_config(2, 2);
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 8;
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(5);
  const auto p = model.get_params();
  auto stddev = [&](const std::string& name) {
    const auto& info = model.layout().at(name);
    double s = 0;
    for (std::size_t i = 0; i < info.numel; ++i) s += double(p[info.offset + i]) * p[info.offset + i];
    return std::sqrt(s / info.numel);
  };
  EXPECT_NEAR(stddev("model.layers.0.block_sparse_moe.experts.1.w1.weight"), 0.02, 0.002);
  EXPECT_NEAR(stddev("model.layers.0.block_sparse_moe.experts.1.w2.weight"), 0.02 / 4.0, 0.0005);
  EXPECT_NEAR(stddev("model.layers.7.block_sparse_moe.gate.weight"), 0.02, 0.004);
}

TEST(MoeModel, ParameterLayoutUsesMixtralNames) {
  auto c = btm::test::tiny_moe_config(3, 2);
  const auto layout = btm::ParamLayout::llama(c);
  EXPECT_EQ(layout.find("model.layers.0.mlp.gate_proj.weight"), nullptr);
  EXPECT_EQ(layout.at("model.layers.1.block_sparse_moe.gate.weight").shape, (std::vector<std::int64_t>{3, 16}));
  EXPECT_EQ(layout.at("model.layers.1.block_sparse_moe.experts.2.w1.weight").shape, (std::vector<std::int64_t>{24, 16}));
  EXPECT_EQ(layout.at("model.layers.1.block_sparse_moe.experts.2.w2.weight").shape, (std::vector<std::int64_t>{16, 24}));
  EXPECT_EQ(layout.at("model.layers.1.block_sparse_moe.experts.2.w3.weight").shape, (std::vector<std::int64_t>{24, 16}));
  EXPECT_EQ(layout.layer(1).router, layout.at("model.layers.1.block_sparse_moe.gate.weight").offset);
  ASSERT_EQ(layout.layer(1).experts.size(), 3u);
  EXPECT_EQ(layout.layer(1).experts[2].w2, layout.at("model.layers.1.block_sparse_moe.experts.2.w2.weight").offset);
  EXPECT_TRUE(layout.at("model.layers.1.block_sparse_moe.gate.weight").is_matrix());  // weight decay applies
}

TEST(MoeModel, BadMoeSettingsAreRefusedWithTheirKey) {
  auto message = [](const ModelConfig& c) {
    try {
      c.validate();
    } catch (const btm::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto c = btm::test::tiny_moe_config(2, 3);
  EXPECT_NE(message(c).find("model.num_experts_per_tok: 3 exceeds num_local_experts (2)"), std::string::npos) << message(c);
  c = btm::test::tiny_moe_config(2, 3, "switch");  // k is not used by switch routing
  EXPECT_EQ(message(c), "");
  c = btm::test::tiny_moe_config(2, 1, "topk");
  EXPECT_NE(message(c).find("model.moe_routing: unknown routing \"topk\""), std::string::npos) << message(c);
  c = btm::test::tiny_moe_config(2, 1);
  c.moe_aux_loss = "none";
  EXPECT_NE(message(c).find("model.moe_aux_loss"), std::string::npos) << message(c);
  c = btm::test::tiny_moe_config(2, 1);
  c.moe_capacity_factor = 0;
  EXPECT_NE(message(c).find("model.moe_capacity_factor"), std::string::npos) << message(c);
}

TEST(MoeModel, ArchitectureHashKeepsDenseModelsAndSeparatesMoeOnes) {
  const auto dense = btm::test::tiny_config();
  auto dense_other_k = dense;
  dense_other_k.num_experts_per_tok = 1;  // meaningless without experts
  EXPECT_EQ(dense.architecture_hash(), dense_other_k.architecture_hash());
  EXPECT_EQ(dense.architecture_differences(dense_other_k), "");
  const auto moe = btm::test::tiny_moe_config(3, 2);
  EXPECT_NE(moe.architecture_hash(), dense.architecture_hash());
  EXPECT_EQ(moe.architecture_differences(dense), "num_local_experts 3 vs 0, num_experts_per_tok 2 vs -, moe_routing top_k vs -");
  auto top1 = moe;
  top1.num_experts_per_tok = 1;
  EXPECT_EQ(top1.architecture_differences(moe), "num_experts_per_tok 1 vs 2");
  auto coef = moe;
  coef.router_aux_loss_coef = 0.1;  // a training setting: same function
  EXPECT_EQ(coef.architecture_hash(), moe.architecture_hash());
}
