#pragma once
// A fitted C-BTM clustering, loaded from clusters.h5 (written by the cluster phase,
// src/cluster/cluster_phase.cpp): the tf-idf vectorizer (vocabulary, idf), the truncated
// SVD (components) and the k centroids. embed() is the from-scratch reference embedding of
// one text, as the cluster phase computes it for every document:
//   tf-idf:  x_j = count_j * idf_j over the vocabulary terms of terms(text), then x / |x|
//   SVD:     z = components x               (dims values)
//   then     z / |z|                        (zero when the text has no vocabulary term)
// and squared_distances() the routing scores |z - c_i|^2 for each centroid c_i.
//
// clusters.h5 layout (float64 unless noted):
//   /vectorizer/vocabulary  string [V], sorted (byte order)
//   /vectorizer/idf         [V]: ln((1 + n) / (1 + df)) + 1, n = documents fitted on
//   /svd/components         [dims, V]   (scikit-learn's TruncatedSVD.components_)
//   /svd/singular_values    [dims], descending
//   /centroids              [k, dims]
//   /sizes                  uint64 [k]: training documents per cluster (train split)
//   /fit/sizes              uint64 [k]: fitted (sampled) documents per cluster
//   /assignments/<domain>/<split>   int32 [documents of that split in data.h5]: cluster
//   root attributes: k, method, assign, svd_dims, sample_docs, iterations, seed, temperature,
//   documents_fitted, vocabulary_size, iterations_run, inertia, balance, and, with domain
//   labels, purity and nmi; /meta: deck, version, phase = "cluster", cluster_settings.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace btm::cluster {

// Hashes strings and string views alike: vocabulary lookups without copying the term.
struct TermHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TermIndex = std::unordered_map<std::string, std::int32_t, TermHash, std::equal_to<>>;

// One document's tf-idf vector: (vocabulary index, weight), indices ascending, unit norm.
using SparseVector = std::vector<std::pair<std::int32_t, double>>;

struct Clustering {
  std::string method;                    // balanced | unbalanced | random
  int k = 0;                             // clusters
  int dims = 0;                          // SVD dimensions
  double temperature = 0.1;              // routing softmax temperature (cluster.temperature)
  std::vector<std::string> vocabulary;   // [V] sorted
  TermIndex index;                       // term -> vocabulary position
  std::vector<double> idf;               // [V]
  std::vector<double> components;        // [dims, V] row-major, as in the file
  std::vector<double> term_vectors;      // [V, dims]: components transposed (one row per term)
  std::vector<double> centroids;         // [k, dims] row-major

  // Reads clusters.h5; throws naming the file when it is missing or not a clustering.
  static Clustering load(const std::filesystem::path& clusters_h5);

  // Fills `index` from `vocabulary` (load() does; for clusterings built in memory).
  void index_vocabulary();

  std::int64_t vocabulary_size() const { return static_cast<std::int64_t>(vocabulary.size()); }
  // The vocabulary position of `term`, or -1.
  std::int32_t find(std::string_view term) const;

  SparseVector tfidf(std::string_view text) const;
  // out[dims] = the unit-norm SVD projection of a tf-idf vector (zeros when it is empty).
  // Any positive scaling of the vector gives the same result.
  void project(const SparseVector& x, double* out) const;
  std::vector<double> embed(std::string_view text) const;  // [dims]
  // out[k] = |embedding - centroid_i|^2; embedding[dims].
  void squared_distances(const double* embedding, double* out) const;
  std::vector<double> squared_distances(const std::vector<double>& embedding) const;  // [k]
  // The nearest centroid (lowest index on ties).
  int nearest(const std::vector<double>& embedding) const;
};

// out[k] = |embedding - centroid_i|^2 for centroids[k, dims], embedding[dims]: the one
// distance formula of fitting, assignment and routing.
void squared_distances(const double* embedding, const double* centroids, int k, int dims, double* out);

// Name of cluster i's training domain: "cluster-<i>".
std::string cluster_domain(int i);

}  // namespace btm::cluster
