#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "btm/model/sampler.hpp"
#include "tiny_model.hpp"

TEST(Sampler, ZeroTemperatureIsGreedy) {
  std::mt19937_64 rng(1);
  EXPECT_EQ(btm::sample_token({0.1f, 2.0f, 1.9f, -3.0f}, 0.0, 0.9, rng), 1);
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
  // Probabilities about 0.64, 0.24, 0.09, 0.03: top_p = 0.7 keeps the first two only.
  const std::vector<float> logits = {3.0f, 2.0f, 1.0f, 0.0f};
  std::mt19937_64 rng(2);
  std::map<int, int> counts;
  for (int i = 0; i < 4000; ++i) ++counts[btm::sample_token(logits, 1.0, 0.7, rng)];
  EXPECT_EQ(counts.count(2), 0u);
  EXPECT_EQ(counts.count(3), 0u);
  const double share0 = counts[0] / 4000.0;  // renormalised: 0.64 / 0.88
  EXPECT_NEAR(share0, std::exp(3.0) / (std::exp(3.0) + std::exp(2.0)), 0.03);
}

TEST(Sampler, TemperatureOneMatchesTheSoftmax) {
  const std::vector<float> logits = {0.0f, std::log(3.0f)};
  std::mt19937_64 rng(3);
  int ones = 0;
  for (int i = 0; i < 8000; ++i) ones += btm::sample_token(logits, 1.0, 1.0, rng);
  EXPECT_NEAR(ones / 8000.0, 0.75, 0.02);
}

TEST(Sampler, GenerationIsDeterministicAndSurvivesAFullContext) {
  auto c = btm::test::tiny_config();
  auto backend = btm::make_backend("cpu");
  btm::Llama model(c, *backend);
  model.init_weights(6);
  btm::SamplingOptions o;
  o.max_tokens = 30;  // beyond the context of 8: the cache restarts from the last half
  o.seed = 9;
  const auto a = btm::generate(model, {1, 2, 3}, o);
  const auto b = btm::generate(model, {1, 2, 3}, o);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 30u);
  for (auto t : a) EXPECT_TRUE(t >= 0 && t < c.vocab_size);
  o.stop_token = a[4];
  const auto stopped = btm::generate(model, {1, 2, 3}, o);
  EXPECT_LE(stopped.size(), 5u);
  EXPECT_EQ(stopped.back(), a[4]);
}

TEST(Sampler, IdsBeyondTheTokenizersVocabularyAreNeverDrawn) {
  auto c = btm::test::tiny_config();
  auto backend = btm::make_backend("cpu");
  btm::Llama model(c, *backend);
  model.init_weights(7);
  btm::SamplingOptions o;
  o.max_tokens = 40;
  o.temperature = 5.0;  // flat: without the limit, ids above it come up
  o.top_p = 1.0;
  o.vocab_limit = 4;
  ASSERT_GT(c.vocab_size, 8);
  for (auto t : btm::generate(model, {1, 2, 3}, o)) EXPECT_TRUE(t >= 0 && t < 4) << t;
  o.temperature = 0;
  for (auto t : btm::generate(model, {1, 2, 3}, o)) EXPECT_TRUE(t >= 0 && t < 4) << t;
}
