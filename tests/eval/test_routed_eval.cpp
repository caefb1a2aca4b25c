// C-BTM routed evaluation on the grid: the routed mixture equals a from-scratch evaluation
// (every prefix decoded and embedded anew), top_k = k with a huge temperature is the
// uniform mixture, experts outside every target's top-k are not run, and the numbers are
// the same at any rank count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "btm/cluster/clustering.hpp"
#include "btm/cluster/terms.hpp"
#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/eval/evaluate.hpp"
#include "btm/eval/routing.hpp"
#include "btm/h5.hpp"
#include "btm/model/llama.hpp"
#include "btm/model/model_file.hpp"
#include "btm/phases.hpp"
#include "data/data_helpers.hpp"
#include "support/error_of.hpp"
#include "support/test_paths.hpp"

using btm::test::error_of;

namespace {

using btm::EnsembleConfig;
using btm::EvalPlan;
using btm::EvalResults;

constexpr int kContext = 16;
constexpr int kClusters = 3;
constexpr int kDims = 6;
// Cluster j's domain in clustered.h5 holds the tokens of this data.h5 domain.
const std::vector<std::string> kSource = {"scripture", "code-go", "dictionary"};

EnsembleConfig routed(const std::string& name, int top_k, double temperature, int power) {
  return {name, "cached", "exact", top_k, "cluster", temperature, power};
}

// A clustering whose centroids are the embeddings of the three source domains' valid text:
// routing then prefers the matching expert, as a fitted clustering would.
btm::cluster::Clustering make_clustering(const btm::Dataset& data, const btm::Tokenizer& tok) {
  std::vector<std::string> texts;
  for (const auto& d : kSource) {
    const auto n = data.num_tokens(d, "valid");
    std::vector<std::int32_t> ids(std::min<std::uint64_t>(n, 4000));
    data.read_block(d, "valid", 0, static_cast<int>(ids.size()) - 1, ids.data());
    texts.push_back(tok.decode(ids));
  }
  std::set<std::string> words;
  for (const auto& t : texts) {
    for (const auto& w : btm::cluster::terms(t)) words.insert(w);
  }
  btm::cluster::Clustering c;
  c.k = kClusters;
  c.dims = kDims;
  c.method = "balanced";
  int i = 0;
  for (const auto& w : words) {
    if (i++ % 4 != 3) c.vocabulary.push_back(w);
  }
  const std::size_t V = c.vocabulary.size();
  for (std::size_t j = 0; j < V; ++j) c.index.emplace(c.vocabulary[j], static_cast<std::int32_t>(j));
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uni(1.0, 5.0);
  for (std::size_t v = 0; v < V; ++v) c.idf.push_back(uni(rng));
  for (std::size_t x = 0; x < kDims * V; ++x) c.components.push_back(normal(rng));
  c.term_vectors.resize(V * kDims);
  for (int d = 0; d < kDims; ++d) {
    for (std::size_t v = 0; v < V; ++v) c.term_vectors[v * kDims + d] = c.components[d * V + v];
  }
  for (const auto& t : texts) {
    const auto e = c.embed(t);
    c.centroids.insert(c.centroids.end(), e.begin(), e.end());
  }
  return c;
}

void write_clusters_file(const std::filesystem::path& path, const btm::cluster::Clustering& c,
                         const std::vector<std::uint64_t>& sizes) {
  btm::h5::File f(path, btm::h5::File::Mode::create);
  f.write_strings("/vectorizer/vocabulary", c.vocabulary);
  f.write<double>("/vectorizer/idf", c.idf);
  f.write<double>("/svd/components", c.components, {hsize_t(c.dims), hsize_t(c.vocabulary.size())});
  f.write<double>("/centroids", c.centroids, {hsize_t(c.k), hsize_t(c.dims)});
  f.write<std::uint64_t>("/sizes", sizes);
  f.set_attr("/", "method", c.method);
  f.set_attr<double>("/", "temperature", 0.1);
}

// clustered.h5: data.h5's tokenizer, and cluster-j = the valid and test splits of kSource[j].
void write_clustered_file(const std::filesystem::path& path, const btm::Dataset& data) {
  btm::h5::File in(data.path(), btm::h5::File::Mode::read);
  btm::h5::File f(path, btm::h5::File::Mode::create);
  const std::string model = data.tokenizer_model();
  f.write<std::uint8_t>("/tokenizer/model", std::vector<std::uint8_t>(model.begin(), model.end()));
  f.set_attr<std::int64_t>("/tokenizer/model", "vocab_size", data.vocab_size());
  f.set_attr<std::int64_t>("/tokenizer/model", "bos_id", data.bos_id());
  f.set_attr<std::int64_t>("/tokenizer/model", "eos_id", data.eos_id());
  for (int j = 0; j < kClusters; ++j) {
    for (const std::string split : {"valid", "test"}) {
      const std::string from = "/domains/" + kSource[j] + "/" + split, to = "/domains/cluster-" + std::to_string(j) + "/" + split;
      f.write<std::uint16_t>(to + "/tokens", in.read<std::uint16_t>(from + "/tokens"));
      f.write<std::uint64_t>(to + "/doc_offsets", in.read<std::uint64_t>(from + "/doc_offsets"));
      f.write_strings(to + "/doc_ids", in.read_strings(from + "/doc_ids"));
    }
  }
}

btm::ModelFile random_expert(int j, int vocab) {
  auto backend = btm::make_backend("cpu");
  btm::ModelFile m;
  m.config.hidden_size = 16;
  m.config.intermediate_size = 32;
  m.config.num_hidden_layers = 1;
  m.config.num_attention_heads = 2;
  m.config.num_key_value_heads = 1;
  m.config.vocab_size = vocab;
  m.config.max_position_embeddings = kContext;
  m.config.initializer_range = 0.5;  // experts that disagree clearly
  btm::Llama model(m.config, *backend);
  model.init_weights(300 + j);
  m.params = model.get_params();
  const std::string name = "cluster-" + std::to_string(j);
  m.meta = {name, "experts", "", name, ""};
  m.tokenizer = {"test", vocab, 1, 2};
  return m;
}

struct Fixture {
  std::filesystem::path dir;
  EvalPlan plan;  // experts cluster-0..2, the metadata domains and the clusters; no ensembles
};

// Collective: rank 0 prepares data.h5 from the split_jsonl fixture and writes the rest.
Fixture make_fixture(const std::string& name) {
  const auto dir = btm::test::fresh_dir(name);
  btm::Deck deck = btm::test::fixture_deck(dir);
  if (btm::Comm::world().is_root()) {
    btm::run_prepare(deck, btm::Comm(MPI_COMM_SELF));
    btm::Dataset data(dir / "data.h5");
    btm::Tokenizer tok(data.tokenizer_model());
    write_clusters_file(dir / "clusters.h5", make_clustering(data, tok), {40, 55, 55});
    write_clustered_file(dir / "clustered.h5", data);
    for (int j = 0; j < kClusters; ++j) {
      btm::save_model(dir / "experts" / ("cluster-" + std::to_string(j) + ".h5"), random_expert(j, data.vocab_size()));
    }
  }
  btm::Comm::world().barrier();
  Fixture fx{dir, {}};
  fx.plan.train_domains = {"scripture", "code-go", "dictionary"};
  fx.plan.heldout_domains = {"tech-lexicon"};
  fx.plan.cluster_domains = {"cluster-0", "cluster-1", "cluster-2"};
  fx.plan.clusters_file = dir / "clusters.h5";
  fx.plan.max_tokens_per_domain = 40 * kContext;
  fx.plan.batch = 4;
  fx.plan.single_experts = btm::SingleExperts::none;
  for (int j = 0; j < kClusters; ++j) {
    const std::string n = "cluster-" + std::to_string(j);
    fx.plan.experts.push_back({n, n, dir / "experts" / (n + ".h5")});
  }
  return fx;
}

// ---- the from-scratch reference --------------------------------------------------------

struct Reference {
  std::unique_ptr<btm::Backend> backend = btm::make_backend("cpu");  // outlives the models
  btm::cluster::Clustering clustering;
  std::vector<double> sizes;
  std::unique_ptr<btm::Tokenizer> tok;
  std::vector<std::unique_ptr<btm::Llama>> experts;
};

Reference load_reference(const Fixture& fx, const btm::Dataset& data) {
  Reference r;
  r.clustering = btm::cluster::Clustering::load(fx.dir / "clusters.h5");
  r.sizes = btm::read_cluster_sizes(fx.dir / "clusters.h5");
  r.tok = std::make_unique<btm::Tokenizer>(data.tokenizer_model());
  for (const auto& e : fx.plan.experts) {
    const btm::ModelFile m = btm::load_model(e.file);
    r.experts.push_back(std::make_unique<btm::Llama>(m.config, *r.backend));
    r.experts.back()->set_params(m.params);
  }
  return r;
}

// Weights of one target from scratch: decode the prefix, embed it, softmax over every
// cluster, keep the top_k nearest (ties to the lower index), renormalise.
std::vector<double> reference_weights(const Reference& r, const std::vector<std::int32_t>& prefix, int top_k, double T,
                                      int power) {
  const int k = r.clustering.k;
  std::vector<double> w(k, 0.0);
  const std::string text = r.tok->decode(prefix);
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  if (r.clustering.tfidf(text).empty()) {
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return r.sizes[a] > r.sizes[b]; });
    for (int q = 0; q < top_k; ++q) w[order[q]] = 1.0 / top_k;
    return w;
  }
  const auto sq = r.clustering.squared_distances(r.clustering.embed(text));
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return sq[a] < sq[b]; });
  double z = 0;
  for (int q = 0; q < top_k; ++q) z += w[order[q]] = std::exp(-std::pow(sq[order[q]], power / 2.0) / T);
  for (auto& x : w) x /= z;
  return w;
}

