// Bitwise reproducibility of the cuda backend, which exact resume of training relies on:
// the embedding scatter-add (sorted, fixed-order sums, no atomics) on runs of repeated tokens
// that cross its 32-row chunks, and a whole forward + backward pass of the model with the
// fallback attention kernels (cuDNN's fused attention backward promises no summation order
// for dQ, so it is not asserted here).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "btm/error.hpp"
#include "btm/model/llama.hpp"
#include "gpu_test_util.hpp"
#include "model/tiny_model.hpp"

namespace btm::test {
namespace {

using Kind = Buffer::Kind;

// Runs of 1, 31, 32, 33, 64 and 2000 rows, placed so that they start and end on and off the
// 32-row chunk boundaries of the sorted order, shuffled into random row order.
std::vector<std::int32_t> runs_of_tokens(int vocab, std::mt19937& rng) {
  std::vector<std::int32_t> t;
  const int counts[] = {1, 31, 32, 33, 64, 2000, 5, 1, 97};
  int next = 3;
  for (int c : counts) {
    t.insert(t.end(), std::size_t(c), next);
    next += 7;
  }
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  for (int i = 0; i < 700; ++i) t.push_back(pick(rng));
  std::shuffle(t.begin(), t.end(), rng);
  return t;
}

TEST(CudaEmbedding, ScatterAddIsBitwiseReproducibleAcrossChunkBoundaries) {
  auto b = make_backends();
  std::mt19937 rng(77);
  const int vocab = 300, d = 96;
  const auto tokens = runs_of_tokens(vocab, rng);
  const int n = int(tokens.size());
  const auto dx = random_bf16(std::size_t(n) * d, -1, 1, rng);
  const auto dtable0 = random_f32(std::size_t(vocab) * d, -1, 1, rng);
  Buffer ctok(*b.cpu, tokens), cdx(*b.cpu, Kind::compute, dx.size(), dx);
  Buffer cdt(*b.cpu, Kind::f32, dtable0.size(), dtable0);
  b.cpu->embedding_backward(ctok.i32(), cdx.get(), cdt.f32(), n, d);
  Buffer gtok(*b.gpu, tokens), gdx(*b.gpu, Kind::compute, dx.size(), dx);
  std::vector<std::vector<float>> runs;
  for (int rep = 0; rep < 3; ++rep) {
    Buffer gdt(*b.gpu, Kind::f32, dtable0.size(), dtable0);
    b.gpu->embedding_backward(gtok.i32(), gdx.get(), gdt.f32(), n, d);
    runs.push_back(gdt.read());
    EXPECT_TRUE(gdt.guard_intact());
  }
  EXPECT_EQ(runs[0], runs[1]) << "not bitwise reproducible";
  EXPECT_EQ(runs[0], runs[2]) << "not bitwise reproducible";
  // Against the cpu's row-order sums: the 2000-row run sums bf16-exact values of |x| <= 1
  // in fp32 in another association; random-sign rounding errors of <= 2^-24 * |partial sum|
  // (partial sums ~ sqrt(2000)) stay far below 1e-6 * n.
  expect_close(runs[0], cdt.read(), 1e-6 * n, 1e-6, "embedding scatter-add with long runs");
}

TEST(CudaEmbedding, NegativeTokenInTheBackwardIsReportedAndSkipped) {
  auto gpu = make_backend("cuda");
  const int d = 40, vocab = 4;
  Buffer tokens(*gpu, std::vector<std::int32_t>{1, -2, 1, 3});
  Buffer dx(*gpu, Kind::compute, 4 * d, std::vector<float>(4 * d, 1.f));
  Buffer dtable(*gpu, Kind::f32, std::size_t(vocab) * d, std::vector<float>(std::size_t(vocab) * d, 0.f));
  gpu->embedding_backward(tokens.i32(), dx.get(), dtable.f32(), 4, d);
  try {
    gpu->synchronize();
    FAIL() << "a negative token went unreported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token -2 at row 1"), std::string::npos) << e.what();
  }
  const auto got = dtable.read();
  for (int j = 0; j < d; ++j) {
    EXPECT_EQ(got[std::size_t(1) * d + j], 2.f);
    EXPECT_EQ(got[std::size_t(3) * d + j], 1.f);
    EXPECT_EQ(got[j], 0.f);
  }
}

TEST(CudaModelDeterminism, ForwardBackwardIsBitwiseReproducibleWithFallbackAttention) {
  std::unique_ptr<Backend> gpu;
  {
    ScopedEnv env("BTM_CUDA_ATTENTION", "fallback");
    gpu = make_backend("cuda");
  }
  auto config = tiny_config(2);
  config.hidden_size = 64;
  config.intermediate_size = 0;
  config.vocab_size = 96;
  config.max_position_embeddings = 64;
  Llama model(config, *gpu);
  model.init_weights(5);
  const int batch = 4, seq = 64;
  const auto tokens = random_tokens(batch, seq, config.vocab_size, 6);
  std::vector<std::vector<float>> grads;
  std::vector<double> losses;
  for (int rep = 0; rep < 2; ++rep) {
    model.zero_grads();
    losses.push_back(model.forward_backward(tokens.data(), batch, seq, 1.0f / float(batch * seq)).nll);
    std::vector<float> g(model.layout().total());
    gpu->copy_to_host(g.data(), model.grads(), g.size() * sizeof(float));
    grads.push_back(std::move(g));
  }
  EXPECT_EQ(losses[0], losses[1]);
  for (const auto& p : model.layout().params()) {
    EXPECT_TRUE(std::equal(grads[0].begin() + long(p.offset), grads[0].begin() + long(p.offset + p.numel),
                           grads[1].begin() + long(p.offset)))
        << p.name << " differs between two identical passes";
  }
}

}  // namespace
}  // namespace btm::test
