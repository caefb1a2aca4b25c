// The distributed fitting steps give bit-identical results at any rank count (the world
// communicator against rank 0 alone on the same rows), and the SVD and k-means are right.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "btm/cluster/balanced_assignment.hpp"
#include "btm/cluster/exact_sum.hpp"
#include "btm/cluster/fit.hpp"
#include "btm/comm.hpp"

using namespace btm::cluster;

namespace {

btm::Comm self() { return btm::Comm(MPI_COMM_SELF); }  // rank 0 alone (after MPI_Init)

// n unit rows over V terms drawn from `topics` groups of terms (documents of a topic use
// mostly its terms), made identically on every rank.
Csr synthetic_rows(std::uint64_t n, std::int64_t V, int topics, RowShard shard, std::vector<int>* topic_of = nullptr) {
  std::mt19937_64 rng(42);
  Csr x;
  for (std::uint64_t i = 0; i < n; ++i) {
    const int t = static_cast<int>(i % topics);
    if (topic_of) topic_of->push_back(t);
    std::vector<std::pair<std::int32_t, double>> counts;
    for (int w = 0; w < 12; ++w) {
      const bool own = rng() % 5 != 0;
      const std::int64_t lo = own ? t * V / topics : 0, width = own ? V / topics : V;
      counts.emplace_back(static_cast<std::int32_t>(lo + rng() % width), 1.0 + rng() % 3);
    }
    std::sort(counts.begin(), counts.end());
    std::vector<std::pair<std::int32_t, double>> merged;
    for (auto& c : counts) {
      if (!merged.empty() && merged.back().first == c.first) merged.back().second += c.second;
      else merged.push_back(c);
    }
    if (i < shard.begin || i >= shard.end) continue;
    for (const auto& [j, v] : tfidf_vector(merged, std::vector<double>(V, 1.0))) {
      x.col.push_back(j);
      x.val.push_back(v);
    }
    x.row_ptr.push_back(x.col.size());
  }
  return x;
}

std::vector<double> embed(const Csr& x, const Svd& svd, int dims) {
  Clustering c;
  c.dims = dims;
  c.term_vectors = svd.term_vectors;
  std::vector<double> e(x.rows() * dims);
  for (std::uint64_t i = 0; i < x.rows(); ++i) {
    SparseVector row;
    for (auto p = x.row_ptr[i]; p < x.row_ptr[i + 1]; ++p) row.emplace_back(x.col[p], x.val[p]);
    c.project(row, e.data() + i * dims);
  }
  return e;
}

}  // namespace

