// Loading a fitted clustering and the from-scratch embedding (include/btm/cluster/clustering.hpp).
#include "btm/cluster/clustering.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "btm/cluster/fit.hpp"
#include "btm/cluster/terms.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"

namespace btm::cluster {

std::string cluster_domain(int i) { return "cluster-" + std::to_string(i); }

Clustering Clustering::load(const std::filesystem::path& clusters_h5) {
  h5::File f = h5::open_for_read(clusters_h5, "a clustering written by the cluster phase (clusters.h5)");
  for (const char* p : {"/vectorizer/vocabulary", "/vectorizer/idf", "/svd/components", "/centroids"}) {
    if (!f.exists(p)) throw Error(clusters_h5.string() + ": not a clustering written by the cluster phase (no " + p + ")");
  }
  Clustering c;
  c.method = f.string_attr("/", "method");
  c.temperature = f.attr<double>("/", "temperature");
  c.vocabulary = f.read_strings("/vectorizer/vocabulary");
  c.idf = f.read<double>("/vectorizer/idf");
  c.components = f.read<double>("/svd/components");
  c.centroids = f.read<double>("/centroids");
  const auto comp_shape = f.shape("/svd/components");
  const auto cent_shape = f.shape("/centroids");
  const std::size_t V = c.vocabulary.size();
  if (comp_shape.size() != 2 || cent_shape.size() != 2 || comp_shape[1] != V || cent_shape[1] != comp_shape[0] ||
      c.idf.size() != V) {
    throw Error(clusters_h5.string() + ": inconsistent shapes (vocabulary " + std::to_string(V) +
                ", idf, /svd/components [dims, V], /centroids [k, dims])");
  }
  c.dims = static_cast<int>(comp_shape[0]);
  c.k = static_cast<int>(cent_shape[0]);
  c.index_vocabulary();
  c.term_vectors.resize(V * c.dims);
  for (int d = 0; d < c.dims; ++d) {
    for (std::size_t j = 0; j < V; ++j) c.term_vectors[j * c.dims + d] = c.components[d * V + j];
  }
  return c;
}

void Clustering::index_vocabulary() {
  index.clear();
  index.reserve(vocabulary.size());
  for (std::size_t j = 0; j < vocabulary.size(); ++j) index.emplace(vocabulary[j], static_cast<std::int32_t>(j));
}

std::int32_t Clustering::find(std::string_view term) const {
  auto it = index.find(term);
  return it == index.end() ? -1 : it->second;
}

SparseVector Clustering::tfidf(std::string_view text) const {
  std::vector<std::int32_t> ids;
  for_each_term(text, [&](std::string_view t) {
    const std::int32_t j = find(t);
    if (j >= 0) ids.push_back(j);
  });
  return tfidf_vector(run_lengths(std::move(ids)), idf);
}

void Clustering::project(const SparseVector& x, double* out) const {
  std::fill(out, out + dims, 0.0);
  for (const auto& [j, v] : x) {
    const double* row = term_vectors.data() + static_cast<std::size_t>(j) * dims;  // [dims]
    for (int d = 0; d < dims; ++d) out[d] += v * row[d];
  }
  double norm = 0;
  for (int d = 0; d < dims; ++d) norm += out[d] * out[d];
  if (norm > 0) {
    const double inv = 1.0 / std::sqrt(norm);
    for (int d = 0; d < dims; ++d) out[d] *= inv;
  }
}

std::vector<double> Clustering::embed(std::string_view text) const {
  std::vector<double> z(dims);
  project(tfidf(text), z.data());
  return z;
}

void squared_distances(const double* embedding, const double* centroids, int k, int dims, double* out) {
  for (int i = 0; i < k; ++i) {
    const double* c = centroids + static_cast<std::size_t>(i) * dims;  // [dims]
    double s = 0;
    for (int d = 0; d < dims; ++d) {
      const double diff = embedding[d] - c[d];
      s += diff * diff;
    }
    out[i] = s;
  }
}

void Clustering::squared_distances(const double* embedding, double* out) const {
  cluster::squared_distances(embedding, centroids.data(), k, dims, out);
}

std::vector<double> Clustering::squared_distances(const std::vector<double>& embedding) const {
  if (static_cast<int>(embedding.size()) != dims) {
    throw Error("squared_distances: embedding has " + std::to_string(embedding.size()) + " values; expected " +
                std::to_string(dims));
  }
  std::vector<double> out(k);
  squared_distances(embedding.data(), out.data());
  return out;
}

int Clustering::nearest(const std::vector<double>& embedding) const {
  const auto d = squared_distances(embedding);
  return static_cast<int>(std::min_element(d.begin(), d.end()) - d.begin());
}

}  // namespace btm::cluster
