// C-BTM routing; the definitions are in include/btm/eval/routing.hpp.
#include "btm/eval/routing.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "btm/cluster/terms.hpp"
#include "btm/error.hpp"
#include "btm/eval/ensemble.hpp"
#include "btm/h5.hpp"

namespace btm {

namespace {

bool is_whitespace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

// Cluster order for top-k: ascending key, ties to the lower index.
std::vector<std::int32_t> smallest(const double* key, int k, int top_k) {
  std::vector<std::int32_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key[a] < key[b]; });
  order.resize(top_k);
  return order;
}

}  // namespace

void check_router_settings(const RouterSettings& s, int clusters, const std::string& where) {
  if (s.top_k < 1 || s.top_k > clusters) {
    throw Error(where + ".top_k = " + std::to_string(s.top_k) + ": expected 1.." + std::to_string(clusters) +
                " (the clustering has " + std::to_string(clusters) + " clusters)");
  }
  if (!(s.temperature > 0) || !std::isfinite(s.temperature)) {
    throw Error(where + ".temperature = " + std::to_string(s.temperature) + ": expected a positive number");
  }
  if (s.distance_power != 2 && s.distance_power != 4) {
    throw Error(where + ".distance_power = " + std::to_string(s.distance_power) + ": expected 2 or 4");
  }
}

void routing_weights(const double* squared_distances, int k, const RouterSettings& s, std::int32_t* index,
                     double* weight) {
  std::vector<double> score(k);  // d^p / T
  for (int j = 0; j < k; ++j) {
    const double d2 = squared_distances[j];
    score[j] = (s.distance_power == 4 ? d2 * d2 : d2) / s.temperature;
  }
  const auto top = smallest(score.data(), k, s.top_k);
  // exp(-score) relative to the nearest centre: the first weight is exp(0), never underflows.
  double total = 0;
  for (int r = 0; r < s.top_k; ++r) {
    index[r] = top[r];
    weight[r] = std::exp(score[top[0]] - score[top[r]]);
    total += weight[r];
  }
  for (int r = 0; r < s.top_k; ++r) weight[r] /= total;
}

void fallback_weights(const std::vector<double>& sizes, int top_k, std::int32_t* index, double* weight) {
  std::vector<double> key(sizes.size());
  for (std::size_t j = 0; j < sizes.size(); ++j) key[j] = -sizes[j];
  const auto top = smallest(key.data(), static_cast<int>(sizes.size()), top_k);
  for (int r = 0; r < top_k; ++r) {
    index[r] = top[r];
    weight[r] = 1.0 / top_k;
  }
}

std::vector<double> read_cluster_sizes(const std::filesystem::path& clusters_h5) {
  h5::File f = h5::open_for_read(clusters_h5, "a clustering written by the cluster phase (clusters.h5)");
  if (!f.exists("/sizes")) throw Error(clusters_h5.string() + ": no /sizes (training documents per cluster)");
  const auto sizes = f.read<std::uint64_t>("/sizes");
  return std::vector<double>(sizes.begin(), sizes.end());
}

PrefixEmbedder::PrefixEmbedder(const cluster::Clustering& clustering) : clustering_(clustering) {
  const std::size_t V = clustering.vocabulary.size(), D = clustering.dims;
  if (clustering.idf.size() != V || clustering.term_vectors.size() != V * D) {
    throw Error("routing: the clustering's idf or SVD components do not match its vocabulary and dimensions");
  }
  columns_.resize(V * D);
  for (std::size_t v = 0; v < V; ++v) {
    for (std::size_t d = 0; d < D; ++d) columns_[v * D + d] = clustering.idf[v] * clustering.term_vectors[v * D + d];
  }
  counts_.assign(V, 0);
  y_.assign(D, 0.0);
}

void PrefixEmbedder::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  std::fill(y_.begin(), y_.end(), 0.0);
  terms_ = 0;
  final_ = seen_ = 0;
  tail_terms_.clear();
}

void PrefixEmbedder::add(std::int32_t term, int delta) {
  // tf is the raw count: y changes by delta * idf_v * P[:, v].
  counts_[term] += delta;
  terms_ += delta;
  const double* col = columns_.data() + std::size_t(term) * clustering_.dims;  // [dims]
  for (int d = 0; d < clustering_.dims; ++d) y_[d] += delta * col[d];
}

