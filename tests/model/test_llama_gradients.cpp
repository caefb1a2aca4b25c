// The whole model's backward pass against finite differences of its forward pass, and the
// forward pass's basic properties.
#include <gtest/gtest.h>

#include <cmath>

#include "btm/error.hpp"
#include "btm/model/llama.hpp"
#include "gradient_check.hpp"
#include "tiny_model.hpp"

namespace {

using btm::Llama;

}  // namespace

TEST(LlamaGradients, MatchFiniteDifferencesWithGroupedKvHeads) {
  auto c = btm::test::tiny_config(2);
  btm::test::check_gradients(c, btm::test::random_tokens(2, 6, c.vocab_size, 1), 2, 6);
}

TEST(LlamaGradients, MatchFiniteDifferencesWithTiedEmbeddings) {
  auto c = btm::test::tiny_config(4, true);
  btm::test::check_gradients(c, btm::test::random_tokens(3, 5, c.vocab_size, 2), 3, 5);
}

TEST(LlamaGradients, IgnoredTargetsContributeNothing) {
  auto c = btm::test::tiny_config();
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(3);
  auto tokens = btm::test::random_tokens(1, 6, c.vocab_size, 5);
  auto masked = tokens;
  masked[6] = -1;  // the last target
  std::vector<float> nll(6), nll_masked(6);
  model.token_nll(tokens.data(), 1, 6, nll.data());
  model.token_nll(masked.data(), 1, 6, nll_masked.data());
  EXPECT_EQ(nll_masked[5], 0.0f);
  for (int t = 0; t < 5; ++t) EXPECT_EQ(nll[t], nll_masked[t]);  // causal: earlier positions unchanged
  auto r = model.forward_backward(masked.data(), 1, 6, 1.0f);
  EXPECT_EQ(r.tokens, 5u);
}

TEST(LlamaGradients, PositionsDependOnlyOnThePrefix) {
  auto c = btm::test::tiny_config();
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(3);
  auto a = btm::test::random_tokens(1, 6, c.vocab_size, 8);
  auto b = a;
  b[5] = (b[5] + 1) % c.vocab_size;  // change input position 5 only
  std::vector<float> na(6), nb(6);
  model.token_nll(a.data(), 1, 6, na.data());
  model.token_nll(b.data(), 1, 6, nb.data());
  for (int t = 0; t < 4; ++t) EXPECT_EQ(na[t], nb[t]) << t;
  EXPECT_NE(na[5], nb[5]);
}

TEST(LlamaDecode, KvCacheReproducesTheFullForwardPass) {
  auto c = btm::test::tiny_config(2);
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(4);
  auto tokens = btm::test::random_tokens(1, 7, c.vocab_size, 9);
  // Full pass: NLL of every target.
  std::vector<float> nll(7);
  model.token_nll(tokens.data(), 1, 7, nll.data());
  // Incremental: prefill 3 tokens, then one at a time; NLL from the returned logits.
  model.reset_cache();
  auto logits = model.decode(tokens.data(), 3);
  EXPECT_NEAR(btm::test::nll_of_logits(logits, tokens[3]), nll[2], 1e-4);
  for (int t = 3; t < 7; ++t) {
    logits = model.decode(tokens.data() + t, 1);
    EXPECT_NEAR(btm::test::nll_of_logits(logits, tokens[t + 1]), nll[t], 1e-4) << t;
  }
  EXPECT_EQ(model.cache_length(), 7);
  EXPECT_THROW(model.decode(tokens.data(), 2), btm::Error);  // past the context of 8
}

TEST(LlamaInit, IsDeterministicAndScalesResidualProjections) {
  auto c = btm::test::tiny_config();
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 8;
  auto backend = btm::make_backend("cpu");
  Llama a(c, *backend), b(c, *backend);
  a.init_weights(5);
  b.init_weights(5);
  EXPECT_EQ(a.get_params(), b.get_params());
  auto p = a.get_params();
  auto stddev = [&](const std::string& name) {
    const auto& info = a.layout().at(name);
    double s = 0;
    for (std::size_t i = 0; i < info.numel; ++i) s += double(p[info.offset + i]) * p[info.offset + i];
    return std::sqrt(s / info.numel);
  };
  EXPECT_NEAR(stddev("model.layers.0.mlp.up_proj.weight"), 0.02, 0.002);
  EXPECT_NEAR(stddev("model.layers.0.mlp.down_proj.weight"), 0.02 / 4.0, 0.0005);  // 1/sqrt(2*8)
  EXPECT_EQ(p[a.layout().at("model.norm.weight").offset], 1.0f);
}