TEST(ClusterFit, ShardsAreWholeBlocksCoveringEveryRowOnce) {
  for (std::uint64_t n : {0ull, 1ull, 63ull, 64ull, 65ull, 1000ull}) {
    for (int ranks : {1, 2, 3, 4, 7}) {
      std::uint64_t next = 0;
      for (int r = 0; r < ranks; ++r) {
        const RowShard s = shard_rows(n, r, ranks);
        EXPECT_EQ(s.begin, next);
        EXPECT_TRUE(s.begin % kBlockRows == 0 || s.begin == n);
        next = s.end;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(ClusterFit, ExactSumIsIndependentOfOrderAndRanks) {
  const btm::Comm world = btm::Comm::world();
  std::mt19937_64 rng(3);
  std::vector<double> v(1000);
  for (auto& x : v) x = std::ldexp(static_cast<double>(rng() % 1000000) - 5e5, -static_cast<int>(rng() % 40));
  ExactSum forward(1, 1e6), backward(1, 1e6), spread(1, 1e6);
  for (std::size_t i = 0; i < v.size(); ++i) {
    forward.add(0, v[i]);
    backward.add(0, v[v.size() - 1 - i]);
    if (static_cast<int>(i % world.size()) == world.rank()) spread.add(0, v[i]);
  }
  spread.allreduce(world);
  EXPECT_EQ(forward.value(0), backward.value(0));
  EXPECT_EQ(forward.value(0), spread.value(0));
}

TEST(ClusterFit, VocabularyAndIdfAreTheSameOnAnyRankCount) {
  const btm::Comm world = btm::Comm::world();
  const std::vector<std::string> all = {"apples and oranges", "oranges oranges pears", "kiwi apples",
                                        "grapes grapes", "pears and kiwi and apples", "melon"};
  const RowShard s = shard_rows(all.size(), world.rank(), world.size());
  const auto mine = count_terms({all.begin() + s.begin, all.begin() + s.end});
  const Vocabulary v = fit_vocabulary(mine, all.size(), world);
  const Vocabulary alone = fit_vocabulary(count_terms(all), all.size(), self());
  EXPECT_EQ(v.terms, alone.terms);
  EXPECT_EQ(v.idf, alone.idf);
  EXPECT_EQ(v.terms, (std::vector<std::string>{"apples", "grapes", "kiwi", "melon", "oranges", "pears"}));
  EXPECT_DOUBLE_EQ(v.idf[0], std::log(7.0 / 4.0) + 1.0);  // apples: 3 of 6 documents
}

TEST(ClusterFit, SvdIsBitIdenticalAtAnyRankCountAndSolvesTheEigenproblem) {
  const btm::Comm world = btm::Comm::world();
  const std::uint64_t n = 700;  // 11 blocks
  const std::int64_t V = 240;
  const int dims = 6;
  const RowShard shard = shard_rows(n, world.rank(), world.size());
  const Svd svd = truncated_svd(synthetic_rows(n, V, 4, shard), shard, n, V, dims, 9, world);
  const RowShard everything{0, n};
  const Csr all = synthetic_rows(n, V, 4, everything);
  const Svd alone = truncated_svd(all, everything, n, V, dims, 9, self());
  EXPECT_EQ(svd.term_vectors, alone.term_vectors);
  EXPECT_EQ(svd.singular_values, alone.singular_values);

  // Converged (more passes than the default 5): orthonormal components, X^T X v = s^2 v for
  // the leading ones, descending values.
  const Svd exact = truncated_svd(all, everything, n, V, dims, 9, self(), 40);
  for (int a = 0; a < dims; ++a) {
    for (int b = 0; b < dims; ++b) {
      double dot = 0;
      for (std::int64_t j = 0; j < V; ++j) dot += exact.term_vectors[j * dims + a] * exact.term_vectors[j * dims + b];
      EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-10);
    }
    if (a > 0) EXPECT_GE(exact.singular_values[a - 1], exact.singular_values[a]);
  }
  for (int d = 0; d < 3; ++d) {
    std::vector<double> xv(n, 0.0), xtxv(V, 0.0);
    for (std::uint64_t i = 0; i < n; ++i) {
      for (auto p = all.row_ptr[i]; p < all.row_ptr[i + 1]; ++p) xv[i] += all.val[p] * exact.term_vectors[all.col[p] * dims + d];
    }
    for (std::uint64_t i = 0; i < n; ++i) {
      for (auto p = all.row_ptr[i]; p < all.row_ptr[i + 1]; ++p) xtxv[all.col[p]] += all.val[p] * xv[i];
    }
    const double s2 = exact.singular_values[d] * exact.singular_values[d];
    double residual = 0;
    for (std::int64_t j = 0; j < V; ++j) residual += std::pow(xtxv[j] - s2 * exact.term_vectors[j * dims + d], 2);
    EXPECT_LT(std::sqrt(residual), 1e-6 * s2) << "component " << d;
  }
}

TEST(ClusterFit, KMeansIsBitIdenticalAtAnyRankCountAndFindsTheTopics) {
  const btm::Comm world = btm::Comm::world();
  const std::uint64_t n = 700;
  const std::int64_t V = 240;
  const int dims = 6, k = 4;
  const RowShard shard = shard_rows(n, world.rank(), world.size());
  const RowShard everything{0, n};
  std::vector<int> topic;
  const Csr all = synthetic_rows(n, V, k, everything, &topic);
  const Svd svd = truncated_svd(all, everything, n, V, dims, 9, self());
  const std::vector<double> e_all = embed(all, svd, dims);
  const std::vector<double> e_mine(e_all.begin() + shard.begin * dims, e_all.begin() + shard.end * dims);
  for (bool balanced : {true, false}) {
    const KMeans km = fit_kmeans(e_mine, shard, n, dims, k, balanced, 30, 5, world);
    const KMeans alone = fit_kmeans(e_all, everything, n, dims, k, balanced, 30, 5, self());
    EXPECT_EQ(km.labels, alone.labels);
    EXPECT_EQ(km.centroids, alone.centroids);
    EXPECT_EQ(km.inertia, alone.inertia);
    std::vector<std::uint64_t> size(k, 0);
    for (int c : km.labels) ++size[c];
    if (balanced) EXPECT_EQ(size, balanced_capacities(n, k));
    // The topics are recovered: each cluster is mostly one topic.
    std::vector<std::vector<int>> joint(k, std::vector<int>(k, 0));
    for (std::uint64_t i = 0; i < n; ++i) ++joint[km.labels[i]][topic[i]];
    int agree = 0;
    for (const auto& row : joint) agree += *std::max_element(row.begin(), row.end());
    EXPECT_GT(agree, static_cast<int>(0.9 * n)) << (balanced ? "balanced" : "unbalanced");
  }
}
