#pragma once
// Helpers for the backend kernel tests: device upload/download through the Backend API,
// seeded random inputs, error norms against double-precision references, and central
// finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "btm/ops/backend.hpp"

namespace btm::test {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

inline Vec random_vec(std::size_t n, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(0, vocab - 1);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = dist(rng);
  return t;
}

inline DVec to_double(const Vec& v) { return DVec(v.begin(), v.end()); }

// A device buffer holding a copy of host data.
inline DeviceBuffer upload(Backend& be, const Vec& v) {
  DeviceBuffer b(be, v.size() * sizeof(float));
  if (!v.empty()) be.copy_to_device(b.get(), v.data(), v.size() * sizeof(float));
  return b;
}
inline DeviceBuffer upload(Backend& be, const std::vector<std::int32_t>& v) {
  DeviceBuffer b(be, v.size() * sizeof(std::int32_t));
  if (!v.empty()) be.copy_to_device(b.get(), v.data(), v.size() * sizeof(std::int32_t));
  return b;
}
inline Vec download(Backend& be, const DeviceBuffer& b, std::size_t n) {
  Vec v(n);
  be.synchronize();
  if (n) be.copy_to_host(v.data(), b.get(), n * sizeof(float));
  return v;
}

inline double max_abs(const DVec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// max_i |got_i - want_i| / max_i |want_i|: the normwise relative error used by every test.
inline double relative_error(const Vec& got, const DVec& want) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0;
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    err = std::max(err, std::fabs(double(got[i]) - want[i]));
  }
  const double scale = max_abs(want);
  return scale > 0 ? err / scale : err;
}

// Streams further context like any EXPECT_*: EXPECT_REL_ERROR_BELOW(got, want, 1e-6) << "step";
#define EXPECT_REL_ERROR_BELOW(got, want, tol) \
  EXPECT_LE(::btm::test::relative_error((got), (want)), (tol)) << #got " vs " #want ": "

// d loss / d x[k] by central differences, x perturbed in place and restored.
inline double central_difference(const std::function<double()>& loss, DVec& x, std::size_t k,
                                 double h = 1e-5) {
  const double x0 = x[k];
  x[k] = x0 + h;
  const double plus = loss();
  x[k] = x0 - h;
  const double minus = loss();
  x[k] = x0;
  return (plus - minus) / (2 * h);
}

// Coordinates to probe: all of them when there are few, else `count` spread at random.
inline std::vector<std::size_t> probe_coords(std::size_t n, std::size_t count, std::uint64_t seed) {
  std::vector<std::size_t> idx;
  if (n <= count) {
    for (std::size_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> dist(0, n - 1);
  for (std::size_t i = 0; i < count; ++i) idx.push_back(dist(rng));
  return idx;
}

// Compares an analytic gradient (from a backward kernel) with finite differences of a
// double-precision reference loss at the probed coordinates of x.
inline void expect_gradient_matches(const std::string& what, const Vec& analytic,
                                    const std::function<double()>& loss, DVec& x,
                                    std::size_t probes, double tol, std::uint64_t seed = 7) {
  ASSERT_EQ(analytic.size(), x.size()) << what;
  DVec fd, got;
  for (std::size_t k : probe_coords(x.size(), probes, seed)) {
    fd.push_back(central_difference(loss, x, k));
    got.push_back(analytic[k]);
  }
  // Scale by the largest gradient entry overall so that tiny entries do not dominate.
  double scale = 0;
  for (float g : analytic) scale = std::max(scale, double(std::fabs(g)));
  for (double g : fd) scale = std::max(scale, std::fabs(g));
  double err = 0;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < fd.size(); ++i) {
    if (std::fabs(got[i] - fd[i]) > err) err = std::fabs(got[i] - fd[i]), worst = i;
  }
  EXPECT_LE(err, tol * scale) << what << ": gradient vs finite differences (max |grad| = " << scale
                              << ", worst probe: kernel " << (got.empty() ? 0.0 : got[worst])
                              << ", finite difference " << (fd.empty() ? 0.0 : fd[worst]) << ")";
}

inline std::unique_ptr<Backend> cpu_backend() { return make_backend("cpu"); }

}  // namespace btm::test