// The routed mixture's mean NLL over a domain's eval blocks, from scratch; with
// `uniform`, the plain average of the experts' probabilities instead.
double reference_nll(const Reference& r, const btm::Dataset& data, const std::string& domain, const EvalPlan& plan,
                     int top_k, double T, int power, bool uniform = false) {
  const auto blocks = btm::eval_blocks(data, domain, plan.split, kContext, plan.max_tokens_per_domain);
  std::vector<std::int32_t> tokens(kContext + 1);
  std::vector<float> nll(kContext);
  double total = 0;
  const int k = r.clustering.k;
  for (auto b : blocks) {
    data.read_block(domain, plan.split, b, kContext, tokens.data());
    std::vector<std::vector<float>> logp(k, std::vector<float>(kContext));
    for (int j = 0; j < k; ++j) {
      r.experts[j]->token_nll(tokens.data(), 1, kContext, nll.data());
      for (int t = 0; t < kContext; ++t) logp[j][t] = -nll[t];
    }
    for (int t = 0; t < kContext; ++t) {
      std::vector<std::int32_t> prefix;
      for (int s = 0; s <= t; ++s) {
        if (tokens[s] == data.eos_id()) prefix.clear();
        else prefix.push_back(tokens[s]);
      }
      const auto w = uniform ? std::vector<double>(k, 1.0 / k) : reference_weights(r, prefix, top_k, T, power);
      double p = 0;
      for (int j = 0; j < k; ++j) p += w[j] * std::exp(double(logp[j][t]));
      total -= std::log(p);
    }
  }
  return total / double(blocks.size() * kContext);
}

