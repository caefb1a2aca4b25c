// The cluster phase (C-BTM): data.h5 -> clusters.h5 (the fitted clustering and every
// document's cluster) and clustered.h5 (the clusters as training domains, in data.h5's
// layout, held-out domains copied), read by every later phase through
// Deck::train_data_file().
//
// Steps, every one sharded over the ranks (rows in whole blocks, fit.hpp):
//   1. the fitting sample: cluster.sample_docs documents of the training domains' train
//      splits (all when 0), chosen by a hash of (cluster.seed, document) — decoded from
//      data.h5's tokens with its tokenizer, as routing at eval sees text;
//   2. vocabulary and idf (document frequencies allgathered), tf-idf rows;
//   3. truncated SVD to cluster.svd_dims (randomised subspace iteration, LAPACK);
//   4. centroids: k-means with the balanced assignment step (balanced), the greedy one
//      (unbalanced), or the means of an equal random split (random);
//   5. every document of every domain and split: its nearest centroid (random: the random
//      split of each split's training documents; held-out documents by nearest centroid;
//      cluster.assign = "balanced": the training documents of each split by exact
//      balanced assignment to the centroids).
// Sums over documents are exact (ExactSum), so the files are identical at any rank count.
// Rank 0 writes both files atomically, clustered.h5 first: clusters.h5 marks the phase done.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "btm/cluster/agreement.hpp"
#include "btm/cluster/balanced_assignment.hpp"
#include "btm/cluster/clustering.hpp"
#include "btm/cluster/fit.hpp"
#include "btm/cluster/terms.hpp"
#include "btm/comm.hpp"
#include "btm/config.hpp"
#include "btm/data/loader.hpp"
#include "btm/data/split.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "btm/log.hpp"
#include "btm/phases.hpp"
#include "cluster/documents.hpp"

