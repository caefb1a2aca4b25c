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
#include "phases/tiny_deck.hpp"
#include "support/error_of.hpp"
#include "support/gather_lines.hpp"
#include "support/test_paths.hpp"

using btm::test::error_of;

namespace {

using btm::EnsembleConfig;
using btm::EvalPlan;
using btm::EvalResults;

constexpr int kContext = 16;
constexpr int kClusters = 3;

EnsembleConfig routed(const std::string& name, int top_k, double temperature, int power) {
  return {name, "cached", "exact", top_k, "cluster", temperature, power};
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

// inputs/tiny.toml on the split_jsonl fixture with 3 clusters: prepare and the cluster phase
// write data.h5, clusters.h5 and clustered.h5 (collective); rank 0 writes random experts
// cluster-0..2.
btm::Deck cluster_deck(const std::filesystem::path& dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> keys = {"cluster.k=3", "cluster.svd_dims=8"};
  keys.insert(keys.end(), extra.begin(), extra.end());
  return btm::test::tiny_deck(dir, keys);
}

Fixture make_fixture(const std::string& name) {
  const auto dir = btm::test::fresh_dir(name);
  const btm::Deck deck = cluster_deck(dir);
  EXPECT_TRUE(btm::run_phases(deck, {"prepare", "cluster"}, btm::Comm::world()));
  if (btm::Comm::world().is_root()) {
    btm::Dataset data(deck.data_file());
    for (int j = 0; j < kClusters; ++j) {
      btm::save_model(dir / "experts" / ("cluster-" + std::to_string(j) + ".h5"), random_expert(j, data.vocab_size()));
    }
  }
  btm::Comm::world().barrier();
  Fixture fx{dir, {}};
  fx.plan.train_domains = deck.data.train_domains;
  fx.plan.heldout_domains = deck.data.heldout_domains;
  fx.plan.cluster_domains = deck.cluster_domains();
  fx.plan.clusters_file = deck.clusters_file();
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
  // Top-1 skips expert-blocks on every domain.
  for (const auto& d : fx.plan.domains()) EXPECT_GT(world.routed.at("top1").at(d).skipped, 0u) << d;
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
  for (const auto& line : btm::test::gather_lines(pool.runs())) {
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

TEST(RoutedEvalPhase, ReportsTheCorpusDomainsTheHeldOutAndEachClusterWithRoutedColumns) {
  const auto dir = btm::test::fresh_dir("routed_phase");
  const btm::Deck deck = cluster_deck(
      dir, {"eval.ensembles=[{ name = \"cbtm-top1\", router = \"cluster\" }, { name = \"cbtm-all\", router = \"cluster\", top_k = 0 }, "
            "{ name = \"btm\" }]"});
  ASSERT_EQ(deck.eval.ensembles[0].top_k, 1);  // cluster.top_k
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "cluster", "seed", "experts", "eval"}, btm::Comm::world()));
  btm::h5::File f(deck.eval_file(), btm::h5::File::Mode::read);
  const auto method = f.read_strings("/results/method"), domain = f.read_strings("/results/domain");
  std::map<std::string, std::set<std::string>> domains_of;
  for (std::size_t i = 0; i < method.size(); ++i) domains_of[method[i]].insert(domain[i]);
  const std::set<std::string> all = {"scripture", "code-go", "dictionary", "tech-lexicon", "cluster-0", "cluster-1", "cluster-2"};
  for (const std::string m : {"seed", "cbtm-top1", "cbtm-all", "btm"}) EXPECT_EQ(domains_of[m], all) << m;
  EXPECT_EQ(domains_of["cluster-1"].size(), all.size());  // eval.single_experts = "all"
  EXPECT_EQ(f.string_attr("/results", "cluster_domains"), "cluster-0,cluster-1,cluster-2");
  const auto routed = f.read_strings("/routing/cbtm-top1/domain");
  EXPECT_EQ(std::set<std::string>(routed.begin(), routed.end()), all);
  const auto blocks = f.read<std::uint64_t>("/routing/cbtm-top1/blocks");
  const auto needed = f.read<std::uint64_t>("/routing/cbtm-top1/expert_blocks");
  const auto skipped = f.read<std::uint64_t>("/routing/cbtm-top1/skipped_expert_blocks");
  for (std::size_t i = 0; i < blocks.size(); ++i) EXPECT_EQ(needed[i] + skipped[i], 3 * blocks[i]) << routed[i];
  EXPECT_EQ(f.attr<std::int64_t>("/routing/cbtm-top1", "top_k"), 1);
  EXPECT_EQ(f.attr<std::int64_t>("/routing/cbtm-all", "top_k"), 0);
}
