// Causal grouped-query attention against a double-precision reference (plain loops) and
// finite differences of it.
#include "backend_test_util.hpp"
#include "btm/error.hpp"

namespace btm::test {
namespace {

// o [B*Tq, H*hd], lse [B, H, Tq] from q [B*Tq, H*hd], k, v [B*Tk, KV*hd].
void attention_ref(const DVec& q, const DVec& k, const DVec& v, const AttentionShape& s, DVec& o,
                   DVec& lse) {
  const int hd = s.head_dim, group = s.heads / s.kv_heads, off = s.kv_len - s.q_len;
  const long qs = s.q_stride(), ks = s.kv_stride();
  o.assign(std::size_t(s.batch) * s.q_len * qs, 0);
  lse.assign(std::size_t(s.batch) * s.heads * s.q_len, 0);
  const double scale = 1 / std::sqrt(double(hd));
  std::vector<double> p(s.kv_len);
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h)
      for (int i = 0; i < s.q_len; ++i) {
        const double* qi = &q[(long(b) * s.q_len + i) * qs + h * hd];
        const int kvh = h / group, last = i + off;
        double m = -INFINITY;
        for (int j = 0; j <= last; ++j) {
          const double* kj = &k[(long(b) * s.kv_len + j) * ks + kvh * hd];
          double dot = 0;
          for (int c = 0; c < hd; ++c) dot += qi[c] * kj[c];
          p[j] = dot * scale;
          m = std::max(m, p[j]);
        }
        double total = 0;
        for (int j = 0; j <= last; ++j) total += std::exp(p[j] - m);
        lse[(long(b) * s.heads + h) * s.q_len + i] = m + std::log(total);
        double* oi = &o[(long(b) * s.q_len + i) * qs + h * hd];
        for (int j = 0; j <= last; ++j) {
          const double w = std::exp(p[j] - m) / total;
          const double* vj = &v[(long(b) * s.kv_len + j) * ks + kvh * hd];
          for (int c = 0; c < hd; ++c) oi[c] += w * vj[c];
        }
      }
}

AttentionShape shape(int batch, int tq, int tk, int heads, int kv_heads, int hd) {
  AttentionShape s;
  s.batch = batch;
  s.q_len = tq;
  s.kv_len = tk;
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.head_dim = hd;
  return s;
}

struct AttnCase {
  const char* name;
  AttentionShape s;
  std::size_t probes;  // finite-difference coordinates per input tensor
};

class CpuAttention : public testing::TestWithParam<AttnCase> {};

TEST_P(CpuAttention, ForwardMatchesDoubleAndBackwardMatchesFiniteDifferences) {
  const AttentionShape s = GetParam().s;
  const std::size_t probes = GetParam().probes;
  auto be = cpu_backend();
  const std::size_t nq = std::size_t(s.batch) * s.q_len * s.q_stride();
  const std::size_t nk = std::size_t(s.batch) * s.kv_len * s.kv_stride();
  const std::size_t nl = std::size_t(s.batch) * s.heads * s.q_len;
  const Vec q = random_vec(nq, 31, -2, 2), k = random_vec(nk, 32, -2, 2), v = random_vec(nk, 33);
  const Vec dout = random_vec(nq, 34);

  DVec o_ref, lse_ref;
  attention_ref(to_double(q), to_double(k), to_double(v), s, o_ref, lse_ref);

  auto Q = upload(*be, q), K = upload(*be, k), V = upload(*be, v), DO = upload(*be, dout);
  auto O = upload(*be, Vec(nq, 7.0f)), L = upload(*be, Vec(nl));
  be->attention_forward(Q.get(), K.get(), V.get(), O.get(), L.f32(), s);
  const Vec o = download(*be, O, nq);
  EXPECT_REL_ERROR_BELOW(o, o_ref, 2e-6);
  EXPECT_REL_ERROR_BELOW(download(*be, L, nl), lse_ref, 2e-6);

  // Outputs are pre-filled with garbage: the backward must overwrite, not accumulate.
  auto DQ = upload(*be, Vec(nq, 5.0f)), DK = upload(*be, Vec(nk, -3.0f)),
       DV = upload(*be, Vec(nk, 9.0f));
  be->attention_backward(DO.get(), Q.get(), K.get(), V.get(), O.get(), L.f32(), DQ.get(), DK.get(),
                         DV.get(), s);
  const Vec dq = download(*be, DQ, nq), dk = download(*be, DK, nk), dv = download(*be, DV, nk);

  DVec qd = to_double(q), kd = to_double(k), vd = to_double(v);
  auto loss = [&] {
    DVec oo, ll;
    attention_ref(qd, kd, vd, s, oo, ll);
    double acc = 0;
    for (std::size_t i = 0; i < oo.size(); ++i) acc += oo[i] * dout[i];
    return acc;
  };
  expect_gradient_matches("dq", dq, loss, qd, probes, 2e-5, 1);
  expect_gradient_matches("dk", dk, loss, kd, probes, 2e-5, 2);
  expect_gradient_matches("dv", dv, loss, vd, probes, 2e-5, 3);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuAttention,
    testing::Values(AttnCase{"single", shape(1, 1, 1, 1, 1, 1), 100},
                    AttnCase{"mha_odd", shape(2, 5, 5, 2, 2, 3), 1000},
                    AttnCase{"gqa2", shape(1, 7, 7, 4, 2, 6), 1000},
                    AttnCase{"gqa4", shape(2, 9, 9, 4, 1, 8), 1000},
                    AttnCase{"decode_q3_k11", shape(2, 3, 11, 4, 2, 8), 1000},
                    AttnCase{"decode_q1", shape(3, 1, 6, 2, 1, 4), 1000},
                    AttnCase{"blocks_t150", shape(1, 150, 150, 4, 2, 16), 24},
                    AttnCase{"decode_blocks_q70_k100", shape(1, 70, 100, 2, 1, 8), 24}),
    [](const testing::TestParamInfo<AttnCase>& info) { return std::string(info.param.name); });

TEST(CpuAttention, ResultsAreBitwiseIdenticalRunToRun) {
  auto be = cpu_backend();
  const AttentionShape s = shape(2, 70, 70, 4, 2, 16);
  const std::size_t nq = std::size_t(s.batch) * s.q_len * s.q_stride();
  const std::size_t nk = std::size_t(s.batch) * s.kv_len * s.kv_stride();
  auto Q = upload(*be, random_vec(nq, 1)), K = upload(*be, random_vec(nk, 2)),
       V = upload(*be, random_vec(nk, 3)), DO = upload(*be, random_vec(nq, 4));
  std::vector<Vec> first;
  for (int run = 0; run < 2; ++run) {
    auto O = upload(*be, Vec(nq)), L = upload(*be, Vec(std::size_t(s.batch) * s.heads * s.q_len));
    auto DQ = upload(*be, Vec(nq)), DK = upload(*be, Vec(nk)), DV = upload(*be, Vec(nk));
    be->attention_forward(Q.get(), K.get(), V.get(), O.get(), L.f32(), s);
    be->attention_backward(DO.get(), Q.get(), K.get(), V.get(), O.get(), L.f32(), DQ.get(),
                           DK.get(), DV.get(), s);
    std::vector<Vec> out{download(*be, O, nq), download(*be, DQ, nq), download(*be, DK, nk),
                         download(*be, DV, nk)};
    if (run == 0)
      first = out;
    else
      EXPECT_EQ(out, first);
  }
}

TEST(CpuAttention, RejectsInconsistentShapes) {
  auto be = cpu_backend();
  auto buf = upload(*be, Vec(4096));
  float* p = buf.f32();
  EXPECT_THROW(be->attention_forward(p, p, p, p, p, shape(1, 4, 4, 3, 2, 8)), btm::Error);  // 3 % 2
  EXPECT_THROW(be->attention_forward(p, p, p, p, p, shape(1, 5, 4, 2, 2, 8)),
               btm::Error);  // Tq > Tk
  EXPECT_THROW(be->attention_forward(p, p, p, p, p, shape(1, 4, 4, 2, 2, 0)), btm::Error);
  EXPECT_THROW(be->attention_backward(p, p, p, p, p, p, p, p, p, shape(0, 4, 4, 2, 2, 8)),
               btm::Error);
}

}  // namespace
}  // namespace btm::test
