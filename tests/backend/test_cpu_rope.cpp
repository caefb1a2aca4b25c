// Rotary embeddings (Hugging Face rotate_half) against double loops and finite differences.
#include "backend_test_util.hpp"
#include "btm/error.hpp"

namespace btm::test {
namespace {

// x [batch*seq, heads*hd]; pairs (i, i + hd/2) rotated by pos * theta^(-2i/hd).
DVec rope_ref(const DVec& x, int batch, int seq, int heads, int hd, int pos0, double theta,
              bool inverse) {
  DVec y = x;
  const int half = hd / 2;
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < seq; ++t)
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < half; ++i) {
          const double angle = (pos0 + t) * std::pow(theta, -2.0 * i / hd) * (inverse ? -1 : 1);
          const std::size_t a = (std::size_t(b) * seq + t) * heads * hd + std::size_t(h) * hd + i;
          const double x1 = x[a], x2 = x[a + half];
          y[a] = x1 * std::cos(angle) - x2 * std::sin(angle);
          y[a + half] = x2 * std::cos(angle) + x1 * std::sin(angle);
        }
  return y;
}

struct RopeCase {
  int batch, seq, heads, hd, pos0;
  float theta;
};
class CpuRope : public testing::TestWithParam<RopeCase> {};

TEST_P(CpuRope, MatchesDoubleReferenceAndTheInverseIsTheBackward) {
  const auto [batch, seq, heads, hd, pos0, theta] = GetParam();
  auto be = cpu_backend();
  const std::size_t n = std::size_t(batch) * seq * heads * hd;
  const Vec x = random_vec(n, 21);
  auto X = upload(*be, x);
  be->rope(X.get(), batch, seq, heads, hd, pos0, theta, false);
  const Vec y = download(*be, X, n);
  EXPECT_REL_ERROR_BELOW(y, rope_ref(to_double(x), batch, seq, heads, hd, pos0, theta, false),
                         2e-6);

  // The inverse undoes the rotation.
  be->rope(X.get(), batch, seq, heads, hd, pos0, theta, true);
  EXPECT_REL_ERROR_BELOW(download(*be, X, n), to_double(x), 2e-6);

  // Backward of L = <rope(x), r> is rope^-1(r): compare with finite differences.
  const Vec r = random_vec(n, 22);
  auto G = upload(*be, r);
  be->rope(G.get(), batch, seq, heads, hd, pos0, theta, true);
  const Vec grad = download(*be, G, n);
  DVec xd = to_double(x);
  auto loss = [&] {
    const DVec yy = rope_ref(xd, batch, seq, heads, hd, pos0, theta, false);
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += yy[i] * r[i];
    return s;
  };
  expect_gradient_matches("dx", grad, loss, xd, 150, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuRope,
                         testing::Values(RopeCase{1, 1, 1, 2, 0, 10000.0f},
                                         RopeCase{2, 5, 3, 6, 0, 10000.0f},
                                         RopeCase{1, 9, 2, 64, 37, 10000.0f},
                                         RopeCase{3, 4, 4, 16, 1000, 500000.0f},
                                         RopeCase{1, 2, 1, 128, 4090, 10000.0f}),
                         [](const testing::TestParamInfo<RopeCase>& i) {
                           const RopeCase& c = i.param;
                           return "b" + std::to_string(c.batch) + "_t" + std::to_string(c.seq) +
                                  "_h" + std::to_string(c.heads) + "_hd" + std::to_string(c.hd) +
                                  "_pos" + std::to_string(c.pos0) + "_theta" +
                                  std::to_string(int(c.theta));
                         });

TEST(CpuRope, CachedTablesFollowChangesOfHeadDimThetaAndPosition) {
  auto be = cpu_backend();
  struct Call {
    int hd, pos0, seq;
    float theta;
  };
  // Small then large positions (the table grows), then a new theta and a new head dim.
  for (const Call& c :
       {Call{8, 0, 3, 10000.0f}, Call{8, 3000, 2, 10000.0f}, Call{8, 5, 3, 500000.0f},
        Call{6, 5, 3, 500000.0f}, Call{8, 1, 1, 10000.0f}}) {
    const Vec x = random_vec(std::size_t(c.seq) * 2 * c.hd, c.hd + c.pos0);
    auto X = upload(*be, x);
    be->rope(X.get(), 1, c.seq, 2, c.hd, c.pos0, c.theta, false);
    EXPECT_REL_ERROR_BELOW(download(*be, X, x.size()),
                           rope_ref(to_double(x), 1, c.seq, 2, c.hd, c.pos0, c.theta, false), 2e-6)
        << "hd=" << c.hd << " pos0=" << c.pos0 << " theta=" << c.theta;
  }
}

TEST(CpuRope, DecodingOneTokenAtATimeEqualsThePrefill) {
  auto be = cpu_backend();
  const int seq = 7, heads = 2, hd = 8;
  const Vec x = random_vec(std::size_t(seq) * heads * hd, 5);
  auto all = upload(*be, x);
  be->rope(all.get(), 1, seq, heads, hd, 0, 10000.0f, false);
  const Vec want = download(*be, all, x.size());
  for (int t = 0; t < seq; ++t) {
    Vec row(x.begin() + t * heads * hd, x.begin() + (t + 1) * heads * hd);
    auto R = upload(*be, row);
    be->rope(R.get(), 1, 1, heads, hd, t, 10000.0f, false);
    const Vec got = download(*be, R, row.size());
    for (int i = 0; i < heads * hd; ++i) EXPECT_EQ(got[i], want[t * heads * hd + i]);
  }
}

TEST(CpuRope, RejectsOddHeadDimAndNegativePosition) {
  auto be = cpu_backend();
  auto X = upload(*be, Vec(10));
  EXPECT_THROW(be->rope(X.get(), 1, 2, 1, 5, 0, 10000.0f, false), btm::Error);
  EXPECT_THROW(be->rope(X.get(), 1, 1, 1, 4, -1, 10000.0f, false), btm::Error);
}

}  // namespace
}  // namespace btm::test