namespace btm {

namespace fs = std::filesystem;
using namespace cluster;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string fixed(double v, int digits = 3) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string join(const std::vector<std::string>& items, const char* sep = ",") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

// Where the deck's [cluster] keys are named in messages.
std::string key(const Deck& deck, const std::string& name) {
  return (deck.source.empty() ? std::string("<deck>") : deck.source.string()) + ": cluster." + name;
}

// ---- settings: equal settings -> the phase is skipped ----------------------------------

using Settings = std::vector<std::pair<std::string, std::string>>;

Settings cluster_settings(const Deck& deck) {
  const ClusterConfig& c = deck.cluster;
  std::string data_settings = "(unknown)";
  try {
    h5::File f(deck.data_file(), h5::File::Mode::read);
    if (f.has_attr("/meta", "data_settings")) data_settings = std::to_string(fnv1a64(f.string_attr("/meta", "data_settings")));
  } catch (const std::exception&) {
  }
  return {{"cluster.k", std::to_string(c.k)},
          {"cluster.method", c.method},
          {"cluster.svd_dims", std::to_string(c.svd_dims)},
          {"cluster.sample_docs", std::to_string(c.sample_docs)},
          {"cluster.iterations", std::to_string(c.iterations)},
          {"cluster.assign", c.assign},
          {"cluster.seed", std::to_string(c.seed)},
          {"data.h5 settings (hash)", data_settings}};
}

std::string settings_text(const Settings& s) {
  std::string out;
  for (const auto& [k, v] : s) out += k + " = " + v + "\n";
  return out;
}

// True when clusters.h5 and clustered.h5 are there and were made with `wanted`; throws
// when they were made with other settings.
bool up_to_date(const Deck& deck, const Settings& wanted) {
  const fs::path path = deck.clusters_file();
  if (!fs::exists(path)) return false;
  const std::string fix = "delete " + path.string() + " and " + deck.clustered_file().string() +
                          " (and the models trained on the clusters) to cluster again, or set run.out_dir to another folder";
  std::string stored;
  try {
    h5::File f(path, h5::File::Mode::read);
    if (!f.has_attr("/meta", "cluster_settings")) throw Error("no /meta cluster_settings");
    stored = f.string_attr("/meta", "cluster_settings");
  } catch (const std::exception& e) {
    throw Error(path.string() + " exists but is not a clustering written by btm's cluster phase (" + e.what() + "); " + fix);
  }
  if (stored != settings_text(wanted)) {
    std::string diff;
    std::map<std::string, std::string> have;
    std::size_t pos = 0;
    while (pos < stored.size()) {
      const std::size_t end = stored.find('\n', pos), eq = stored.find(" = ", pos);
      if (eq < end) have[stored.substr(pos, eq - pos)] = stored.substr(eq + 3, end - eq - 3);
      pos = end + 1;
    }
    for (const auto& [k, v] : wanted) {
      const std::string old = have.count(k) ? have[k] : "(not recorded)";
      if (old != v) diff += "\n  " + k + ": the file has " + old + ", the deck has " + v;
    }
    throw Error(path.string() + " was made with different cluster settings:" + diff + "\n" + fix);
  }
  return fs::exists(deck.clustered_file());
}

// Runs `fn` on rank 0; every rank returns normally or throws rank 0's error.
void on_root(const Comm& comm, const std::function<void()>& fn) {
  std::string error;
  if (comm.is_root()) {
    try {
      fn();
    } catch (const std::exception& e) {
      error = std::string("!") + e.what();
    }
  }
  comm.broadcast(error);
  if (!error.empty()) throw Error(error.substr(1));
}

// ---- the fitting sample ------------------------------------------------------------------

// The training domains' train-split documents, in global order.
std::vector<DocRef> train_pool(const Documents& docs, const std::string& split) {
  std::vector<DocRef> pool;
  for (std::uint32_t p = 0; p < docs.parts().size(); ++p) {
    const Part& part = docs.parts()[p];
    if (!part.train_domain || part.split != split) continue;
    for (std::uint64_t i = 0; i < part.docs(); ++i) pool.push_back({p, i});
  }
  return pool;
}

// Positions in `pool` of the fitting sample, ascending: the `want` documents with the
// smallest hash of (seed, global index); all of them when want is 0 or too large.
std::vector<std::uint64_t> sample_positions(const Documents& docs, const std::vector<DocRef>& pool,
                                            std::uint64_t want, std::uint64_t seed) {
  std::vector<std::uint64_t> pos(pool.size());
  std::iota(pos.begin(), pos.end(), 0);
  if (want == 0 || want >= pool.size()) return pos;
  auto h = [&](std::uint64_t i) { return mix64(seed ^ mix64(docs.parts()[pool[i].part].first + pool[i].doc)); };
  std::nth_element(pos.begin(), pos.begin() + want, pos.end(),
                   [&](std::uint64_t a, std::uint64_t b) { return h(a) != h(b) ? h(a) < h(b) : a < b; });
  pos.resize(want);
  std::sort(pos.begin(), pos.end());
  return pos;
}

// ---- embedding -----------------------------------------------------------------------------

// e[rows, dims] for tf-idf rows.
std::vector<double> embed_rows(const Clustering& c, const Csr& x) {
  std::vector<double> e(x.rows() * c.dims);
  SparseVector row;
  for (std::uint64_t i = 0; i < x.rows(); ++i) {
    row.clear();
    for (std::uint64_t p = x.row_ptr[i]; p < x.row_ptr[i + 1]; ++p) row.emplace_back(x.col[p], x.val[p]);
    c.project(row, e.data() + i * c.dims);
  }
  return e;
}

// Labels of an equal random split of `n` documents: position in a seeded permutation mod k.
std::vector<int> random_split(std::uint64_t n, int k, std::uint64_t seed) {
  std::vector<std::uint64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(seed);
  for (std::uint64_t i = n; i > 1; --i) {
    const std::uint64_t j = rng() % i;
    std::swap(perm[i - 1], perm[j]);
  }
  std::vector<int> label(n);
  for (std::uint64_t p = 0; p < n; ++p) label[perm[p]] = static_cast<int>(p % k);
  return label;
}

// ---- the output files -------------------------------------------------------------------------

struct Fit {
  Clustering clustering;
  std::vector<double> singular_values;
  std::vector<std::uint64_t> fit_sizes;
  std::uint64_t fitted = 0;
  int iterations = 0;
  double inertia = 0;
};

void write_clustered(const Deck& deck, const Documents& docs, const std::vector<int>& labels, int k) {
  h5::AtomicWrite w(deck.clustered_file());
  h5::File& f = w.file();
  h5::File data(deck.data_file(), h5::File::Mode::read);
  const auto model = data.read<std::uint8_t>("/tokenizer/model");
  f.write<std::uint8_t>("/tokenizer/model", model);
  for (const char* a : {"vocab_size", "bos_id", "eos_id", "unk_id", "pad_id"}) {
    f.set_attr<std::int64_t>("/tokenizer/model", a, data.attr<std::int64_t>("/tokenizer/model", a));
  }
  f.set_attr("/tokenizer/model", "source", data.string_attr("/tokenizer/model", "source"));
  const bool narrow = docs.vocab_size() <= 65536;
  auto write_tokens = [&](const std::string& path, const std::vector<std::uint32_t>& t) {
    if (narrow) f.write<std::uint16_t>(path, std::vector<std::uint16_t>(t.begin(), t.end()));
    else f.write<std::uint32_t>(path, t);
  };
  for (const char* split : {"train", "valid", "test"}) {
    std::vector<std::vector<std::uint32_t>> tokens(k);
    std::vector<std::vector<std::uint64_t>> offsets(k, std::vector<std::uint64_t>{0});
    std::vector<std::vector<std::string>> ids(k);
    for (const Part& p : docs.parts()) {
      if (!p.train_domain || p.split != split) continue;
      const auto t = docs.tokens(p);
      const auto pid = docs.ids(p);
      for (std::uint64_t i = 0; i < p.docs(); ++i) {
        const int c = labels[p.first + i];
        tokens[c].insert(tokens[c].end(), t.begin() + p.offsets[i], t.begin() + p.offsets[i + 1]);
        offsets[c].push_back(tokens[c].size());
        ids[c].push_back(pid[i]);
      }
    }
    for (int c = 0; c < k; ++c) {
      if (ids[c].empty()) {
        throw Error("cluster: " + cluster_domain(c) + " received no document of the " + split +
                    " split, and every training domain needs train, valid and test documents; use fewer clusters "
                    "(cluster.k = " + std::to_string(k) + ") or more " + split + " documents (data." +
                    (std::string(split) == "train" ? "corpus" : std::string(split) + "_fraction") + ")");
      }
      const std::string g = "/domains/" + cluster_domain(c) + "/" + split;
      write_tokens(g + "/tokens", tokens[c]);
      f.write<std::uint64_t>(g + "/doc_offsets", offsets[c]);
      f.write_strings(g + "/doc_ids", ids[c]);
    }
  }
  std::vector<std::string> clusters;
  for (int c = 0; c < k; ++c) {
    clusters.push_back(cluster_domain(c));
    f.set_attr("/domains/" + cluster_domain(c), "role", std::string("train"));
  }
  // Held-out domains as they are in data.h5.
  for (const Part& p : docs.parts()) {
    if (p.train_domain) continue;
    const std::string g = "/domains/" + p.domain + "/" + p.split;
    write_tokens(g + "/tokens", docs.tokens(p));
    f.write<std::uint64_t>(g + "/doc_offsets", p.offsets);
    f.write_strings(g + "/doc_ids", docs.ids(p));
    if (data.has_attr(g, "text_bytes")) f.set_attr<std::uint64_t>(g, "text_bytes", data.attr<std::uint64_t>(g, "text_bytes"));
    f.set_attr("/domains/" + p.domain, "role", std::string("heldout"));
  }
  f.set_attr("/domains", "train", join(clusters));
  f.set_attr("/domains", "heldout", join(docs.heldout_domains()));
  f.set_attr("/domains", "clustered_from", join(docs.train_domains()));
  f.set_attr("/meta", "deck", to_toml(deck));
  f.set_attr("/meta", "version", std::string(BTM_VERSION));
  f.set_attr("/meta", "phase", std::string("cluster"));
  w.commit();
}

void write_clusters(const Deck& deck, const Documents& docs, const Fit& fit, const std::vector<int>& labels,
                    const std::vector<std::uint64_t>& sizes, const Agreement* agree, double balance,
                    const Settings& settings) {
  const Clustering& c = fit.clustering;
  const ClusterConfig& cfg = deck.cluster;
  h5::AtomicWrite w(deck.clusters_file());
  h5::File& f = w.file();
  const std::size_t V = c.vocabulary.size();
  f.write_strings("/vectorizer/vocabulary", c.vocabulary);
  f.write<double>("/vectorizer/idf", c.idf);
  f.set_attr("/vectorizer", "token_pattern", std::string("(?u)\\b\\w\\w+\\b"));
  f.set_attr("/vectorizer", "lowercase", std::string("true"));
  f.set_attr("/vectorizer", "number_term", std::string(kNumberTerm));
  f.set_attr("/vectorizer", "stop_words", std::string("english+number_term"));
  f.set_attr("/vectorizer", "idf_formula", std::string("ln((1 + n) / (1 + df)) + 1"));
  f.set_attr("/vectorizer", "norm", std::string("l2"));
  f.set_attr<std::uint64_t>("/vectorizer", "documents", fit.fitted);
  f.write<double>("/svd/components", c.components, {static_cast<hsize_t>(c.dims), static_cast<hsize_t>(V)});
  f.write<double>("/svd/singular_values", fit.singular_values);
  f.write<double>("/centroids", c.centroids, {static_cast<hsize_t>(c.k), static_cast<hsize_t>(c.dims)});
  f.write<std::uint64_t>("/sizes", sizes);
  f.write<std::uint64_t>("/fit/sizes", fit.fit_sizes);
  for (const Part& p : docs.parts()) {
    f.write<std::int32_t>("/assignments/" + p.domain + "/" + p.split,
                          std::vector<std::int32_t>(labels.begin() + p.first, labels.begin() + p.first + p.docs()));
  }
  f.set_attr<std::int64_t>("/", "k", cfg.k);
  f.set_attr("/", "method", cfg.method);
  f.set_attr("/", "assign", cfg.assign);
  f.set_attr<std::int64_t>("/", "svd_dims", cfg.svd_dims);
  f.set_attr<std::uint64_t>("/", "sample_docs", cfg.sample_docs);
  f.set_attr<std::int64_t>("/", "iterations", cfg.iterations);
  f.set_attr<std::uint64_t>("/", "seed", cfg.seed);
  f.set_attr<double>("/", "temperature", cfg.temperature);
  f.set_attr<std::uint64_t>("/", "documents_fitted", fit.fitted);
  f.set_attr<std::uint64_t>("/", "vocabulary_size", V);
  f.set_attr<std::int64_t>("/", "iterations_run", fit.iterations);
  f.set_attr<double>("/", "inertia", fit.inertia);
  f.set_attr<double>("/", "balance", balance);
  f.set_attr("/", "domains", join(docs.train_domains()));
  if (agree) {
    f.set_attr<double>("/", "purity", agree->purity);
    f.set_attr<double>("/", "nmi", agree->nmi);
  }
  f.set_attr("/meta", "deck", to_toml(deck));
  f.set_attr("/meta", "version", std::string(BTM_VERSION));
  f.set_attr("/meta", "phase", std::string("cluster"));
  f.set_attr("/meta", "cluster_settings", settings_text(settings));
  w.commit();
}

}  // namespace

