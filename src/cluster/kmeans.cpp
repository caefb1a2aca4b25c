// Distributed k-means with a balanced or greedy assignment step (include/btm/cluster/fit.hpp).
#include <algorithm>
#include <cmath>
#include <random>

#include "btm/cluster/balanced_assignment.hpp"
#include "btm/cluster/exact_sum.hpp"
#include "btm/cluster/fit.hpp"
#include "btm/error.hpp"

namespace btm::cluster {

namespace {

double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

int owner_of(std::uint64_t row, std::uint64_t total_rows, int ranks) {
  for (int r = 0; r < ranks; ++r) {
    const RowShard s = shard_rows(total_rows, r, ranks);
    if (row >= s.begin && row < s.end) return r;
  }
  fail_call("kmeans: row " + std::to_string(row) + " has no owner");
}

// Row `row`'s embedding on every rank.
std::vector<double> row_everywhere(const std::vector<double>& e, RowShard shard, std::uint64_t row,
                                   std::uint64_t total_rows, int dims, const Comm& comm) {
  std::vector<double> out(dims);
  const int owner = owner_of(row, total_rows, comm.size());
  if (comm.rank() == owner) std::copy_n(e.begin() + (row - shard.begin) * dims, dims, out.begin());
  comm.broadcast(out.data(), out.size() * sizeof(double), owner);
  return out;
}

// Sum over all rows of f(local row), exact at any rank count; |f| <= 4 (unit vectors).
template <class F>
double sum_rows(RowShard shard, std::uint64_t total_rows, const Comm& comm, F f) {
  ExactSum sum(1, 4.0 * static_cast<double>(total_rows) + 1.0);
  for (std::uint64_t b0 = 0; b0 < shard.size(); b0 += kBlockRows) {
    double partial = 0;
    for (std::uint64_t i = b0; i < std::min(shard.size(), b0 + kBlockRows); ++i) partial += f(i);
    sum.add(0, partial);
  }
  sum.allreduce(comm);
  return sum.value(0);
}

double squared_distance(const double* a, const double* b, int dims) {
  double d2 = 0;
  squared_distances(a, b, 1, dims, &d2);
  return d2;
}

// Greedy k-means++ (Arthur & Vassilvitskii; scikit-learn's variant): each new centroid is
// the best of 2 + ln k candidates drawn with probability proportional to D^2.
std::vector<double> kmeans_plus_plus(const std::vector<double>& e, RowShard shard, std::uint64_t total_rows, int dims,
                                     int k, std::uint64_t seed, const Comm& comm) {
  std::mt19937_64 rng(seed);
  std::vector<double> centroids;
  const auto first = static_cast<std::uint64_t>(uniform(rng) * total_rows);
  auto c0 = row_everywhere(e, shard, std::min(first, total_rows - 1), total_rows, dims, comm);
  centroids.insert(centroids.end(), c0.begin(), c0.end());
  std::vector<double> d2(shard.size());
  for (std::uint64_t i = 0; i < shard.size(); ++i) d2[i] = squared_distance(e.data() + i * dims, c0.data(), dims);
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  for (int c = 1; c < k; ++c) {
    const std::vector<double> all = gather_rows(d2, shard, total_rows, 1, comm);
    double total = 0;
    for (double v : all) total += v;
    std::vector<double> best_row;
    double best_potential = 0;
    for (int t = 0; t < trials; ++t) {
      std::uint64_t pick = 0;
      if (total > 0) {
        const double r = uniform(rng) * total;
        double run = 0;
        pick = total_rows - 1;
        for (std::uint64_t i = 0; i < total_rows; ++i) {
          run += all[i];
          if (run > r) {
            pick = i;
            break;
          }
        }
      } else {
        pick = std::min(total_rows - 1, static_cast<std::uint64_t>(uniform(rng) * total_rows));
      }
      auto candidate = row_everywhere(e, shard, pick, total_rows, dims, comm);
      const double potential = sum_rows(shard, total_rows, comm, [&](std::uint64_t i) {
        return std::min(d2[i], squared_distance(e.data() + i * dims, candidate.data(), dims));
      });
      if (best_row.empty() || potential < best_potential) {
        best_potential = potential;
        best_row = std::move(candidate);
      }
    }
    for (std::uint64_t i = 0; i < shard.size(); ++i) {
      d2[i] = std::min(d2[i], squared_distance(e.data() + i * dims, best_row.data(), dims));
    }
    centroids.insert(centroids.end(), best_row.begin(), best_row.end());
  }
  return centroids;
}

}  // namespace

std::vector<double> label_means(const std::vector<double>& e, RowShard shard, const std::vector<int>& labels,
                                int dims, int k, const Comm& comm) {
  const std::uint64_t total_rows = labels.size();
  ExactSum sums(static_cast<std::size_t>(k) * dims, static_cast<double>(total_rows) + 1.0);
  std::vector<std::uint64_t> counts(k, 0);
  std::vector<double> partial(static_cast<std::size_t>(k) * dims);  // one block's sums, [k, dims]
  for (std::uint64_t b0 = 0; b0 < shard.size(); b0 += kBlockRows) {
    std::fill(partial.begin(), partial.end(), 0.0);
    for (std::uint64_t i = b0; i < std::min(shard.size(), b0 + kBlockRows); ++i) {
      const int c = labels[shard.begin + i];
      ++counts[c];
      const double* row = e.data() + i * dims;  // [dims]
      for (int d = 0; d < dims; ++d) partial[c * dims + d] += row[d];
    }
    sums.add(0, partial.data(), partial.size());
  }
  sums.allreduce(comm);
  comm.allreduce_sum(counts.data(), counts.size());
  std::vector<double> means = sums.values();
  for (int c = 0; c < k; ++c) {
    for (int d = 0; d < dims; ++d) means[c * dims + d] = counts[c] ? means[c * dims + d] / counts[c] : 0.0;
  }
  return means;
}

KMeans fit_kmeans(const std::vector<double>& e, RowShard shard, std::uint64_t total_rows, int dims, int k,
                  bool balanced, int iterations, std::uint64_t seed, const Comm& comm) {
  if (k < 1 || static_cast<std::uint64_t>(k) > total_rows) fail_call("fit_kmeans: k must be in 1..rows");
  KMeans out;
  out.centroids = kmeans_plus_plus(e, shard, total_rows, dims, k, seed, comm);
  std::vector<double> dist(shard.size() * k);
  for (int it = 0; it < iterations; ++it) {
    for (std::uint64_t i = 0; i < shard.size(); ++i) {
      squared_distances(e.data() + i * dims, out.centroids.data(), k, dims, dist.data() + i * k);
    }
    std::vector<int> labels;
    if (balanced) {
      const std::vector<double> all = gather_rows(dist, shard, total_rows, k, comm);
      labels = balanced_assignment(all.data(), total_rows, k);
    } else {
      labels = gather_rows(nearest_assignment(dist.data(), shard.size(), k), shard, total_rows, 1, comm);
    }
    out.iterations = it + 1;
    if (labels == out.labels) break;  // the centroids would not move
    out.labels = std::move(labels);
    std::vector<double> means = label_means(e, shard, out.labels, dims, k, comm);
    std::vector<std::uint64_t> counts(k, 0);
    for (int c : out.labels) ++counts[c];
    for (int c = 0; c < k; ++c) {
      if (counts[c]) std::copy_n(means.begin() + c * dims, dims, out.centroids.begin() + c * dims);
    }
  }
  out.inertia = sum_rows(shard, total_rows, comm, [&](std::uint64_t i) {
    return squared_distance(e.data() + i * dims, out.centroids.data() + out.labels[shard.begin + i] * dims, dims);
  });
  return out;
}

}  // namespace btm::cluster
