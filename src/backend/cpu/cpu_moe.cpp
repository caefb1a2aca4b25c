// Mixture-of-experts routing (BTX, Sukhbaatar et al. 2024; Mixtral semantics for top-k):
// router softmax and expert choice, the dispatch plan (expert-major blocks of routed rows),
// gather/scatter between token order and the blocks, the load-balancing loss, and the
// gradients of all of them. The experts' GEMMs are ordinary linear layers on the blocks.
#include <cmath>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_math.hpp"
#include "btm/error.hpp"

namespace btm::cpu {

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool renormalises(MoeRouting r) { return r == MoeRouting::top_k; }

}  // namespace

double moe_gumbel(std::uint64_t seed, std::int64_t row, int expert) {
  const std::uint64_t h = splitmix64(splitmix64(seed ^ static_cast<std::uint64_t>(row)) ^ static_cast<std::uint64_t>(expert));
  const double u = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
  return -std::log(-std::log(u));
}

void moe_route(const float* logits /*[n,E]*/, float* probs /*[n,E]*/, std::int32_t* expert /*[n,k]*/,
               float* gate /*[n,k]*/, const MoeRouteShape& s) {
  const int E = s.experts, k = s.k;
  if (E < 1 || k < 1 || k > E) {
    throw Error("moe_route: " + std::to_string(k) + " experts per token out of " + std::to_string(E));
  }
  const bool noisy = s.routing == MoeRouting::sample_top1 && s.training;
  Kokkos::parallel_for(
      "btm::cpu::moe_route", HostRange(0, s.n), KOKKOS_LAMBDA(std::int64_t t) {
        const float* z = logits + t * E;
        float* p = probs + t * E;
        double m = z[0];
        for (int e = 1; e < E; ++e) m = z[e] > m ? double(z[e]) : m;
        double total = 0;
        for (int e = 0; e < E; ++e) total += std::exp(double(z[e]) - m);
        for (int e = 0; e < E; ++e) p[e] = static_cast<float>(std::exp(double(z[e]) - m) / total);
        // Choice by score (logits, plus Gumbel noise when sampling): k passes of an argmax,
        // strict '>' sends ties to the lower index.
        std::int32_t* chosen = expert + t * k;
        for (int j = 0; j < k; ++j) {
          int best = -1;
          double best_score = 0;
          for (int e = 0; e < E; ++e) {
            bool taken = false;
            for (int i = 0; i < j; ++i) taken = taken || chosen[i] == e;
            if (taken) continue;
            const double score = double(z[e]) + (noisy ? moe_gumbel(s.seed, t, e) : 0.0);
            if (best < 0 || score > best_score) {
              best = e;
              best_score = score;
            }
          }
          chosen[j] = best;
        }
        float* g = gate + t * k;
        double kept = 0;
        for (int j = 0; j < k; ++j) kept += p[chosen[j]];
        const double norm = renormalises(s.routing) ? kept : 1.0;
        for (int j = 0; j < k; ++j) g[j] = static_cast<float>(double(p[chosen[j]]) / norm);
      });
}

void moe_plan(const std::int32_t* expert /*[n,k]*/, const float* gate /*[n,k]*/,
              std::int32_t* rows /*[n*k]*/, std::int32_t* slot /*[n,k]*/, const MoeRouteShape& s,
              MoeDispatch& out) {
  // A prefix over the tokens in order (capacity is first come, first served): O(n k) serial
  // work, small next to the expert GEMMs.
  const int E = s.experts;
  const std::int64_t slots = std::int64_t(s.n) * s.k;
  out.counts.assign(E, 0);
  out.gate_sum.assign(E, 0.0);
  out.dropped = 0;
  for (std::int64_t i = 0; i < slots; ++i) {
    const int e = expert[i];
    if (e < 0 || e >= E) throw Error("moe_plan: expert " + std::to_string(e) + " at slot " + std::to_string(i));
    if (s.capacity > 0 && out.counts[e] >= s.capacity) {
      slot[i] = -1;
      ++out.dropped;
      continue;
    }
    slot[i] = out.counts[e]++;  // position within the expert's block, made global below
  }
  std::vector<int> offset(E, 0);
  for (int e = 1; e < E; ++e) offset[e] = offset[e - 1] + out.counts[e - 1];
  for (std::int64_t i = 0; i < slots; ++i) {
    if (slot[i] < 0) continue;
    const int e = expert[i];
    slot[i] += offset[e];
    rows[slot[i]] = static_cast<std::int32_t>(i / s.k);
    out.gate_sum[e] += gate[i];
  }
}

void moe_dispatch(const float* x /*[n,d]*/, const std::int32_t* rows /*[m]*/, float* xe /*[m,d]*/, int m,
                  int d) {
  const std::size_t bytes = sizeof(float) * std::size_t(d);
  Kokkos::parallel_for(
      "btm::cpu::moe_dispatch", HostRange(0, m),
      KOKKOS_LAMBDA(std::int64_t r) { std::memcpy(xe + r * d, x + std::int64_t(rows[r]) * d, bytes); });
}

void moe_dispatch_backward(const float* dxe /*[m,d]*/, const std::int32_t* slot /*[n,k]*/, float* dx /*[n,d]*/,
                           int n, int k, int d, bool accumulate) {
  // One token per work item, its slots added in order: deterministic, no races.
  Kokkos::parallel_for(
      "btm::cpu::moe_dispatch_backward", HostRange(0, n), KOKKOS_LAMBDA(std::int64_t t) {
        float* y = dx + t * d;
        if (!accumulate) std::memset(y, 0, sizeof(float) * std::size_t(d));
        for (int j = 0; j < k; ++j) {
          const std::int32_t r = slot[t * k + j];
          if (r < 0) continue;
          const float* src = dxe + std::int64_t(r) * d;
          for (int c = 0; c < d; ++c) y[c] += src[c];
        }
      });
}

