#pragma once
// Balanced assignment: n points to k clusters, cluster c receiving exactly capacity(c)
// points (n / k, the first n mod k clusters one more), minimising the summed cost (squared
// distance). Exact: a min-cost flow by successive shortest paths on the k-node cluster
// graph, starting from the greedy (nearest-cluster) assignment; each step moves one point
// out of an over-full cluster along the cheapest chain of moves (Dijkstra with potentials;
// per cluster pair, a heap of its points' move costs). O(n k (k + log n)) time, O(n k)
// memory. Deterministic: ties go to the lower cluster and point index.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace btm::cluster {

// Sizes of the k clusters for n points.
std::vector<std::uint64_t> balanced_capacities(std::size_t n, int k);

// cost[n, k] row-major; returns each point's cluster.
std::vector<int> balanced_assignment(const double* cost, std::size_t n, int k);

// Each point's cheapest cluster (lowest index on ties): the greedy assignment.
std::vector<int> nearest_assignment(const double* cost, std::size_t n, int k);

}  // namespace btm::cluster