void run_cluster(const Deck& deck, const Comm& world) {
  if (!deck.clustering()) {
    log_root(std::string("cluster: skipped, ") +
             (deck.cluster.given ? "cluster.enabled = false" : "the deck has no [cluster] section"));
    return;
  }
  const auto t0 = Clock::now();
  const ClusterConfig& cfg = deck.cluster;
  const Settings settings = cluster_settings(deck);
  std::string done = "0";
  on_root(world, [&] { done = up_to_date(deck, settings) ? "1" : "0"; });
  world.broadcast(done);
  if (done == "1") {
    on_root(world, [&] {  // the temperature is read at eval only: keep the file, update it
      const double stored = h5::File(deck.clusters_file(), h5::File::Mode::read).attr<double>("/", "temperature");
      if (stored != cfg.temperature) {
        h5::File(deck.clusters_file(), h5::File::Mode::read_write).set_attr<double>("/", "temperature", cfg.temperature);
        log_root("cluster: temperature " + fixed(stored, 6) + " -> " + fixed(cfg.temperature, 6) + " in " +
                 deck.clusters_file().string());
      }
    });
    log_root("cluster: skipped, " + deck.clusters_file().string() + " is up to date (same cluster settings and data)");
    return;
  }

  const Documents docs(deck.data_file());
  const std::vector<DocRef> pool = train_pool(docs, "train");
  if (pool.size() < static_cast<std::size_t>(cfg.k)) {
    throw Error(key(deck, "k") + ": found " + std::to_string(cfg.k) + " but the training domains' train splits have only " +
                std::to_string(pool.size()) + " documents; expected at most as many clusters as documents");
  }
  const std::vector<std::uint64_t> sample = sample_positions(docs, pool, cfg.sample_docs, cfg.seed);
  if (sample.size() < static_cast<std::size_t>(cfg.k)) {
    throw Error(key(deck, "sample_docs") + ": found " + std::to_string(cfg.sample_docs) + " but cluster.k = " +
                std::to_string(cfg.k) + "; expected 0 (all documents) or at least k documents to fit on");
  }
  const std::uint64_t n = sample.size();
  const RowShard shard = shard_rows(n, world.rank(), world.size());
  log_root("cluster: k=" + std::to_string(cfg.k) + " method=" + cfg.method + " documents=" + std::to_string(docs.total()) +
           " train_documents=" + std::to_string(pool.size()) + " fit_documents=" + std::to_string(n) +
           " ranks=" + std::to_string(world.size()));

  // 1-2. Decode, count terms, vocabulary, tf-idf.
  auto t = Clock::now();
  std::vector<DocRef> mine;
  for (std::uint64_t i = shard.begin; i < shard.end; ++i) mine.push_back(pool[sample[i]]);
  const LocalCounts counts = count_terms(docs.texts(mine));
  const double decode_s = seconds_since(t);
  t = Clock::now();
  const Vocabulary vocabulary = fit_vocabulary(counts, n, world);
  const auto V = static_cast<std::int64_t>(vocabulary.terms.size());
  if (cfg.svd_dims > V) {
    throw Error(key(deck, "svd_dims") + ": found " + std::to_string(cfg.svd_dims) + " but the vocabulary of the " +
                std::to_string(n) + " fitted documents has only " + std::to_string(V) +
                " terms; expected at most the vocabulary size");
  }
  if (static_cast<std::uint64_t>(cfg.svd_dims) > n) {
    throw Error(key(deck, "svd_dims") + ": found " + std::to_string(cfg.svd_dims) + " but only " + std::to_string(n) +
                " documents are fitted; expected at most the number of fitted documents (cluster.sample_docs)");
  }
  const Csr x = tfidf_rows(counts, vocabulary);
  const double vocab_s = seconds_since(t);

  // 3. SVD.
  t = Clock::now();
  Svd svd = truncated_svd(x, shard, n, V, cfg.svd_dims, cfg.seed, world);
  const double svd_s = seconds_since(t);
  Fit fit;
  fit.fitted = n;
  fit.singular_values = svd.singular_values;
  Clustering& c = fit.clustering;
  c.method = cfg.method;
  c.k = cfg.k;
  c.dims = cfg.svd_dims;
  c.temperature = cfg.temperature;
  c.vocabulary = vocabulary.terms;
  c.idf = vocabulary.idf;
  c.index_vocabulary();
  c.term_vectors = std::move(svd.term_vectors);
  c.components.resize(c.term_vectors.size());
  for (std::int64_t j = 0; j < V; ++j) {
    for (int d = 0; d < c.dims; ++d) c.components[d * V + j] = c.term_vectors[j * c.dims + d];
  }
  const std::vector<double> e = embed_rows(c, x);

  // 4. Centroids.
  t = Clock::now();
  std::vector<int> corpus_labels(docs.total(), -1);
  std::vector<int> fit_labels;
  if (cfg.method == "random") {
    // The random split of every split's training documents; the centroids of the sample.
    for (const char* split : {"train", "valid", "test"}) {
      const auto docs_of_split = train_pool(docs, split);
      const auto labels = random_split(docs_of_split.size(), cfg.k, cfg.seed ^ fnv1a64(split));
      for (std::size_t i = 0; i < docs_of_split.size(); ++i) {
        corpus_labels[docs.parts()[docs_of_split[i].part].first + docs_of_split[i].doc] = labels[i];
      }
    }
    for (std::uint64_t s : sample) fit_labels.push_back(corpus_labels[docs.parts()[pool[s].part].first + pool[s].doc]);
    c.centroids = label_means(e, shard, fit_labels, c.dims, c.k, world);
  } else {
    KMeans km = fit_kmeans(e, shard, n, c.dims, c.k, cfg.method == "balanced", cfg.iterations, cfg.seed, world);
    c.centroids = std::move(km.centroids);
    fit_labels = std::move(km.labels);
    fit.iterations = km.iterations;
    fit.inertia = km.inertia;
  }
  fit.fit_sizes.assign(c.k, 0);
  for (int l : fit_labels) ++fit.fit_sizes[l];
  const double kmeans_s = seconds_since(t);

  // 5. Every document's squared distances to the centroids: the sample's from their
  // embeddings, the others decoded and embedded (sharded evenly). Each document's row is
  // written by one rank; summing the zero rows of the others is exact.
  t = Clock::now();
  const std::uint64_t k = c.k;
  std::vector<double> dist(docs.total() * k, 0.0);
  std::vector<char> in_sample(docs.total(), 0);
  for (std::uint64_t s : sample) in_sample[docs.parts()[pool[s].part].first + pool[s].doc] = 1;
  for (std::uint64_t i = shard.begin; i < shard.end; ++i) {
    const DocRef& d = pool[sample[i]];
    c.squared_distances(e.data() + (i - shard.begin) * c.dims, dist.data() + (docs.parts()[d.part].first + d.doc) * k);
  }
  std::vector<DocRef> rest;
  for (std::uint32_t p = 0; p < docs.parts().size(); ++p) {
    const Part& part = docs.parts()[p];
    for (std::uint64_t i = 0; i < part.docs(); ++i) {
      if (!in_sample[part.first + i]) rest.push_back({p, i});
    }
  }
  const std::uint64_t r0 = rest.size() * world.rank() / world.size(), r1 = rest.size() * (world.rank() + 1) / world.size();
  {
    const std::vector<DocRef> todo(rest.begin() + r0, rest.begin() + r1);
    const auto texts = docs.texts(todo);
    std::vector<double> z(c.dims);
    for (std::size_t i = 0; i < todo.size(); ++i) {
      c.project(c.tfidf(texts[i]), z.data());
      c.squared_distances(z.data(), dist.data() + (docs.parts()[todo[i].part].first + todo[i].doc) * k);
    }
  }
  world.allreduce_sum(dist.data(), dist.size());
  // Nearest centroid (C-BTM), or per split of the training domains the exact balanced
  // assignment (cluster.assign = "balanced"); random: the random split.
  const std::vector<int> nearest = nearest_assignment(dist.data(), docs.total(), c.k);
  for (std::size_t i = 0; i < nearest.size(); ++i) {
    if (corpus_labels[i] < 0) corpus_labels[i] = nearest[i];
  }
  if (cfg.method != "random" && cfg.assign == "balanced") {
    for (const char* split : {"train", "valid", "test"}) {
      const auto of_split = train_pool(docs, split);
      std::vector<double> d(of_split.size() * k);
      for (std::size_t i = 0; i < of_split.size(); ++i) {
        const std::uint64_t g = docs.parts()[of_split[i].part].first + of_split[i].doc;
        std::copy_n(dist.begin() + g * k, k, d.begin() + i * k);
      }
      const auto labels = balanced_assignment(d.data(), of_split.size(), c.k);
      for (std::size_t i = 0; i < of_split.size(); ++i) {
        corpus_labels[docs.parts()[of_split[i].part].first + of_split[i].doc] = labels[i];
      }
    }
  }
  const double assign_s = seconds_since(t);

  // Sizes, balance and agreement with the domains on the training documents' train split.
  std::vector<std::uint64_t> sizes(c.k, 0);
  std::vector<int> clusters_of, domains_of;
  std::map<std::string, int> domain_index;
  for (const Part& p : docs.parts()) {
    if (!p.train_domain || p.split != "train") continue;
    const int d = domain_index.emplace(p.domain, static_cast<int>(domain_index.size())).first->second;
    for (std::uint64_t i = 0; i < p.docs(); ++i) {
      ++sizes[corpus_labels[p.first + i]];
      clusters_of.push_back(corpus_labels[p.first + i]);
      domains_of.push_back(d);
    }
  }
  const auto [smallest, largest] = std::minmax_element(sizes.begin(), sizes.end());
  const double balance = *largest ? static_cast<double>(*smallest) / static_cast<double>(*largest) : 0.0;
  const Agreement agree = agreement(clusters_of, domains_of);
  const bool labelled = domain_index.size() > 1;

  std::vector<std::string> size_text, fit_text;
  for (int i = 0; i < c.k; ++i) {
    size_text.push_back(std::to_string(sizes[i]));
    fit_text.push_back(std::to_string(fit.fit_sizes[i]));
  }
  log_root("cluster: vocabulary=" + std::to_string(V) + " nonzeros=" + std::to_string(world.allreduce_sum(std::uint64_t(x.col.size()))) + " svd_dims=" + std::to_string(c.dims) + " sigma1=" +
           fixed(fit.singular_values[0]) + " iterations=" + std::to_string(fit.iterations) + " inertia=" +
           fixed(fit.inertia) + " fit_sizes=" + join(fit_text));
  log_root("cluster: sizes=" + join(size_text) + " min=" + std::to_string(*smallest) + " max=" + std::to_string(*largest) +
           " balance=" + fixed(balance) +
           (labelled ? " purity=" + fixed(agree.purity) + " nmi=" + fixed(agree.nmi) : std::string()));
  t = Clock::now();
  on_root(world, [&] {
    write_clustered(deck, docs, corpus_labels, c.k);
    write_clusters(deck, docs, fit, corpus_labels, sizes, labelled ? &agree : nullptr, balance, settings);
  });
  world.barrier();
  const double write_s = seconds_since(t);

  log_root("cluster: wrote " + deck.clusters_file().string() + " and " + deck.clustered_file().string() +
           " decode_seconds=" + fixed(world.allreduce_max(decode_s), 2) + " vocabulary_seconds=" +
           fixed(world.allreduce_max(vocab_s), 2) + " svd_seconds=" + fixed(svd_s, 2) + " kmeans_seconds=" +
           fixed(kmeans_s, 2) + " assign_seconds=" + fixed(world.allreduce_max(assign_s), 2) + " write_seconds=" +
           fixed(write_s, 2) + " seconds=" + fixed(seconds_since(t0), 2));
}

}  // namespace btm
