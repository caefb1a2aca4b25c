// Evaluation of a plan: dense models over all ranks, experts on the 2-D grid, ensembles
// from the combined per-token log-probabilities.
#include "btm/eval/evaluate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <set>

#include "btm/cluster/clustering.hpp"
#include "btm/data/loader.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/eval/ensemble.hpp"
#include "btm/eval/prefix_decoder.hpp"
#include "btm/eval/routing.hpp"
#include "btm/h5.hpp"
#include "btm/log.hpp"
#include "btm/model/model_file.hpp"

namespace btm {

SingleExperts parse_single_experts(const std::string& value) {
  if (value == "all") return SingleExperts::all;
  if (value == "own") return SingleExperts::own;
  if (value == "none") return SingleExperts::none;
  throw Error("eval.single_experts = \"" + value + "\": expected \"all\", \"own\" or \"none\"");
}

std::string to_string(SingleExperts value) {
  switch (value) {
    case SingleExperts::all: return "all";
    case SingleExperts::own: return "own";
    case SingleExperts::none: return "none";
  }
  return "?";
}

std::vector<std::string> EvalPlan::domains() const {
  std::vector<std::string> out = train_domains;
  out.insert(out.end(), heldout_domains.begin(), heldout_domains.end());
  out.insert(out.end(), cluster_domains.begin(), cluster_domains.end());
  return out;
}

std::vector<std::string> EvalPlan::methods() const {
  std::vector<std::string> out;
  auto add = [&](const std::string& m) {
    if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  };
  for (const auto& m : models) add(m.method);
  for (const auto& e : experts) add(e.name);
  for (const auto& m : averages) add(m.method);
  for (const auto& e : ensembles) add(e.name);
  return out;
}

const ResultRow* EvalResults::find(const std::string& method, const std::string& domain) const {
  for (const auto& r : rows) {
    if (r.method == method && r.domain == domain) return &r;
  }
  return nullptr;
}

void validate_ensembles(const std::vector<EnsembleConfig>& ensembles) {
  for (std::size_t i = 0; i < ensembles.size(); ++i) {
    const EnsembleConfig& e = ensembles[i];
    const std::string where = "eval.ensembles[" + std::to_string(i) + "]";
    if (e.name.empty()) throw Error(where + ".name: every ensemble needs a name (its column in the results)");
    if (e.router == "cluster") {
      if (e.top_k < 0) {
        throw Error(where + ".top_k = " + std::to_string(e.top_k) + " (ensemble \"" + e.name +
                    "\"): expected 0 (all clusters) or a positive number of clusters");
      }
      if (!(e.temperature > 0) || !std::isfinite(e.temperature)) {
        throw Error(where + ".temperature = " + std::to_string(e.temperature) + " (ensemble \"" + e.name +
                    "\"): expected a positive number");
      }
      if (e.distance_power != 2 && e.distance_power != 4) {
        throw Error(where + ".distance_power = " + std::to_string(e.distance_power) + " (ensemble \"" + e.name +
                    "\"): expected 2 (exp(-d²/T)) or 4 (exp(-d⁴/T), the released code)");
      }
      continue;  // prior and posterior belong to the posterior router
    }
    if (e.router != "posterior") {
      throw Error(where + ".router = \"" + e.router + "\" (ensemble \"" + e.name +
                  "\"): expected \"posterior\" or \"cluster\"");
    }
    if (e.prior != "uniform" && e.prior != "cached") {
      throw Error(where + ".prior = \"" + e.prior + "\" (ensemble \"" + e.name + "\"): expected \"uniform\" or \"cached\"");
    }
    parse_posterior_rule(e.posterior, where + ".posterior");
    if (e.top_k < 0) {
      throw Error(where + ".top_k = " + std::to_string(e.top_k) + " (ensemble \"" + e.name +
                  "\"): expected 0 (all experts) or a positive number of experts");
    }
    if (e.top_k > 0 && e.prior == "uniform") {
      throw Error(where + ".top_k = " + std::to_string(e.top_k) + " with prior = \"uniform\" (ensemble \"" + e.name +
                  "\"): top-k keeps the experts with the largest prior, and a uniform prior ranks none above "
                  "another; set prior = \"cached\" or top_k = 0");
    }
  }
}

void validate_plan(const EvalPlan& plan) {
  validate_ensembles(plan.ensembles);
  for (std::size_t i = 0; i < plan.ensembles.size(); ++i) {
    if (plan.ensembles[i].router == "cluster" && plan.clusters_file.empty()) {
      throw Error("eval.ensembles[" + std::to_string(i) + "].router = \"cluster\" (ensemble \"" +
                  plan.ensembles[i].name + "\"): there is no clustering to route with; add a [cluster] section "
                  "(and run the cluster phase) or use router = \"posterior\"");
    }
  }
  if (plan.models.empty() && plan.experts.empty() && plan.averages.empty()) {
    throw Error("eval: no model to evaluate (no seed, baseline, expert or average model)");
  }
  const auto domains = plan.domains();
  if (domains.empty()) throw Error("eval: no domain to evaluate on (data.train_domains and data.heldout_domains are empty)");
  for (std::size_t i = 0; i < domains.size(); ++i) {
    if (std::find(domains.begin(), domains.begin() + i, domains[i]) != domains.begin() + i) {
      throw Error("eval: domain \"" + domains[i] + "\" is listed twice (data.train_domains, data.heldout_domains and the clusters)");
    }
  }
  if (plan.split.empty()) throw Error("eval.split is empty; expected \"test\" or \"valid\"");
  if (plan.batch <= 0) throw Error("eval.batch = " + std::to_string(plan.batch) + ": expected a positive number");
  if (plan.prior_sequences < 0) throw Error("eval.prior_sequences = " + std::to_string(plan.prior_sequences) + ": expected >= 0");
  if (!(plan.prior_alpha > 0 && plan.prior_alpha <= 1)) {
    throw Error("eval.prior_alpha = " + std::to_string(plan.prior_alpha) + ": expected a number in (0, 1]");
  }
  parse_posterior_rule(plan.prior_rule, "eval.prior_rule");
  if (!plan.ensembles.empty() && plan.experts.empty()) throw Error("eval: ensembles need experts, and the plan has none");
  // Column names: a name belongs to one kind of method; a dense method appears at most once per domain.
  std::map<std::string, std::string> kind;
  auto claim = [&](const std::string& name, const std::string& what) {
    if (name.empty()) throw Error("eval: a " + what + " has an empty name");
    auto [it, fresh] = kind.emplace(name, what);
    if (!fresh && (it->second != what || what != "dense")) {
      throw Error("eval: two methods are named \"" + name + "\" (" + it->second + " and " + what +
                  "); rename the ensemble or expert");
    }
  };
  std::set<std::pair<std::string, std::string>> cells;
  for (const auto* group : {&plan.models, &plan.averages}) {
    for (const auto& m : *group) {
      claim(m.method, "dense");
      for (const auto& d : m.domains.empty() ? domains : m.domains) {
        if (!cells.emplace(m.method, d).second) {
          throw Error("eval: method \"" + m.method + "\" has two models for domain \"" + d + "\"");
        }
      }
    }
  }
  for (const auto& e : plan.experts) claim(e.name, "expert");
  for (const auto& e : plan.ensembles) claim(e.name, "ensemble");
}

namespace {

ResultRow make_row(const std::string& method, const std::string& domain, const std::string& split, NllSum s) {
  ResultRow r{method, domain, split, s.tokens, std::nan(""), std::nan("")};
  if (s.tokens > 0) {
    r.nll = s.nll / double(s.tokens);
    r.perplexity = std::exp(r.nll);
  }
  return r;
}

// Every model file is checked on every rank before any collective work, so that a bad file
// stops all ranks at the same place instead of one rank while the others wait.
void check_models(const EvalPlan& plan, const Dataset& data, int context) {
  std::string expert_arch;
  auto check = [&](const std::filesystem::path& file, const std::string& method, bool expert) {
    h5::File f = h5::open_for_read(file, "the model file of method \"" + method + "\"");
    const ModelConfig c = read_model_config(f);
    if (c.vocab_size != data.vocab_size()) {
      throw Error(file.string() + " (method \"" + method + "\"): the model has a vocabulary of " +
                  std::to_string(c.vocab_size) + " tokens, but " + data.path().string() + " has " +
                  std::to_string(data.vocab_size()));
    }
    if (c.max_position_embeddings < context) {
      throw Error(file.string() + " (method \"" + method + "\"): trained with a context of " +
                  std::to_string(c.max_position_embeddings) + " tokens, shorter than the evaluation context " +
                  std::to_string(context));
    }
    if (expert) {
      if (expert_arch.empty()) expert_arch = c.architecture_hash();
      if (c.architecture_hash() != expert_arch) {
        throw Error(file.string() + " (expert \"" + method + "\"): its architecture differs from the other experts'");
      }
    }
  };
  for (const auto& m : plan.models) check(m.file, m.method, false);
  for (const auto& m : plan.averages) check(m.file, m.method, false);
  for (const auto& e : plan.experts) check(e.file, e.name, true);
}

int plan_context(const EvalPlan& plan) {
  if (plan.context > 0) return plan.context;
  std::filesystem::path first;
  if (!plan.models.empty()) first = plan.models.front().file;
  else if (!plan.experts.empty()) first = plan.experts.front().file;
  else if (!plan.averages.empty()) first = plan.averages.front().file;
  else throw Error("eval: no model to evaluate (no seed, baseline, expert or average model)");
  h5::File f = h5::open_for_read(first, "a model file");
  return read_model_config(f).max_position_embeddings;
}

// Routing statistics of every rank added together (identical on every rank).
RoutingStats sum_routing(RoutingStats s, const Comm& comm) {
  std::vector<double> all(s.tokens.begin(), s.tokens.end());
  all.insert(all.end(), s.gate_sum.begin(), s.gate_sum.end());
  for (auto v : s.dropped) all.push_back(static_cast<double>(v));
  all.push_back(static_cast<double>(s.routed_tokens));
  comm.allreduce_sum(all.data(), all.size());
  const std::size_t n = s.tokens.size(), g = s.gate_sum.size();
  std::copy_n(all.begin(), n, s.tokens.begin());
  std::copy_n(all.begin() + n, g, s.gate_sum.begin());
  for (std::size_t l = 0; l < s.dropped.size(); ++l) s.dropped[l] = static_cast<std::uint64_t>(all[n + g + l]);
  s.routed_tokens = static_cast<std::uint64_t>(all.back());
  return s;
}

// log p of one expert on one domain's eval blocks: row `row` of a task's array, whose
// columns hold the task's blocks; `pos` maps the domain's block b to the task's block
// (-1: not scored); null: the task has every block.
struct RowRef {
  const std::vector<float>* array = nullptr;
  std::size_t row = 0;
  std::size_t stride = 0;  // task blocks x context
  const std::vector<std::int64_t>* pos = nullptr;
  const float* at(std::size_t b, int ctx) const {
    if (!array) return nullptr;
    const std::int64_t i = pos ? (*pos)[b] : static_cast<std::int64_t>(b);
    return i < 0 ? nullptr : array->data() + row * stride + std::size_t(i) * ctx;
  }
};

// Clusters a routed ensemble mixes per target: top_k, or all k for top_k = 0.
int routed_top_k(const EnsembleConfig& e, int k) { return e.top_k == 0 ? k : e.top_k; }

// What routing needs on every rank: the clustering, its sizes, the tokenizer's decoder, and
// the expert of each cluster.
struct RouterState {
  std::unique_ptr<cluster::Clustering> clustering;  // the embedder refers to it: never moves
  std::vector<double> sizes;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<PrefixDecoder> decoder;
  std::unique_ptr<PrefixEmbedder> embedder;
  std::vector<int> expert_of_cluster;  // [k] index into plan.experts
};

RouterState load_router(const EvalPlan& plan, const Dataset& data, const std::vector<int>& routed) {
  RouterState r;
  r.clustering = std::make_unique<cluster::Clustering>(cluster::Clustering::load(plan.clusters_file));
  r.sizes = read_cluster_sizes(plan.clusters_file);
  const int k = r.clustering->k;
  if (static_cast<int>(r.sizes.size()) != k) {
    throw Error(plan.clusters_file.string() + ": /sizes has " + std::to_string(r.sizes.size()) + " entries for " +
                std::to_string(k) + " clusters");
  }
  for (int i : routed) {
    const EnsembleConfig& e = plan.ensembles[i];
    check_router_settings({routed_top_k(e, k), e.temperature, e.distance_power}, k,
                          "eval.ensembles[" + std::to_string(i) + "] (ensemble \"" + e.name + "\", " +
                              plan.clusters_file.string() + ")");
  }
  for (int j = 0; j < k; ++j) {
    const std::string d = cluster::cluster_domain(j);
    int found = -1;
    for (std::size_t e = 0; e < plan.experts.size(); ++e) {
      if (plan.experts[e].domain == d) found = static_cast<int>(e);
    }
    if (found < 0) {
      throw Error("eval.ensembles[" + std::to_string(routed.front()) + "] (ensemble \"" + plan.ensembles[routed.front()].name +
                  "\", router = \"cluster\"): the forest has no expert for " + d + " of the " + std::to_string(k) +
                  " clusters in " + plan.clusters_file.string() + "; train the experts phase on the clusters");
    }
    r.expert_of_cluster.push_back(found);
  }
  r.tokenizer = std::make_unique<Tokenizer>(data.tokenizer_model());
  r.decoder = std::make_unique<PrefixDecoder>(*r.tokenizer);
  r.embedder = std::make_unique<PrefixEmbedder>(*r.clustering);
  return r;
}

}  // namespace

EvalResults evaluate(const EvalPlan& plan, const Dataset& data, Backend& backend, const Comm& comm,
                     const Dataset* clustered) {
  ModelPool pool(backend, data.vocab_size(), plan_context(plan));
  return evaluate(plan, data, pool, comm, clustered);
}

EvalResults evaluate(const EvalPlan& plan, const Dataset& data, ModelPool& pool, const Comm& comm,
                     const Dataset* clustered) {
  validate_plan(plan);
  if (!plan.cluster_domains.empty() && !clustered) {
    throw Error("eval: the plan evaluates the clusters' domains but no clustered data file was given");
  }
  if (clustered && clustered->tokenizer_model() != data.tokenizer_model()) {
    throw Error("eval: " + clustered->path().string() + " and " + data.path().string() + " have different tokenizers");
  }
  const std::set<std::string> cluster_set(plan.cluster_domains.begin(), plan.cluster_domains.end());
  auto data_of = [&](const std::string& d) -> const Dataset& { return cluster_set.count(d) ? *clustered : data; };
  const int ctx = pool.context();
  if (plan.context > 0 && plan.context != ctx) {
    throw Error("eval: the plan's context (" + std::to_string(plan.context) + ") differs from the model pool's (" +
                std::to_string(ctx) + ")");
  }
  const std::vector<std::string> domains = plan.domains();
  const int E = static_cast<int>(plan.experts.size());
  std::vector<PosteriorRule> rules(plan.ensembles.size());
  const PosteriorRule prior_rule = parse_posterior_rule(plan.prior_rule, "eval.prior_rule");
  bool any_cached = false;  // one cached prior per domain, shared by these ensembles
  bool all_experts_needed = false;  // an ensemble runs every expert whatever the prior
  std::vector<int> routed;          // ensembles with router = "cluster"
  for (std::size_t i = 0; i < plan.ensembles.size(); ++i) {
    const EnsembleConfig& e = plan.ensembles[i];
    if (e.router == "cluster") {
      routed.push_back(static_cast<int>(i));
      continue;
    }
    rules[i] = parse_posterior_rule(e.posterior, "eval.ensembles[" + std::to_string(i) + "].posterior");
    if (e.prior == "cached") any_cached = true;
    if (e.prior == "uniform" || e.top_k == 0 || e.top_k >= E) all_experts_needed = true;
  }
  std::vector<std::string> data_domains, clustered_domains;
  for (const auto& d : domains) (cluster_set.count(d) ? clustered_domains : data_domains).push_back(d);
  data.require(data_domains, plan.split);
  if (any_cached) data.require(data_domains, "valid");
  if (clustered) {
    clustered->require(clustered_domains, plan.split);
    if (any_cached) clustered->require(clustered_domains, "valid");
  }
  check_models(plan, data, ctx);
  std::optional<RouterState> router;
  if (!routed.empty() && E > 0) router.emplace(load_router(plan, data, routed));

  EvalResults res;
  res.context = ctx;
  std::map<std::string, std::vector<std::uint64_t>> blocks;
  for (const auto& d : domains) {
    blocks[d] = eval_blocks(data_of(d), d, plan.split, ctx, plan.max_tokens_per_domain);
    res.tokens[d] = blocks[d].size() * std::uint64_t(ctx);
    if (blocks[d].empty()) {
      warn_root("eval: domain \"" + d + "\" has no block of " + std::to_string(ctx + 1) + " tokens in its " +
                plan.split + " split; its rows have 0 tokens");
    }
  }
  std::map<std::string, std::map<std::string, ResultRow>> cells;  // method -> domain -> row

  // ---- dense models: each loaded once, scored on its domains by every rank ---------------
  for (const auto* group : {&plan.models, &plan.averages}) {
    for (const auto& m : *group) {
      for (const auto& d : m.domains.empty() ? domains : m.domains) {
        if (!blocks.count(d)) continue;  // not an evaluation domain
        // An MoE model counts its routing while it scores: loaded on every rank, counters reset.
        Llama* routed = m.routed_experts.empty() ? nullptr : &pool.load(m.file);
        if (routed) routed->reset_routing_stats();
        const NllSum s = score_dense(pool, m.file, data_of(d), d, plan.split, blocks[d], plan.batch, comm);
        cells[m.method][d] = make_row(m.method, d, plan.split, s);
        if (routed) res.routing[m.method][d] = sum_routing(routed->routing_stats(), comm);
      }
    }
  }

  // ---- experts and ensembles on the grid -------------------------------------------------
  if (E > 0) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : plan.experts) files.push_back(e.file);
    std::vector<int> all(E);
    for (int j = 0; j < E; ++j) all[j] = j;
    auto singles = [&](const std::string& d) {
      std::vector<int> out;
      for (int j = 0; j < E; ++j) {
        if (plan.single_experts == SingleExperts::all ||
            (plan.single_experts == SingleExperts::own && plan.experts[j].domain == d)) {
          out.push_back(j);
        }
      }
      return out;
    };
    std::map<std::string, std::vector<std::uint64_t>> prior_blocks;
    if (any_cached) {
      for (const auto& d : domains) {
        prior_blocks[d] =
            spaced_blocks(data_of(d).num_blocks(d, "valid", ctx), static_cast<std::uint64_t>(plan.prior_sequences));
        if (prior_blocks[d].empty()) {
          warn_root("eval: domain \"" + d + "\" has no valid block of " + std::to_string(ctx + 1) +
                    " tokens; its cached prior stays uniform");
        }
      }
    }
    // Domains in passes that fit plan.grid_floats (at least one domain per pass).
    std::vector<std::vector<std::string>> passes;
    std::size_t used = 0;
    for (const auto& d : domains) {
      const std::size_t need = std::size_t(E) * (blocks[d].size() + prior_blocks[d].size()) * std::size_t(ctx);
      if (passes.empty() || (used + need > plan.grid_floats && !passes.back().empty())) {
        passes.emplace_back();
        used = 0;
      }
      passes.back().push_back(d);
      used += need;
    }

