// MoE routing kernels against double-precision loops written here: the routed layer equals
// every expert on every token masked by the gates, the router's gradient (load balancing
// included) matches finite differences, and capacity, ties and sampling behave as documented.
#include "backend_test_util.hpp"

namespace btm::test {
namespace {

struct Routed {
  DVec probs;                      // [n,E]
  std::vector<std::vector<int>> chosen;  // [n][k]
  DVec gate;                       // [n,E] dense: 0 where not chosen
};

// softmax, top-k by logit (ties to the lower index), gates renormalised for top_k.
Routed route_reference(const DVec& logits, int n, int E, int k, MoeRouting routing) {
  Routed r{DVec(std::size_t(n) * E), {}, DVec(std::size_t(n) * E, 0.0)};
  for (int t = 0; t < n; ++t) {
    const double* z = &logits[std::size_t(t) * E];
    double m = *std::max_element(z, z + E), s = 0;
    for (int e = 0; e < E; ++e) s += std::exp(z[e] - m);
    for (int e = 0; e < E; ++e) r.probs[t * E + e] = std::exp(z[e] - m) / s;
    std::vector<int> order(E);
    for (int e = 0; e < E; ++e) order[e] = e;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return z[a] > z[b]; });
    order.resize(k);
    double kept = 0;
    for (int e : order) kept += r.probs[t * E + e];
    for (int e : order) r.gate[t * E + e] = r.probs[t * E + e] / (routing == MoeRouting::top_k ? kept : 1.0);
    r.chosen.push_back(order);
  }
  return r;
}

double aux_reference(const Routed& r, int n, int E, MoeAuxForm form, double coef) {
  double total = 0;
  for (int e = 0; e < E; ++e) {
    double p = 0, u = 0;
    for (int t = 0; t < n; ++t) {
      p += r.probs[t * E + e];
      const bool picked = std::find(r.chosen[t].begin(), r.chosen[t].end(), e) != r.chosen[t].end();
      u += form == MoeAuxForm::btx ? r.gate[t * E + e] : (picked ? 1.0 : 0.0);
    }
    total += (p / n) * (u / n);
  }
  return coef * E * total;
}

// One SwiGLU expert on one row, in double: w1, w3 [f,d], w2 [d,f].
DVec expert_reference(const Vec& w1, const Vec& w2, const Vec& w3, const float* x, int d, int f) {
  DVec a(f), y(d, 0.0);
  for (int i = 0; i < f; ++i) {
    double g = 0, u = 0;
    for (int c = 0; c < d; ++c) g += double(w1[i * d + c]) * x[c], u += double(w3[i * d + c]) * x[c];
    a[i] = g / (1 + std::exp(-g)) * u;
  }
  for (int o = 0; o < d; ++o) {
    for (int i = 0; i < f; ++i) y[o] += double(w2[o * f + i]) * a[i];
  }
  return y;
}

struct Case {
  int n = 13, d = 8, f = 6, E = 4, k = 2;
  MoeRouting routing = MoeRouting::top_k;
  MoeRouteShape shape() const {
    MoeRouteShape s;
    s.n = n;
    s.experts = E;
    s.k = k;
    s.routing = routing;
    return s;
  }
};

// The whole routed layer through the kernels: route, plan, dispatch, per-expert GEMMs on
// their rows only, combine.
struct Layer {
  Case c;
  std::vector<Vec> w1, w2, w3;
  Vec x, logits;
  Layer(Case cs, std::uint64_t seed) : c(cs) {
    for (int e = 0; e < c.E; ++e) {
      w1.push_back(random_vec(std::size_t(c.f) * c.d, seed + 10 * e + 1, -0.5f, 0.5f));
      w2.push_back(random_vec(std::size_t(c.d) * c.f, seed + 10 * e + 2, -0.5f, 0.5f));
      w3.push_back(random_vec(std::size_t(c.f) * c.d, seed + 10 * e + 3, -0.5f, 0.5f));
    }
    x = random_vec(std::size_t(c.n) * c.d, seed + 100);
    logits = random_vec(std::size_t(c.n) * c.E, seed + 101, -2, 2);
  }
};