void PrefixEmbedder::count_terms(std::string_view text, int delta, std::vector<std::int32_t>* seen) {
  cluster::for_each_term(text, [&](std::string_view term) {
    const std::int32_t v = clustering_.find(term);
    if (v < 0) return;
    add(v, delta);
    if (seen) seen->push_back(v);
  });
}

void PrefixEmbedder::update(const std::string& stable, const std::string& tail) {
  if (stable.size() < seen_) throw Error("routing: the prefix text shrank; reset the embedder first");
  for (std::int32_t v : tail_terms_) add(v, -1);
  tail_terms_.clear();
  // The stable text up to its last whitespace is final: count its terms once.
  std::size_t cut = final_;
  for (std::size_t i = stable.size(); i > std::max(seen_, final_); --i) {
    if (is_whitespace(stable[i - 1])) {
      cut = i;
      break;
    }
  }
  seen_ = stable.size();
  if (cut > final_) {
    count_terms(std::string_view(stable).substr(final_, cut - final_), +1, nullptr);
    final_ = cut;
  }
  // The partial word after it, as a from-scratch embedding of the whole text counts it.
  count_terms(stable.substr(final_) + tail, +1, &tail_terms_);
  if (terms_ == 0) std::fill(y_.begin(), y_.end(), 0.0);  // no drift left behind
}

bool PrefixEmbedder::embedding(double* out) const {
  double norm = 0;
  for (double v : y_) norm += v * v;
  norm = std::sqrt(norm);
  if (terms_ == 0 || !(norm > 0)) {
    std::fill(out, out + clustering_.dims, 0.0);
    return false;
  }
  for (int d = 0; d < clustering_.dims; ++d) out[d] = y_[d] / norm;
  return true;
}

BlockDistances block_distances(const std::int32_t* tokens, int context, int eos, const cluster::Clustering& clustering,
                               PrefixDecoder& decoder, PrefixEmbedder& embedder) {
  const int k = clustering.k;
  BlockDistances out;
  out.squared.assign(std::size_t(context) * k, 0.0);
  out.has_terms.assign(context, 0);
  std::vector<double> e(clustering.dims);
  decoder.reset();
  embedder.reset();
  for (int t = 0; t < context; ++t) {
    if (tokens[t] == eos) {  // a new document starts with target t
      decoder.reset();
      embedder.reset();
      continue;
    }
    decoder.push(tokens[t]);
    embedder.update(decoder.stable(), decoder.tail());
    if (embedder.embedding(e.data())) {
      out.has_terms[t] = 1;
      clustering.squared_distances(e.data(), out.squared.data() + std::size_t(t) * k);
    }
  }
  return out;
}

BlockRoute route_block(const BlockDistances& d, int k, const std::vector<double>& sizes, const RouterSettings& s) {
  const int T = static_cast<int>(d.has_terms.size()), K = s.top_k;
  BlockRoute r;
  r.index.resize(std::size_t(T) * K);
  r.weight.resize(std::size_t(T) * K);
  for (int t = 0; t < T; ++t) {
    std::int32_t* idx = r.index.data() + std::size_t(t) * K;
    double* w = r.weight.data() + std::size_t(t) * K;
    if (d.has_terms[t]) routing_weights(d.squared.data() + std::size_t(t) * k, k, s, idx, w);
    else fallback_weights(sizes, K, idx, w);
  }
  return r;
}

std::vector<int> experts_of_route(const BlockRoute& r, int tokens, int top_k) {
  std::vector<int> out;
  for (std::size_t i = 0; i < std::size_t(tokens) * top_k; ++i) {
    if (r.weight[i] > 0) out.push_back(r.index[i]);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

double routed_nll(const BlockRoute& r, int tokens, int top_k, const std::function<const float*(int)>& logp) {
  std::map<int, const float*> rows;
  for (int j : experts_of_route(r, tokens, top_k)) rows[j] = logp(j);
  std::vector<double> terms(top_k);
  double nll = 0;
  for (int t = 0; t < tokens; ++t) {
    int n = 0;
    for (int q = 0; q < top_k; ++q) {
      const double w = r.weight[std::size_t(t) * top_k + q];
      if (w > 0) terms[n++] = std::log(w) + rows.at(r.index[std::size_t(t) * top_k + q])[t];
    }
    nll -= logsumexp(terms.data(), n);
  }
  return nll;
}

}  // namespace btm
