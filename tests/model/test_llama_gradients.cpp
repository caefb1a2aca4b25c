// The whole model's backward pass against finite differences of its forward pass, and the
// forward pass's basic properties.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

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

TEST(LlamaGradients, MatchFiniteDifferencesWithTheHeadInUnevenRowBlocks) {
  auto c = btm::test::tiny_config(2);
  // 12 rows in blocks of 5, 5 and 2.
  btm::test::check_gradients(c, btm::test::random_tokens(2, 6, c.vocab_size, 1), 2, 6,
                             [](Llama& m) { m.set_head_rows(5); });
}

// The LM head and cross-entropy in row blocks against the whole batch in one block: the
// per-token losses and every gradient but the head's are the same bits (each row's logits
// and d(loss)/d(hidden) are computed alike); the head's weight gradient, summed block by
// block, only differs by rounding.
TEST(LlamaHead, RowBlocksGiveTheWholeBatchResult) {
  for (bool tied : {false, true}) {
    auto c = btm::test::tiny_config(2, tied);
    auto backend = btm::make_backend("cpu");
    Llama model(c, *backend);
    model.init_weights(13);
    const int batch = 3, seq = 7, n = batch * seq;
    auto tokens = btm::test::random_tokens(batch, seq, c.vocab_size, 21);
    tokens[7] = -1;  // an ignored target (the last of sequence 0)
    auto run = [&](int rows, std::vector<float>& nll) {
      model.set_head_rows(rows);
      model.token_nll(tokens.data(), batch, seq, nll.data());
      model.zero_grads();
      const auto r = model.forward_backward(tokens.data(), batch, seq, 0.5f);
      std::vector<float> g(model.layout().total());
      backend->copy_to_host(g.data(), model.grads(), g.size() * sizeof(float));
      return std::make_pair(r.nll, g);
    };
    std::vector<float> nll_whole(n), nll_blocks(n);
    const auto whole = run(n, nll_whole);
    for (int rows : {1, 4, 8}) {
      const auto blocks = run(rows, nll_blocks);
      EXPECT_EQ(nll_blocks, nll_whole) << "rows=" << rows;
      EXPECT_NEAR(blocks.first, whole.first, 1e-9 * std::abs(whole.first)) << "rows=" << rows;
      const auto& head = model.layout().at(tied ? "model.embed_tokens.weight" : "lm_head.weight");
      for (std::size_t i = 0; i < whole.second.size(); ++i) {
        const bool in_head = i >= head.offset && i < head.offset + head.numel;
        if (in_head) {
          EXPECT_NEAR(blocks.second[i], whole.second[i], 1e-6 + 1e-5 * std::abs(whole.second[i]))
              << "rows=" << rows << " tied=" << tied << " i=" << i;
        } else {
          ASSERT_EQ(blocks.second[i], whole.second[i]) << "rows=" << rows << " tied=" << tied << " i=" << i;
        }
      }
    }
  }
}

TEST(LlamaHead, TargetOutsideTheVocabularyIsReportedWithItsPlace) {
  auto c = btm::test::tiny_config();
  auto backend = btm::make_backend("cpu");
  Llama model(c, *backend);
  model.init_weights(3);
  auto tokens = btm::test::random_tokens(2, 6, c.vocab_size, 5);
  tokens[7 + 4] = c.vocab_size;  // batch row 1, position 4
  model.zero_grads();
  try {
    model.forward_backward(tokens.data(), 2, 6, 1.0f);
    FAIL() << "no error";
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("target token 37 at batch row 1, position 4"), std::string::npos) << e.what();
  }
  std::vector<float> g(model.layout().total());
  backend->copy_to_host(g.data(), model.grads(), g.size() * sizeof(float));
  for (float x : g) ASSERT_EQ(x, 0.0f);  // nothing was accumulated
}

// The allreduce of a bucket starts when it is announced: by then no later kernel of the
// backward pass may write it.
TEST(LlamaGradients, EachBucketIsFinalWhenAnnouncedAndTheBucketsCoverEveryGradient) {
  for (auto c : {btm::test::tiny_config(2), btm::test::tiny_config(4, true), btm::test::tiny_moe_config()}) {
    auto backend = btm::make_backend("cpu");
    Llama model(c, *backend);
    model.init_weights(17);
    const auto buckets = model.gradient_buckets();
    ASSERT_EQ(buckets.size(), std::size_t(c.num_hidden_layers) + 2);
    std::vector<int> covered(model.layout().total(), 0);
    for (auto [offset, count] : buckets) {
      for (std::size_t i = offset; i < offset + count; ++i) ++covered[i];
    }
    for (std::size_t i = 0; i < covered.size(); ++i) ASSERT_EQ(covered[i], 1) << i;
    auto tokens = btm::test::random_tokens(2, 6, c.vocab_size, 23);
    model.zero_grads();
    model.accumulate_gradients(tokens.data(), 2, 6, 0.25f);  // an earlier micro-batch
    std::vector<std::vector<float>> seen;
    model.accumulate_gradients(tokens.data(), 2, 6, 0.25f, [&](int b) {
      ASSERT_EQ(std::size_t(b), seen.size());
      std::vector<float> g(buckets[b].second);
      backend->copy_to_host(g.data(), model.grads() + buckets[b].first, g.size() * sizeof(float));
      seen.push_back(std::move(g));
    });
    ASSERT_EQ(seen.size(), buckets.size());
    std::vector<float> all(model.layout().total());
    backend->copy_to_host(all.data(), model.grads(), all.size() * sizeof(float));
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      const std::vector<float> after(all.begin() + buckets[b].first,
                                     all.begin() + buckets[b].first + buckets[b].second);
      EXPECT_EQ(seen[b], after) << "bucket " << b << " changed after it was announced";
    }
  }
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