void moe_combine(const float* ye /*[m,d]*/, const std::int32_t* slot /*[n,k]*/, const float* gate /*[n,k]*/,
                 float* y /*[n,d]*/, int n, int k, int d) {
  Kokkos::parallel_for(
      "btm::cpu::moe_combine", HostRange(0, n), KOKKOS_LAMBDA(std::int64_t t) {
        float* dst = y + t * d;
        for (int j = 0; j < k; ++j) {
          const std::int32_t r = slot[t * k + j];
          if (r < 0) continue;
          const float w = gate[t * k + j];
          const float* src = ye + std::int64_t(r) * d;
          for (int c = 0; c < d; ++c) dst[c] += w * src[c];
        }
      });
}

void moe_combine_backward(const float* dy /*[n,d]*/, const float* ye /*[m,d]*/, const std::int32_t* slot /*[n,k]*/,
                          const float* gate /*[n,k]*/, float* dye /*[m,d]*/, float* dgate /*[n,k]*/, int n,
                          int k, int d) {
  Kokkos::parallel_for(
      "btm::cpu::moe_combine_backward", HostRange(0, n), KOKKOS_LAMBDA(std::int64_t t) {
        const float* g = dy + t * d;
        for (int j = 0; j < k; ++j) {
          const std::int32_t r = slot[t * k + j];
          if (r < 0) {
            dgate[t * k + j] = 0.0f;
            continue;
          }
          const float w = gate[t * k + j];
          const float* y = ye + std::int64_t(r) * d;
          float* dst = dye + std::int64_t(r) * d;
          for (int c = 0; c < d; ++c) dst[c] = w * g[c];
          dgate[t * k + j] = static_cast<float>(lane_sum(d, [&](std::int64_t c) { return double(g[c]) * y[c]; }));
        }
      });
}

void moe_aux_loss(const float* probs /*[n,E]*/, const std::int32_t* expert /*[n,k]*/, const float* gate /*[n,k]*/,
                  float* pu /*[2,E]*/, float* loss /*[1]*/, const MoeRouteShape& s, MoeAuxForm form, float coef) {
  const int E = s.experts, k = s.k;
  const std::int64_t n = s.n;
  // One expert per work item; tokens summed in order (deterministic).
  Kokkos::parallel_for(
      "btm::cpu::moe_aux_loss", HostRange(0, E), KOKKOS_LAMBDA(std::int64_t e) {
        double p = 0, u = 0;
        for (std::int64_t t = 0; t < n; ++t) {
          p += probs[t * E + e];
          for (int j = 0; j < k; ++j) {
            if (expert[t * k + j] != e) continue;
            u += form == MoeAuxForm::btx ? double(gate[t * k + j]) : 1.0;
          }
        }
        pu[e] = n > 0 ? static_cast<float>(p / double(n)) : 0.0f;
        pu[E + e] = n > 0 ? static_cast<float>(u / double(n)) : 0.0f;
      });
  double total = 0;
  for (int e = 0; e < E; ++e) total += double(pu[e]) * pu[E + e];
  loss[0] = static_cast<float>(double(coef) * E * total);
}

void moe_route_backward(const float* dgate /*[n,k]*/, const float* probs /*[n,E]*/,
                        const std::int32_t* expert /*[n,k]*/, const float* gate /*[n,k]*/, const float* pu /*[2,E]*/,
                        float* dlogits /*[n,E]*/, const MoeRouteShape& s, MoeAuxForm form, float coef,
                        float aux_scale) {
  const int E = s.experts, k = s.k;
  // d(aux)/d(probs[t,i]) = c u_i through p_i, and d(aux)/d(gate of i) = c p_i through u_i
  // (btx form; the switch form's u is a count, without gradient), c = coef E / n.
  const double c = s.n > 0 ? double(aux_scale) * coef * E / double(s.n) : 0.0;
  const bool renorm = renormalises(s.routing);
  Kokkos::parallel_for(
      "btm::cpu::moe_route_backward", HostRange(0, s.n), KOKKOS_LAMBDA(std::int64_t t) {
        const float* p = probs + t * E;
        const std::int32_t* chosen = expert + t * k;
        const float* g = gate + t * k;
        const float* u = pu + E;
        auto dgate_of = [&](int j) {
          return double(dgate[t * k + j]) + (form == MoeAuxForm::btx ? c * pu[chosen[j]] : 0.0);
        };
        // gate_j = p_j / S over the kept set (top_k): d/dp_j = (dgate_j - sum_i dgate_i gate_i) / S.
        double kept = 1, dot = 0;
        if (renorm) {
          kept = 0;
          for (int j = 0; j < k; ++j) {
            kept += p[chosen[j]];
            dot += dgate_of(j) * g[j];
          }
        }
        auto dp_gate = [&](int j) { return renorm ? (dgate_of(j) - dot) / kept : dgate_of(j); };
        // dp_e = c u_e + dp_gate(j) where e = chosen[j]; softmax: dz_e = p_e (dp_e - sum_i p_i dp_i).
        double mean = 0;
        for (int e = 0; e < E; ++e) mean += double(p[e]) * c * u[e];
        for (int j = 0; j < k; ++j) mean += double(p[chosen[j]]) * dp_gate(j);
        float* dz = dlogits + t * E;
        for (int e = 0; e < E; ++e) dz[e] = static_cast<float>(double(p[e]) * (c * u[e] - mean));
        for (int j = 0; j < k; ++j) {
          const int e = chosen[j];
          dz[e] = static_cast<float>(double(p[e]) * (c * u[e] + dp_gate(j) - mean));
        }
      });
}

}  // namespace btm::cpu