Vec run_layer(Backend& be, const Layer& L, MoeDispatch& plan) {
  const Case& c = L.c;
  const MoeRouteShape s = c.shape();
  auto X = upload(be, L.x), Z = upload(be, L.logits);
  DeviceBuffer P(be, s.n * s.experts * 4), G(be, s.slots() * 4), EX(be, s.slots() * 4), SL(be, s.slots() * 4),
      RW(be, s.slots() * 4);
  be.moe_route(Z.f32(), P.f32(), EX.i32(), G.f32(), s);
  be.moe_plan(EX.i32(), G.f32(), RW.i32(), SL.i32(), s, plan);
  const int m = plan.rows();
  DeviceBuffer XE(be, std::size_t(m) * c.d * 4 + 4), GG(be, std::size_t(m) * c.f * 4 + 4),
      UU(be, std::size_t(m) * c.f * 4 + 4), AA(be, std::size_t(m) * c.f * 4 + 4), YE(be, std::size_t(m) * c.d * 4 + 4);
  be.moe_dispatch(X.get(), RW.i32(), XE.get(), m, c.d);
  for (int e = 0; e < c.E; ++e) {
    const int r0 = plan.offset(e), rows = plan.counts[e];
    auto W1 = upload(be, L.w1[e]), W2 = upload(be, L.w2[e]), W3 = upload(be, L.w3[e]);
    be.linear_forward(XE.f32() + r0 * c.d, W1.get(), GG.f32() + r0 * c.f, rows, c.d, c.f, false);
    be.linear_forward(XE.f32() + r0 * c.d, W3.get(), UU.f32() + r0 * c.f, rows, c.d, c.f, false);
    be.swiglu_forward(GG.f32() + r0 * c.f, UU.f32() + r0 * c.f, AA.f32() + r0 * c.f, std::size_t(rows) * c.f);
    be.linear_forward(AA.f32() + r0 * c.f, W2.get(), YE.f32() + r0 * c.d, rows, c.f, c.d, false);
  }
  auto Y = upload(be, Vec(std::size_t(c.n) * c.d, 0.0f));
  be.moe_combine(YE.get(), SL.i32(), G.f32(), Y.get(), c.n, c.k, c.d);
  return download(be, Y, std::size_t(c.n) * c.d);
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << "n=" << c.n << " d=" << c.d << " f=" << c.f << " E=" << c.E << " k=" << c.k << " routing=" << int(c.routing);
}

class CpuMoeRouting : public testing::TestWithParam<Case> {};

TEST_P(CpuMoeRouting, RoutedLayerEqualsEveryExpertMaskedByTheGates) {
  const Case c = GetParam();
  auto be = cpu_backend();
  Layer L(c, 5);
  MoeDispatch plan;
  const Vec y = run_layer(*be, L, plan);
  EXPECT_EQ(plan.rows(), c.n * c.k);  // no capacity: every slot dispatched
  const Routed r = route_reference(to_double(L.logits), c.n, c.E, c.k, c.routing);
  DVec want(std::size_t(c.n) * c.d, 0.0);
  for (int t = 0; t < c.n; ++t) {
    for (int e = 0; e < c.E; ++e) {  // every expert on every token, masked
      const DVec ye = expert_reference(L.w1[e], L.w2[e], L.w3[e], &L.x[std::size_t(t) * c.d], c.d, c.f);
      for (int o = 0; o < c.d; ++o) want[t * c.d + o] += r.gate[t * c.E + e] * ye[o];
    }
  }
  EXPECT_REL_ERROR_BELOW(y, want, 1e-5);
  // Routed token-slots per expert, and their gate sums.
  for (int e = 0; e < c.E; ++e) {
    int count = 0;
    double gates = 0;
    for (int t = 0; t < c.n; ++t) {
      if (r.gate[t * c.E + e] > 0) ++count, gates += r.gate[t * c.E + e];
    }
    EXPECT_EQ(plan.counts[e], count) << e;
    EXPECT_NEAR(plan.gate_sum[e], gates, 1e-5) << e;
  }
}