std::vector<std::string> gather_lines(const std::vector<std::string>& v) {
  std::string mine;
  for (const auto& s : v) mine += s + "\n";
  std::vector<std::string> out;
  for (const auto& chunk : btm::Comm::world().allgather(mine)) {
    std::istringstream in(chunk);
    for (std::string line; std::getline(in, line);) out.push_back(line);
  }
  return out;
}

}  // namespace

TEST(RoutedEval, EqualsFromScratchRoutingOnMetadataAndClusterDomainsAtAnyRankCount) {
  Fixture fx = make_fixture("routed_eval");
  fx.plan.ensembles = {routed("top1", 1, 0.1, 2), routed("top2-d4", 2, 0.1, 4), routed("all", 0, 0.5, 2)};
  btm::Dataset data(fx.dir / "data.h5"), clustered(fx.dir / "clustered.h5");
  auto backend = btm::make_backend("cpu");
  const EvalResults world = btm::evaluate(fx.plan, data, *backend, btm::Comm::world(), &clustered);
  const EvalResults alone = btm::evaluate(fx.plan, data, *backend, btm::Comm(MPI_COMM_SELF), &clustered);
  ASSERT_EQ(world.rows.size(), 3u * 7);
  ASSERT_EQ(world.rows.size(), alone.rows.size());
  for (std::size_t i = 0; i < world.rows.size(); ++i) {
    EXPECT_EQ(world.rows[i].method, alone.rows[i].method);
    EXPECT_EQ(world.rows[i].domain, alone.rows[i].domain);
    EXPECT_EQ(world.rows[i].tokens, alone.rows[i].tokens);
    EXPECT_NEAR(world.rows[i].nll, alone.rows[i].nll, 1e-9 * alone.rows[i].nll) << world.rows[i].method;
  }
  EXPECT_EQ(world.selected, alone.selected);

  const Reference ref = load_reference(fx, data);
  for (const auto& d : fx.plan.domains()) {
    const btm::Dataset& src = d.rfind("cluster-", 0) == 0 ? clustered : data;
    EXPECT_NEAR(world.find("top1", d)->nll, reference_nll(ref, src, d, fx.plan, 1, 0.1, 2), 1e-5) << d;
    EXPECT_NEAR(world.find("top2-d4", d)->nll, reference_nll(ref, src, d, fx.plan, 2, 0.1, 4), 1e-5) << d;
    EXPECT_NEAR(world.find("all", d)->nll, reference_nll(ref, src, d, fx.plan, 3, 0.5, 2), 1e-5) << d;
  }
  // Routing follows the text: on each source domain top-1 skips expert-blocks.
  for (const auto& d : kSource) EXPECT_GT(world.routed.at("top1").at(d).skipped, 0u) << d;
  EXPECT_EQ(world.routed.at("all").at("scripture").skipped, 0u);
}