    for (const auto& pass : passes) {
      // Stage 1: the cached priors' valid blocks, and what is needed whatever the priors say.
      std::vector<ExpertTask> tasks;
      std::map<std::string, int> prior_task, base_task;
      for (const auto& d : pass) {
        if (any_cached) {
          prior_task[d] = static_cast<int>(tasks.size());
          tasks.push_back({d, "valid", prior_blocks[d], all, &data_of(d)});
        }
        std::vector<int> need = all_experts_needed ? all : singles(d);
        if (!need.empty()) {
          base_task[d] = static_cast<int>(tasks.size());
          tasks.push_back({d, plan.split, blocks[d], need, &data_of(d)});
        }
      }
      const std::vector<std::vector<float>> stage1 = score_expert_tasks(pool, files, tasks, data, plan.batch, comm);

      // Priors and top-k selections (identical on every rank).
      std::map<std::string, std::vector<double>> cached;
      for (const auto& d : pass) {
        if (any_cached) {
          CachedPriorEstimator est(E, prior_rule, plan.prior_alpha);
          const auto& arr = stage1[prior_task[d]];
          const std::size_t stride = prior_blocks[d].size() * std::size_t(ctx);
          for (std::size_t b = 0; b < prior_blocks[d].size(); ++b) {
            est.observe({arr.data() + b * ctx, E, ctx, stride});
          }
          cached[d] = est.prior();
        }
        for (std::size_t i = 0; i < plan.ensembles.size(); ++i) {
          const EnsembleConfig& ens = plan.ensembles[i];
          if (ens.router == "cluster") continue;  // routed per block below
          if (ens.prior == "cached") {
            res.priors[ens.name][d] = cached[d];
            res.selected[ens.name][d] = top_k_experts(cached[d], ens.top_k);
          } else {
            res.selected[ens.name][d] = all;
          }
        }
      }

      // Routing (router = "cluster"): the weights of every block's targets, computed on
      // every rank from the tokens alone, and the experts each block needs.
      std::map<std::string, std::vector<BlockRoute>> routes;  // ensemble|domain -> per block
      std::map<std::string, std::vector<std::set<int>>> routed_need;  // domain -> per block: experts
      if (router) {
        for (const auto& d : pass) {
          const std::size_t nb = blocks[d].size();
          routed_need[d].resize(nb);
          std::vector<std::int32_t> tokens(std::size_t(ctx) + 1);
          for (std::size_t b = 0; b < nb; ++b) {
            data_of(d).read_block(d, plan.split, blocks[d][b], ctx, tokens.data());
            const BlockDistances dist =
                block_distances(tokens.data(), ctx, data.eos_id(), *router->clustering, *router->decoder, *router->embedder);
            for (int i : routed) {
              const EnsembleConfig& ens = plan.ensembles[i];
              const int k = router->clustering->k;
              const RouterSettings rs{routed_top_k(ens, k), ens.temperature, ens.distance_power};
              auto& v = routes[ens.name + "|" + d];
              v.push_back(route_block(dist, k, router->sizes, rs));
              for (int c : experts_of_route(v.back(), ctx, rs.top_k)) routed_need[d][b].insert(router->expert_of_cluster[c]);
            }
          }
          for (int i : routed) {
            const EnsembleConfig& ens = plan.ensembles[i];
            const int k = router->clustering->k;
            const int K = routed_top_k(ens, k);
            EvalResults::RoutedCount count{nb, 0, 0};
            std::set<int> used;
            for (const auto& r : routes[ens.name + "|" + d]) {
              const auto experts = experts_of_route(r, ctx, K);
              count.needed += experts.size();
              for (int c : experts) used.insert(router->expert_of_cluster[c]);
            }
            count.skipped = std::uint64_t(k) * nb - count.needed;
            res.routed[ens.name][d] = count;
            res.selected[ens.name][d] = std::vector<int>(used.begin(), used.end());
          }
        }
      }

      // Stage 2: experts selected by a top-k ensemble and not run yet, and, per block, the
      // experts that routing needs there and nothing has run.
      std::vector<ExpertTask> extra;
      std::map<std::string, int> extra_task;
      std::map<std::pair<std::string, int>, int> routed_task;  // (domain, expert) -> task
      std::map<std::pair<std::string, int>, std::vector<std::int64_t>> routed_pos;
      for (const auto& d : pass) {
        std::set<int> have;
        if (base_task.count(d)) have.insert(tasks[base_task[d]].experts.begin(), tasks[base_task[d]].experts.end());
        std::set<int> need;
        for (const auto& ens : plan.ensembles) {
          if (ens.router == "cluster") continue;
          for (int j : res.selected[ens.name][d]) {
            if (!have.count(j)) need.insert(j);
          }
        }
        if (!need.empty()) {
          extra_task[d] = static_cast<int>(extra.size());
          extra.push_back({d, plan.split, blocks[d], std::vector<int>(need.begin(), need.end()), &data_of(d)});
        }
        if (!routed_need.count(d)) continue;
        for (int j = 0; j < E; ++j) {
          if (have.count(j) || need.count(j)) continue;
          ExpertTask t{d, plan.split, {}, {j}, &data_of(d)};
          std::vector<std::int64_t> pos(blocks[d].size(), -1);
          for (std::size_t b = 0; b < blocks[d].size(); ++b) {
            if (routed_need[d][b].count(j)) {
              pos[b] = static_cast<std::int64_t>(t.blocks.size());
              t.blocks.push_back(blocks[d][b]);
            }
          }
          if (t.blocks.empty()) continue;
          routed_task[{d, j}] = static_cast<int>(extra.size());
          routed_pos[{d, j}] = std::move(pos);
          extra.push_back(std::move(t));
        }
      }
      const std::vector<std::vector<float>> stage2 = score_expert_tasks(pool, files, extra, data, plan.batch, comm);
      for (const auto* list : {&tasks, &extra}) {
        for (const auto& t : *list) {
          if (t.split == plan.split) res.expert_blocks_run[t.domain] += t.experts.size() * t.blocks.size();
        }
      }

      for (const auto& d : pass) {
        const std::size_t nb = blocks[d].size();
        const std::size_t stride = nb * std::size_t(ctx);
        std::vector<RowRef> rows(E);
        if (base_task.count(d)) {
          const ExpertTask& t = tasks[base_task[d]];
          for (std::size_t r = 0; r < t.experts.size(); ++r) rows[t.experts[r]] = {&stage1[base_task[d]], r, stride};
        }
        if (extra_task.count(d)) {
          const ExpertTask& t = extra[extra_task[d]];
          for (std::size_t r = 0; r < t.experts.size(); ++r) rows[t.experts[r]] = {&stage2[extra_task[d]], r, stride};
        }
        for (int j = 0; j < E; ++j) {
          const auto it = routed_task.find({d, j});
          if (it == routed_task.end()) continue;
          rows[j] = {&stage2[it->second], 0, extra[it->second].blocks.size() * std::size_t(ctx), &routed_pos.at({d, j})};
        }
        // Single experts: every rank holds every row; summed in a fixed order.
        for (int j : singles(d)) {
          const float* p = rows[j].at(0, ctx);
          double nll = 0;
          for (std::size_t k = 0; k < stride; ++k) nll -= p[k];
          cells[plan.experts[j].name][d] = make_row(plan.experts[j].name, d, plan.split, {nll, stride});
        }
        // Ensembles: blocks split across ranks, NLL sums reduced.
        const BlockRange mine = block_share(nb, comm.rank(), comm.size());
        for (std::size_t i = 0; i < plan.ensembles.size(); ++i) {
          const EnsembleConfig& ens = plan.ensembles[i];
          if (ens.router == "cluster") {
            const auto& r = routes.at(ens.name + "|" + d);
            const int K = routed_top_k(ens, router->clustering->k);
            double nll = 0;
            for (std::size_t b = mine.begin; b < mine.end; ++b) {
              nll += routed_nll(r[b], ctx, K, [&](int c) {
                const float* p = rows[router->expert_of_cluster[c]].at(b, ctx);
                if (!p) throw Error("eval: internal: a routed expert was not scored on its block");
                return p;
              });
            }
            nll = comm.allreduce_sum(nll);
            cells[ens.name][d] = make_row(ens.name, d, plan.split, {nll, stride});
            continue;
          }
          const std::vector<int>& sel = res.selected[ens.name][d];
          const std::vector<double> prior =
              ens.prior == "cached" ? restrict_prior(cached[d], sel) : uniform_prior(static_cast<int>(sel.size()));
          std::vector<float> block(sel.size() * std::size_t(ctx));
          double nll = 0;
          for (std::size_t b = mine.begin; b < mine.end; ++b) {
            for (std::size_t r = 0; r < sel.size(); ++r) {
              const float* src = rows[sel[r]].at(b, ctx);
              std::copy(src, src + ctx, block.data() + r * ctx);
            }
            nll += mixture_nll(rules[i], prior, {block.data(), static_cast<int>(sel.size()), ctx, std::size_t(ctx)});
          }
          nll = comm.allreduce_sum(nll);
          cells[ens.name][d] = make_row(ens.name, d, plan.split, {nll, stride});
        }
      }
    }
  }

  for (const auto& m : plan.methods()) {
    auto it = cells.find(m);
    if (it == cells.end()) continue;
    for (const auto& d : domains) {
      auto c = it->second.find(d);
      if (c != it->second.end()) res.rows.push_back(c->second);
    }
  }
  return res;
}

}  // namespace btm