// d/d(logits) of sum_t R_t . y_t + aux_scale * aux, through combine, routing and load balancing.
TEST_P(CpuMoeRouting, RouterGradientMatchesFiniteDifferences) {
  const Case c = GetParam();
  auto be = cpu_backend();
  const MoeRouteShape s = c.shape();
  const int n = c.n, E = c.E, k = c.k, d = c.d;
  // Expert outputs ye of each (token, expert) are fixed inputs here: only the gates vary.
  const Vec ye_all = random_vec(std::size_t(n) * E * d, 77);
  const Vec R = random_vec(std::size_t(n) * d, 78);
  const Vec logits = random_vec(std::size_t(n) * E, 79, -2, 2);
  const double coef = 0.3, aux_scale = 1.7;
  for (MoeAuxForm form : {MoeAuxForm::btx, MoeAuxForm::switch_fraction}) {
    auto Z = upload(*be, logits);
    DeviceBuffer P(*be, n * E * 4), G(*be, s.slots() * 4), EX(*be, s.slots() * 4), SL(*be, s.slots() * 4),
        RW(*be, s.slots() * 4), PU(*be, 2 * E * 4), AUX(*be, 4), DG(*be, s.slots() * 4), DZ(*be, n * E * 4);
    be->moe_route(Z.f32(), P.f32(), EX.i32(), G.f32(), s);
    MoeDispatch plan;
    be->moe_plan(EX.i32(), G.f32(), RW.i32(), SL.i32(), s, plan);
    // The dispatched block's outputs: the fixed ye of each row's (token, expert).
    std::vector<std::int32_t> rows(s.slots()), experts(s.slots()), slots(s.slots());
    be->copy_to_host(rows.data(), RW.get(), rows.size() * 4);
    be->copy_to_host(experts.data(), EX.get(), experts.size() * 4);
    be->copy_to_host(slots.data(), SL.get(), slots.size() * 4);
    Vec ye(std::size_t(plan.rows()) * d);
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const int t = int(i) / k, e = experts[i];
      std::copy_n(&ye_all[(std::size_t(t) * E + e) * d], d, &ye[std::size_t(slots[i]) * d]);
    }
    auto YE = upload(*be, ye), DY = upload(*be, R);
    DeviceBuffer DYE(*be, ye.size() * 4);
    be->moe_aux_loss(P.f32(), EX.i32(), G.f32(), PU.f32(), AUX.f32(), s, form, float(coef));
    be->moe_combine_backward(DY.get(), YE.get(), SL.i32(), G.f32(), DYE.get(), DG.f32(), n, k, d);
    be->moe_route_backward(DG.f32(), P.f32(), EX.i32(), G.f32(), PU.f32(), DZ.f32(), s, form, float(coef),
                           float(aux_scale));
    const Vec dz = download(*be, DZ, std::size_t(n) * E);

    DVec z = to_double(logits);
    const Routed r0 = route_reference(z, n, E, k, c.routing);
    EXPECT_NEAR(download(*be, AUX, 1)[0], aux_reference(r0, n, E, form, coef), 1e-6);
    auto loss = [&] {
      Routed r = route_reference(z, n, E, k, c.routing);
      r.chosen = r0.chosen;  // the selection is piecewise constant: keep it fixed
      double total = 0;
      for (int t = 0; t < n; ++t) {
        double kept = 0;
        for (int e : r.chosen[t]) kept += r.probs[t * E + e];
        for (int e = 0; e < E; ++e) r.gate[t * E + e] = 0;
        for (int e : r.chosen[t]) {
          r.gate[t * E + e] = r.probs[t * E + e] / (c.routing == MoeRouting::top_k ? kept : 1.0);
          for (int o = 0; o < d; ++o) total += r.gate[t * E + e] * ye_all[(std::size_t(t) * E + e) * d + o] * R[t * d + o];
        }
      }
      return total + aux_scale * aux_reference(r, n, E, form, coef);
    };
    expect_gradient_matches(form == MoeAuxForm::btx ? "dlogits (btx)" : "dlogits (switch)", dz, loss, z, 200, 1e-5);
  }
}

std::string case_name(const testing::TestParamInfo<Case>& i) {
  static const char* const names[] = {"top_k", "switch", "soft", "sample_top1"};
  return std::string(names[int(i.param.routing)]) + "_k" + std::to_string(i.param.k);
}

INSTANTIATE_TEST_SUITE_P(Modes, CpuMoeRouting,
                         testing::Values(Case{13, 8, 6, 4, 2, MoeRouting::top_k}, Case{13, 8, 6, 4, 1, MoeRouting::top_k},
                                         Case{9, 8, 6, 3, 3, MoeRouting::top_k}, Case{13, 8, 6, 4, 4, MoeRouting::soft},
                                         Case{13, 8, 6, 4, 1, MoeRouting::switch_top1}),
                         case_name);

