// Balanced assignment is exact: compared with brute force over every assignment with the
// required sizes on small random cases; sizes are n/k (+1 for the first n mod k clusters).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <random>

#include "btm/cluster/balanced_assignment.hpp"

using btm::cluster::balanced_assignment;
using btm::cluster::balanced_capacities;

namespace {

double cost_of(const std::vector<double>& cost, const std::vector<int>& label, int k) {
  double s = 0;
  for (std::size_t i = 0; i < label.size(); ++i) s += cost[i * k + label[i]];
  return s;
}

// The least total cost over all assignments with the balanced sizes.
double brute_force(const std::vector<double>& cost, std::size_t n, int k) {
  const auto cap = balanced_capacities(n, k);
  std::vector<int> label(n);
  std::vector<std::uint64_t> used(k, 0);
  double best = std::numeric_limits<double>::infinity();
  std::function<void(std::size_t, double)> go = [&](std::size_t i, double s) {
    if (s >= best) return;
    if (i == n) {
      best = s;
      return;
    }
    for (int c = 0; c < k; ++c) {
      if (used[c] == cap[c]) continue;
      ++used[c];
      go(i + 1, s + cost[i * k + c]);
      --used[c];
    }
  };
  go(0, 0.0);
  return best;
}

}  // namespace

TEST(BalancedAssignment, CapacitiesDifferByAtMostOneAndSumToN) {
  EXPECT_EQ(balanced_capacities(10, 4), (std::vector<std::uint64_t>{3, 3, 2, 2}));
  EXPECT_EQ(balanced_capacities(8, 8), (std::vector<std::uint64_t>(8, 1)));
}

TEST(BalancedAssignment, EqualsBruteForceOnSmallRandomCases) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 4.0);
  int cases = 0;
  for (int k = 2; k <= 4; ++k) {
    for (std::size_t n = k; n <= 9; ++n) {
      for (int rep = 0; rep < 12; ++rep, ++cases) {
        std::vector<double> cost(n * k);
        // Some cases with clustered costs (many points prefer the same cluster).
        for (auto& c : cost) c = rep % 3 == 0 ? std::floor(u(rng)) : u(rng);
        const auto label = balanced_assignment(cost.data(), n, k);
        std::vector<std::uint64_t> size(k, 0);
        for (int c : label) ++size[c];
        ASSERT_EQ(size, balanced_capacities(n, k)) << "n=" << n << " k=" << k;
        ASSERT_NEAR(cost_of(cost, label, k), brute_force(cost, n, k), 1e-9) << "n=" << n << " k=" << k << " rep=" << rep;
      }
    }
  }
  EXPECT_GT(cases, 200);
}

TEST(BalancedAssignment, AllPointsPreferringOneClusterAreSpreadCheapest) {
  // Every point is nearest to cluster 0; the ones whose second choice is cheapest move.
  const std::vector<double> cost = {0, 5, 0, 1, 0, 9, 0, 2};  // 4 points x 2 clusters
  EXPECT_EQ(balanced_assignment(cost.data(), 4, 2), (std::vector<int>{0, 1, 0, 1}));
}

TEST(BalancedAssignment, LargerCasesKeepSizesAndBeatTheGreedyRepair) {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> g;
  const std::size_t n = 2000;
  const int k = 16;
  std::vector<double> cost(n * k);
  for (auto& c : cost) c = g(rng) * g(rng) + 3;
  const auto label = balanced_assignment(cost.data(), n, k);
  std::vector<std::uint64_t> size(k, 0);
  for (int c : label) ++size[c];
  EXPECT_EQ(size, balanced_capacities(n, k));
  // Optimality: no pair of points can swap clusters for a lower cost.
  for (std::size_t i = 0; i < n; i += 7) {
    for (std::size_t j = i + 1; j < n; j += 13) {
      const double now = cost[i * k + label[i]] + cost[j * k + label[j]];
      const double swapped = cost[i * k + label[j]] + cost[j * k + label[i]];
      ASSERT_GE(swapped, now - 1e-9) << i << " " << j;
    }
  }
  // Same input, same output.
  EXPECT_EQ(balanced_assignment(cost.data(), n, k), label);
}