TEST(RoutedEval, AllClustersWithAHugeTemperatureIsTheUniformMixture) {
  Fixture fx = make_fixture("routed_uniform");
  fx.plan.ensembles = {routed("flat", 0, 1e12, 2), routed("flat-d4", kClusters, 1e12, 4)};
  btm::Dataset data(fx.dir / "data.h5"), clustered(fx.dir / "clustered.h5");
  auto backend = btm::make_backend("cpu");
  const EvalResults r = btm::evaluate(fx.plan, data, *backend, btm::Comm::world(), &clustered);
  const Reference ref = load_reference(fx, data);
  for (const std::string d : {"scripture", "tech-lexicon"}) {
    const double uniform = reference_nll(ref, data, d, fx.plan, 0, 1, 2, true);
    EXPECT_NEAR(r.find("flat", d)->nll, uniform, 1e-6) << d;
    EXPECT_NEAR(r.find("flat-d4", d)->nll, uniform, 1e-6) << d;
  }
}

TEST(RoutedEval, ExpertsOutsideEveryTargetsTopKAreNotRun) {
  Fixture fx = make_fixture("routed_skip");
  fx.plan.ensembles = {routed("top1", 1, 0.1, 2)};
  btm::Dataset data(fx.dir / "data.h5"), clustered(fx.dir / "clustered.h5");
  auto backend = btm::make_backend("cpu");
  btm::ModelPool pool(*backend, data.vocab_size(), kContext);
  const EvalResults r = btm::evaluate(fx.plan, data, pool, btm::Comm::world(), &clustered);
  // Blocks each expert file was scored on, per domain, over every rank.
  std::map<std::string, std::uint64_t> scored;  // domain -> expert-blocks
  for (const auto& line : gather_lines(pool.runs())) {
    std::vector<std::string> f;
    std::istringstream in(line);
    for (std::string s; std::getline(in, s, '|');) f.push_back(s);
    ASSERT_EQ(f.size(), 4u) << line;
    EXPECT_EQ(f[2], "test") << "routing needs no valid split";
    scored[f[1]] += std::stoull(f[3]);
  }
  std::uint64_t skipped = 0;
  for (const auto& d : fx.plan.domains()) {
    const auto& c = r.routed.at("top1").at(d);
    EXPECT_EQ(scored[d], c.needed) << d;
    EXPECT_EQ(r.expert_blocks_run.at(d), c.needed) << d;
    EXPECT_EQ(c.needed + c.skipped, c.blocks * kClusters) << d;
    EXPECT_GE(c.needed, c.blocks) << d;  // at least one expert per block
    skipped += c.skipped;
  }
  EXPECT_GT(skipped, 0u);
}

TEST(RoutedEval, BadRoutingSettingsAreNamedBeforeAnyWork) {
  Fixture fx = make_fixture("routed_errors");
  btm::Dataset data(fx.dir / "data.h5"), clustered(fx.dir / "clustered.h5");
  auto backend = btm::make_backend("cpu");
  auto run = [&](EvalPlan plan) { return error_of([&] { btm::evaluate(plan, data, *backend, btm::Comm::world(), &clustered); }); };
  EvalPlan p = fx.plan;
  p.ensembles = {routed("ok", 1, 0.1, 2), routed("wide", 4, 0.1, 2)};
  EXPECT_NE(run(p).find("eval.ensembles[1] (ensemble \"wide\""), std::string::npos) << run(p);
  EXPECT_NE(run(p).find(".top_k = 4: expected 1..3"), std::string::npos) << run(p);
  p.ensembles = {routed("cold", 1, 0.0, 2)};
  EXPECT_NE(run(p).find("eval.ensembles[0].temperature"), std::string::npos) << run(p);
  p.ensembles = {routed("cube", 1, 0.1, 3)};
  EXPECT_NE(run(p).find("eval.ensembles[0].distance_power"), std::string::npos) << run(p);
  p = fx.plan;
  p.clusters_file.clear();
  p.ensembles = {routed("nowhere", 1, 0.1, 2)};
  EXPECT_NE(run(p).find("eval.ensembles[0].router = \"cluster\""), std::string::npos) << run(p);
  p = fx.plan;
  p.experts.pop_back();
  p.ensembles = {routed("short", 1, 0.1, 2)};
  EXPECT_NE(run(p).find("no expert for cluster-2"), std::string::npos) << run(p);
}
