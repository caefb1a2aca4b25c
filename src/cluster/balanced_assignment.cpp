// Exact balanced assignment (include/btm/cluster/balanced_assignment.hpp).
//
// Invariant: the assignment is optimal for the current cluster sizes, with cluster prices
// p such that every point i in cluster a has cost[i,a] - p[a] <= cost[i,b] - p[b]. Moving
// one point from a to b costs w(a,b) = min over i in a of cost[i,b] - cost[i,a] >= p[a] - p[b],
// so the reduced costs w(a,b) - p[a] + p[b] are >= 0 and Dijkstra finds the cheapest chain
// of moves from an over-full cluster to an under-full one. Moving along it keeps the
// assignment optimal for the new sizes (successive shortest paths), and p -= distance keeps
// the invariant.
#include "btm/cluster/balanced_assignment.hpp"

#include <algorithm>
#include <limits>
#include <queue>

#include "btm/error.hpp"

namespace btm::cluster {

namespace {

struct Move {
  double cost;        // cost[i, to] - cost[i, from]
  std::uint64_t point;
  bool operator>(const Move& o) const { return cost != o.cost ? cost > o.cost : point > o.point; }
};
using MoveHeap = std::priority_queue<Move, std::vector<Move>, std::greater<Move>>;

}  // namespace

std::vector<std::uint64_t> balanced_capacities(std::size_t n, int k) {
  std::vector<std::uint64_t> cap(k, n / k);
  for (std::size_t c = 0; c < n % k; ++c) ++cap[c];
  return cap;
}

std::vector<int> nearest_assignment(const double* cost, std::size_t n, int k) {
  std::vector<int> label(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double* row = cost + i * k;  // [k]
    label[i] = static_cast<int>(std::min_element(row, row + k) - row);
  }
  return label;
}

std::vector<int> balanced_assignment(const double* cost, std::size_t n, int k) {
  if (k < 1) fail_call("balanced_assignment: k must be at least 1");
  std::vector<int> label = nearest_assignment(cost, n, k);
  if (k == 1) return label;
  const auto cap = balanced_capacities(n, k);
  std::vector<std::int64_t> size(k, 0);
  for (int c : label) ++size[c];

  // heaps[a * k + b]: moves a -> b of points in a (stale entries skipped when popped).
  std::vector<MoveHeap> heaps(static_cast<std::size_t>(k) * k);
  auto push_point = [&](std::uint64_t i) {
    const int a = label[i];
    const double* row = cost + i * k;  // [k]
    for (int b = 0; b < k; ++b) {
      if (b != a) heaps[a * k + b].push({row[b] - row[a], i});
    }
  };
  for (std::uint64_t i = 0; i < n; ++i) push_point(i);
  // The cheapest valid move a -> b, or null when a has no point.
  auto top = [&](int a, int b) -> const Move* {
    MoveHeap& h = heaps[a * k + b];
    while (!h.empty() && label[h.top().point] != a) h.pop();
    return h.empty() ? nullptr : &h.top();
  };

  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> price(k, 0.0), dist(k);
  std::vector<int> from(k);
  std::vector<char> done(k);
  for (;;) {
    int source = -1;
    for (int c = 0; c < k && source < 0; ++c) {
      if (size[c] > static_cast<std::int64_t>(cap[c])) source = c;
    }
    if (source < 0) break;
    // Dijkstra over the k clusters on reduced costs, until the first under-full cluster.
    std::fill(dist.begin(), dist.end(), kInf);
    std::fill(from.begin(), from.end(), -1);
    std::fill(done.begin(), done.end(), 0);
    dist[source] = 0;
    int target = -1;
    for (int step = 0; step < k; ++step) {
      int a = -1;
      for (int c = 0; c < k; ++c) {
        if (!done[c] && dist[c] < kInf && (a < 0 || dist[c] < dist[a])) a = c;
      }
      if (a < 0) break;
      done[a] = 1;
      if (size[a] < static_cast<std::int64_t>(cap[a])) {
        target = a;
        break;
      }
      for (int b = 0; b < k; ++b) {
        if (done[b] || b == a) continue;
        const Move* m = top(a, b);
        if (!m) continue;
        const double d = dist[a] + std::max(0.0, m->cost - price[a] + price[b]);  // >= 0 up to rounding
        if (d < dist[b]) {
          dist[b] = d;
          from[b] = a;
        }
      }
    }
    if (target < 0) fail_call("balanced_assignment: no under-full cluster reachable");
    // Prices: p -= min(dist, dist[target]) keeps the reduced costs non-negative.
    for (int c = 0; c < k; ++c) price[c] -= std::min(dist[c], dist[target]);
    // Move one point along each edge of the path, last edge first, so that a moved point
    // never moves twice.
    for (int b = target; b != source; b = from[b]) {
      const int a = from[b];
      const Move* m = top(a, b);
      const std::uint64_t i = m->point;
      heaps[a * k + b].pop();
      label[i] = b;
      push_point(i);
    }
    --size[source];
    ++size[target];
  }
  return label;
}

}  // namespace btm::cluster