TEST(CpuMoe, LoadBalancingLossMatchesAHandComputation) {
  auto be = cpu_backend();
  // Two tokens, two experts, top-1: token 0 -> expert 0 (p = 0.75), token 1 -> expert 0 (p = 0.5, tie).
  const Vec logits{float(std::log(3.0)), 0.0f, 0.0f, 0.0f};
  MoeRouteShape s;
  s.n = 2;
  s.experts = 2;
  s.k = 1;
  auto Z = upload(*be, logits);
  DeviceBuffer P(*be, 16), G(*be, 8), EX(*be, 8), PU(*be, 16), AUX(*be, 4);
  be->moe_route(Z.f32(), P.f32(), EX.i32(), G.f32(), s);
  // p = (0.625, 0.375); top-1 renormalised gates are 1: u_btx = (1, 0); u_switch = (1, 0).
  be->moe_aux_loss(P.f32(), EX.i32(), G.f32(), PU.f32(), AUX.f32(), s, MoeAuxForm::btx, 0.01f);
  EXPECT_NEAR(download(*be, AUX, 1)[0], 0.01 * 2 * (1.0 * 0.625), 1e-7);
  EXPECT_REL_ERROR_BELOW(download(*be, PU, 4), (DVec{0.625, 0.375, 1.0, 0.0}), 1e-6);
  // switch routing keeps the probability as the gate: u_btx = ((0.75 + 0.5) / 2, 0).
  s.routing = MoeRouting::switch_top1;
  be->moe_route(Z.f32(), P.f32(), EX.i32(), G.f32(), s);
  be->moe_aux_loss(P.f32(), EX.i32(), G.f32(), PU.f32(), AUX.f32(), s, MoeAuxForm::btx, 0.01f);
  EXPECT_NEAR(download(*be, AUX, 1)[0], 0.01 * 2 * (0.625 * 0.625), 1e-7);
  be->moe_aux_loss(P.f32(), EX.i32(), G.f32(), PU.f32(), AUX.f32(), s, MoeAuxForm::switch_fraction, 0.01f);
  EXPECT_NEAR(download(*be, AUX, 1)[0], 0.01 * 2 * (1.0 * 0.625), 1e-7);
  // Perfect balance gives coef * E * sum_i (1/E)(1/E) = coef (top-2 of 2: the switch form counts 2 slots).
  s.routing = MoeRouting::top_k;
  s.k = 2;
  auto Zb = upload(*be, Vec{0, 0, 0, 0});
  DeviceBuffer Gb(*be, 16), EXb(*be, 16);
  be->moe_route(Zb.f32(), P.f32(), EXb.i32(), Gb.f32(), s);
  be->moe_aux_loss(P.f32(), EXb.i32(), Gb.f32(), PU.f32(), AUX.f32(), s, MoeAuxForm::btx, 0.01f);
  EXPECT_NEAR(download(*be, AUX, 1)[0], 0.01, 1e-8);
  be->moe_aux_loss(P.f32(), EXb.i32(), Gb.f32(), PU.f32(), AUX.f32(), s, MoeAuxForm::switch_fraction, 0.01f);
  EXPECT_NEAR(download(*be, AUX, 1)[0], 0.02, 1e-8);
}

TEST(CpuMoe, RoutingBreaksTiesTowardTheLowerIndexAndRenormalisesTheKeptGates) {
  auto be = cpu_backend();
  MoeRouteShape s;
  s.n = 2;
  s.experts = 4;
  s.k = 2;
  auto Z = upload(*be, Vec{0, 1, 1, 0, /**/ 0, 0, 0, 0});
  DeviceBuffer P(*be, 32), G(*be, 16), EX(*be, 16);
  be->moe_route(Z.f32(), P.f32(), EX.i32(), G.f32(), s);
  std::vector<std::int32_t> ex(4);
  be->copy_to_host(ex.data(), EX.get(), 16);
  EXPECT_EQ(ex, (std::vector<std::int32_t>{1, 2, 0, 1}));
  EXPECT_EQ(download(*be, G, 4), (Vec{0.5f, 0.5f, 0.5f, 0.5f}));
}

