// Embedding gather and its deterministic scatter-add backward.
#include "backend_test_util.hpp"
#include "btm/error.hpp"

namespace btm::test {
namespace {

struct EmbCase {
  int n, d, vocab;
};
class CpuEmbedding : public testing::TestWithParam<EmbCase> {};

TEST_P(CpuEmbedding, GathersRowsAndScatterAddsGradientsMatchingFiniteDifferences) {
  const auto [n, d, vocab] = GetParam();
  auto be = cpu_backend();
  const Vec table = random_vec(std::size_t(vocab) * d, 51);
  // Few distinct ids so that repeated tokens are common.
  const auto tokens = random_tokens(n, vocab, 52);
  auto T = upload(*be, table), TOK = upload(*be, tokens), X = upload(*be, Vec(std::size_t(n) * d));
  be->embedding_forward(TOK.i32(), T.get(), X.get(), n, d);
  const Vec x = download(*be, X, std::size_t(n) * d);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < d; ++c) ASSERT_EQ(x[i * d + c], table[tokens[i] * d + c]) << i << "," << c;

  const Vec dx = random_vec(std::size_t(n) * d, 53), dt0 = random_vec(table.size(), 54);
  auto DX = upload(*be, dx), DT = upload(*be, dt0);
  be->embedding_backward(TOK.i32(), DX.get(), DT.f32(), n, d);
  Vec dt = download(*be, DT, table.size());
  DVec want(table.size());
  for (std::size_t i = 0; i < want.size(); ++i) want[i] = dt0[i];
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < d; ++c) want[tokens[i] * d + c] += dx[i * d + c];
  EXPECT_REL_ERROR_BELOW(dt, want, 1e-6);

  for (std::size_t i = 0; i < dt.size(); ++i) dt[i] -= dt0[i];
  DVec td = to_double(table);
  auto loss = [&] {
    double s = 0;
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < d; ++c) s += td[tokens[i] * d + c] * dx[i * d + c];
    return s;
  };
  expect_gradient_matches("dtable", dt, loss, td, 300, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuEmbedding,
                         testing::Values(EmbCase{1, 1, 1}, EmbCase{1, 5, 3}, EmbCase{37, 17, 5},
                                         EmbCase{200, 64, 11}, EmbCase{64, 33, 1000}),
                         [](const testing::TestParamInfo<EmbCase>& i) {
                           return "n" + std::to_string(i.param.n) + "_d" +
                                  std::to_string(i.param.d) + "_v" + std::to_string(i.param.vocab);
                         });

TEST(CpuEmbedding, BackwardIsBitwiseDeterministic) {
  auto be = cpu_backend();
  const int n = 3000, d = 48, vocab = 7;
  const auto tokens = random_tokens(n, vocab, 1);
  auto TOK = upload(*be, tokens), DX = upload(*be, random_vec(std::size_t(n) * d, 2));
  auto A = upload(*be, Vec(std::size_t(vocab) * d)), B = upload(*be, Vec(std::size_t(vocab) * d));
  be->embedding_backward(TOK.i32(), DX.get(), A.f32(), n, d);
  be->embedding_backward(TOK.i32(), DX.get(), B.f32(), n, d);
  EXPECT_EQ(download(*be, A, std::size_t(vocab) * d), download(*be, B, std::size_t(vocab) * d));
}

TEST(CpuEmbedding, NegativeTokenIsAnErrorNamingTheRow) {
  auto be = cpu_backend();
  std::vector<std::int32_t> tokens{0, 2, -4, 1};
  auto TOK = upload(*be, tokens), T = upload(*be, Vec(12)), X = upload(*be, Vec(12));
  try {
    be->embedding_forward(TOK.i32(), T.get(), X.get(), 4, 3);
    FAIL() << "expected btm::Error";
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("-4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(be->embedding_backward(TOK.i32(), X.get(), T.f32(), 4, 3), btm::Error);
}

}  // namespace
}  // namespace btm::test