TEST(CpuMoe, SwitchCapacityDropsTheOverflowInTokenOrderAndCountsIt) {
  auto be = cpu_backend();
  const int n = 8, E = 2, d = 3;
  Vec logits;
  for (int t = 0; t < n; ++t) {
    logits.push_back(t < 7 ? 1.0f : 0.0f);  // tokens 0..6 prefer expert 0, token 7 expert 1
    logits.push_back(t < 7 ? 0.0f : 1.0f);
  }
  MoeRouteShape s;
  s.n = n;
  s.experts = E;
  s.k = 1;
  s.routing = MoeRouting::switch_top1;
  s.training = true;
  s.capacity = 6;  // ceil(1.5 * 8 / 2)
  auto Z = upload(*be, logits);
  DeviceBuffer P(*be, n * E * 4), G(*be, n * 4), EX(*be, n * 4), SL(*be, n * 4), RW(*be, n * 4);
  be->moe_route(Z.f32(), P.f32(), EX.i32(), G.f32(), s);
  MoeDispatch plan;
  be->moe_plan(EX.i32(), G.f32(), RW.i32(), SL.i32(), s, plan);
  EXPECT_EQ(plan.counts, (std::vector<int>{6, 1}));
  EXPECT_EQ(plan.dropped, 1u);
  std::vector<std::int32_t> slot(n), rows(7);
  be->copy_to_host(slot.data(), SL.get(), n * 4);
  be->copy_to_host(rows.data(), RW.get(), 7 * 4);
  EXPECT_EQ(slot, (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, -1, 6}));
  EXPECT_EQ(rows, (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 7}));
  // The dropped token gets nothing from the experts (it stays on the residual) and no gate gradient.
  auto YE = upload(*be, Vec(7 * d, 1.0f));
  auto Y = upload(*be, Vec(n * d, 0.0f));
  be->moe_combine(YE.get(), SL.i32(), G.f32(), Y.get(), n, 1, d);
  const Vec y = download(*be, Y, n * d);
  const float p = float(std::exp(1.0) / (1 + std::exp(1.0)));  // switch gate = the probability
  for (int t = 0; t < n; ++t) EXPECT_NEAR(y[t * d], t == 6 ? 0.0f : p, 1e-6) << t;
  auto DY = upload(*be, Vec(n * d, 1.0f));
  DeviceBuffer DYE(*be, 7 * d * 4), DG(*be, n * 4);
  be->moe_combine_backward(DY.get(), YE.get(), SL.i32(), G.f32(), DYE.get(), DG.f32(), n, 1, d);
  const Vec dg = download(*be, DG, n);
  for (int t = 0; t < n; ++t) EXPECT_EQ(dg[t], t == 6 ? 0.0f : 3.0f) << t;
  auto DX = upload(*be, Vec(n * d, 5.0f));
  be->moe_dispatch_backward(DYE.get(), SL.i32(), DX.get(), n, 1, d, false);
  const Vec dx = download(*be, DX, n * d);
  for (int t = 0; t < n; ++t) EXPECT_NEAR(dx[t * d], t == 6 ? 0.0f : p, 1e-6) << t;
}

TEST(CpuMoe, SampleTop1DrawsFromTheRouterDistributionDeterministically) {
  auto be = cpu_backend();
  const int n = 20000, E = 3;
  const double want[E] = {0.7, 0.2, 0.1};
  Vec logits;
  for (int t = 0; t < n; ++t) {
    for (double w : want) logits.push_back(float(std::log(w)));
  }
  MoeRouteShape s;
  s.n = n;
  s.experts = E;
  s.k = 1;
  s.routing = MoeRouting::sample_top1;
  s.training = true;
  s.seed = 42;
  auto Z = upload(*be, logits);
  DeviceBuffer P(*be, n * E * 4), G(*be, n * 4), EX(*be, n * 4);
  auto experts = [&] {
    be->moe_route(Z.f32(), P.f32(), EX.i32(), G.f32(), s);
    std::vector<std::int32_t> ex(n);
    be->copy_to_host(ex.data(), EX.get(), n * 4);
    return ex;
  };
  const auto a = experts(), b = experts();
  EXPECT_EQ(a, b);  // the same seed draws the same experts
  // Gumbel-max: each expert is drawn with its router probability.
  for (int e = 0; e < E; ++e) {
    EXPECT_NEAR(std::count(a.begin(), a.end(), e) / double(n), want[e], 0.01) << e;
  }
  s.seed = 43;
  EXPECT_NE(experts(), a);
  s.training = false;  // evaluation: the argmax
  const auto argmax = experts();
  EXPECT_EQ(std::count(argmax.begin(), argmax.end(), 0), n);
  EXPECT_NEAR(download(*be, G, 1)[0], 0.7f, 1e-6);  // the gate is the probability
}

}  // namespace
}  // namespace btm::test
