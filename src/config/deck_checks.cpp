// Rules that span several keys. Each error points at one of the keys involved.
#include <algorithm>
#include <set>

#include "btm/error.hpp"
#include "config/reader.hpp"
#include "config/schema.hpp"
#include "config/suggest.hpp"

namespace btm::deck {

namespace {

bool contains(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

std::string item(const std::string& path, std::size_t i) { return path + "[" + std::to_string(i) + "]"; }

void check_run(const Deck& d, const Places& p) {
  if (d.run.out_dir.empty()) p.fail("run.out_dir", "is empty", "the folder for this run's files");
}

void check_data(const Deck& d, const Places& p) {
  if (d.data.corpus.empty() && contains(d.run.phases, "prepare")) {
    p.fail("data.corpus", "missing (the prepare phase reads the corpus)",
           "the path of a JSONL file, a text tree or a split_jsonl folder");
  }
  for (std::size_t i = 0; i < d.data.heldout_domains.size(); ++i) {
    const auto& domain = d.data.heldout_domains[i];
    if (contains(d.data.train_domains, domain)) {
      p.fail(item("data.heldout_domains", i), "\"" + domain + "\" is also in data.train_domains",
             "held-out domains disjoint from the training domains");
    }
  }
  double sum = d.data.valid_fraction + d.data.test_fraction;
  if (!(sum < 1)) {
    p.fail(p.given("data.test_fraction") ? "data.test_fraction" : "data.valid_fraction",
           "valid_fraction + test_fraction = " + toml_float(sum) + " leaves nothing to train on",
           "valid_fraction + test_fraction < 1");
  }
}

void check_model(const Deck& d, const Places& p) {
  try {
    d.model.validate();
  } catch (const Error& e) {
    // ModelConfig says "model.<key>: why"; point at that key when the deck gives it.
    std::string message = e.what();
    std::string key = message.substr(0, message.find(':'));
    throw Error(p.at(key) + ": " + message);
  }
}

void check_seed(const Deck& d, const Places& p) {
  if (d.seed.tokens == 0 && d.seed.init.empty()) {
    p.fail("seed.tokens", "found 0 without seed.init",
           "an integer >= 1 (0 only with seed.init: the init model is then the seed as is)");
  }
}

// With clustering the experts' domains are the clusters.
void check_cluster_experts(const Deck& d, const Places& p) {
  const auto clusters = d.cluster_domains();
  for (std::size_t i = 0; i < d.experts.domains.size(); ++i) {
    const auto& domain = d.experts.domains[i];
    if (!contains(clusters, domain)) {
      p.fail(item("experts.domains", i),
             "\"" + domain + "\" is not a cluster (with [cluster], the experts' domains are the clusters)",
             "names cluster-0 ... cluster-" + std::to_string(d.cluster.k - 1) + " (cluster.k = " +
                 std::to_string(d.cluster.k) + ")");
    }
  }
}

void check_experts(const Deck& d, const Places& p) {
  const auto& train = d.data.train_domains;
  if (d.clustering()) check_cluster_experts(d, p);
  for (std::size_t i = 0; i < d.experts.domains.size() && !d.clustering(); ++i) {
    const auto& domain = d.experts.domains[i];
    if (contains(d.data.heldout_domains, domain)) {
      p.fail(item("experts.domains", i), "\"" + domain + "\" is a held-out domain (data.heldout_domains)",
             "training domains only");
    }
    if (!train.empty() && !contains(train, domain)) {
      auto near = closest(domain, train);
      p.fail(item("experts.domains", i),
             "\"" + domain + "\" is not in data.train_domains" + (near ? " (did you mean '" + *near + "'?)" : ""),
             "names from data.train_domains");
    }
  }
  const std::string& init = d.experts.init;
  if (init == "seed" || init == "posterior_average") return;
  const std::string expected = "\"seed\", \"posterior_average\" or the name of an expert to branch from";
  if (!is_name(init)) p.fail("experts.init", "found \"" + init + "\"", expected);
  // Any other name is an expert; one a typo away from the keywords is taken as a typo.
  auto near = closest(init, {"seed", "posterior_average"});
  if (near && !contains(d.expert_domains(), init)) {
    p.fail("experts.init", "found \"" + init + "\" (did you mean '" + *near + "'?)", expected);
  }
}

// Averages and ensembles are rows of eval.h5 next to the seed, the baseline and the experts,
// and averages are files averages/<name>.h5 next to the built-in ones: names must not clash.
void check_method_name(const Deck& d, const Places& p, const std::string& path, const std::string& name) {
  const std::string expected = "a name other than seed, baseline, uniform, posterior-*, and the experts";
  if (name == "seed" || name == "baseline" || name == "uniform" || contains(d.expert_domains(), name)) {
    p.fail(path, "\"" + name + "\" is already the name of a model that eval reports", expected);
  }
  if (name.rfind("posterior-", 0) == 0) {
    p.fail(path, "\"" + name + "\" is the name of a posterior-weighted average (posterior-<domain>)", expected);
  }
}

void check_averages(const Deck& d, const Places& p) {
  const auto experts = d.expert_domains();  // empty: every corpus domain, known after prepare
  std::set<std::string> names;
  for (std::size_t i = 0; i < d.average.weighted.size(); ++i) {
    const auto& avg = d.average.weighted[i];
    const std::string path = item("average.weighted", i);
    if (!names.insert(avg.name).second) {
      p.fail(path + ".name", "\"" + avg.name + "\" is used twice", "distinct average names");
    }
    check_method_name(d, p, path + ".name", avg.name);
    double sum = 0;
    for (const auto& [expert, w] : avg.weights) {
      sum += w;
      if (!experts.empty() && !contains(experts, expert)) {
        p.fail(path + ".weights." + expert, "\"" + expert + "\" is not an expert; " + suggestion(expert, experts));
      }
    }
    if (!(sum > 0)) p.fail(path + ".weights", "the weights sum to " + toml_float(sum), "a positive sum");
  }
}

void check_ensembles(const Deck& d, const Places& p) {
  if (d.cluster.given && d.cluster.top_k > d.cluster.k) {
    p.fail("cluster.top_k", "found " + std::to_string(d.cluster.top_k) + " but cluster.k = " + std::to_string(d.cluster.k),
           "at most cluster.k");
  }
  const auto experts = d.expert_domains();
  std::set<std::string> names;
  for (std::size_t i = 0; i < d.eval.ensembles.size(); ++i) {
    const auto& e = d.eval.ensembles[i];
    const std::string path = item("eval.ensembles", i);
    if (!names.insert(e.name).second) {
      p.fail(path + ".name", "\"" + e.name + "\" is used twice", "distinct ensemble names");
    }
    check_method_name(d, p, path + ".name", e.name);
    for (const auto& avg : d.average.weighted) {
      if (avg.name == e.name) {
        p.fail(path + ".name", "\"" + e.name + "\" is also a weighted average (average.weighted)",
               "ensemble names distinct from the averages");
      }
    }
    if (e.router == "cluster") {
      if (!d.clustering()) {
        p.fail(path + ".router", "\"cluster\" but the deck has no clustering (no [cluster] section, or cluster.enabled = false)",
               "\"posterior\", or a [cluster] section");
      }
      if (e.top_k > d.cluster.k) {
        p.fail(path + ".top_k", "found " + std::to_string(e.top_k) + " but there are only " + std::to_string(d.cluster.k) +
                                    " clusters (cluster.k)",
               "0 (all clusters) or at most cluster.k");
      }
      if (e.distance_power != 2 && e.distance_power != 4) {
        p.fail(path + ".distance_power", "found " + std::to_string(e.distance_power), "2 (exp(-d²/T)) or 4 (exp(-d⁴/T))");
      }
      continue;
    }
    if (!experts.empty() && e.top_k > static_cast<int>(experts.size())) {
      p.fail(path + ".top_k", "found " + std::to_string(e.top_k) + " but there are only " +
                                  std::to_string(experts.size()) + " experts",
             "0 (all experts) or at most the number of experts");
    }
  }
}

// [[mix.models]]: names that are files and eval columns, the experts each model mixes, and
// top-k against the number of experts (when the deck knows the experts).
void check_mix(const Deck& d, const Places& p) {
  const auto forest_experts = d.expert_domains();  // empty: known after prepare
  std::set<std::string> names;
  for (std::size_t i = 0; i < d.mix.models.size(); ++i) {
    const MixModel& m = d.mix.models[i];
    const std::string path = item("mix.models", i);
    if (!names.insert(m.name).second) p.fail(path + ".name", "\"" + m.name + "\" is used twice", "distinct names");
    check_method_name(d, p, path + ".name", m.name);
    for (const char* reserved : {"data", "forest", "eval", "clusters"}) {
      if (m.name == reserved) p.fail(path + ".name", "\"" + m.name + "\" is the name of a run file (" + m.name + ".h5)",
                                     "a name other than data, forest, eval, clusters");
    }
    for (const auto& other : d.average.weighted) {
      if (other.name == m.name) p.fail(path + ".name", "\"" + m.name + "\" is also a weighted average", "a distinct name");
    }
    for (const auto& other : d.eval.ensembles) {
      if (other.name == m.name) p.fail(path + ".name", "\"" + m.name + "\" is also an ensemble", "a distinct name");
    }
    int experts = 0;  // 0: unknown until the forest exists
    if (m.source == "seed") {
      if (m.num_experts < 1) {
        p.fail(path + ".num_experts", p.given(path + ".num_experts") ? "found 0" : "missing",
               "the number of copies of the seed (>= 1) for source = \"seed\" (sparse upcycling)");
      }
      if (!m.experts.empty()) p.fail(path + ".experts", "forest experts with source = \"seed\"", "no experts (or source = \"forest\")");
      if (m.include_seed) p.fail(path + ".include_seed", "true with source = \"seed\"", "false: every expert is the seed already");
      if (m.router_init == "centroid") {
        p.fail(path + ".router_init", "\"centroid\" with source = \"seed\": the copies share one domain, so their centroids tie",
               "\"random\" for sparse upcycling");
      }
      if (!m.weights.empty()) p.fail(path + ".weights", "weights with source = \"seed\"", "no weights: the copies are equal");
      experts = m.num_experts;
    } else {
      for (std::size_t j = 0; j < m.experts.size(); ++j) {
        if (!forest_experts.empty() && !contains(forest_experts, m.experts[j])) {
          p.fail(item(path + ".experts", j), "\"" + m.experts[j] + "\" is not an expert of the deck; " +
                                                 suggestion(m.experts[j], forest_experts));
        }
      }
      const std::size_t listed = m.experts.empty() ? forest_experts.size() : m.experts.size();
      if (listed > 0) experts = static_cast<int>(listed) + (m.include_seed ? 1 : 0);
      if (m.num_experts > 0 && experts > 0 && m.num_experts != experts) {
        p.fail(path + ".num_experts", "found " + std::to_string(m.num_experts) + " but the model mixes " + std::to_string(experts) +
                                          " experts", "0 (the experts' count) or " + std::to_string(experts));
      }
      const auto mixed = m.experts.empty() ? forest_experts : m.experts;
      for (const auto& [expert, w] : m.weights) {
        const bool known = contains(mixed, expert) || (m.include_seed && expert == "seed");
        if (!mixed.empty() && !known) {
          p.fail(path + ".weights." + expert, "\"" + expert + "\" is not one of this model's experts" +
                                                (m.include_seed ? " (or \"seed\")" : ""));
        }
      }
    }
    if (experts > 0 && m.num_experts_per_tok > experts) {
      p.fail(path + ".num_experts_per_tok", "found " + std::to_string(m.num_experts_per_tok) + " but the model has " +
                                                std::to_string(experts) + " experts",
             "at most the number of experts");
    }
  }
}

// The cuda backend's GEMMs are bf16 only (cuBLASLt): an explicit fp32 there is refused.
void check_precision(const Deck& d, const Places& p) {
  if (d.run.backend != "cuda") return;
  const std::pair<const char*, const TrainConfig*> trains[] = {{"train.precision", &d.train},
                                                               {"seed.train.precision", &d.seed.train},
                                                               {"experts.train.precision", &d.experts.train},
                                                               {"baseline.train.precision", &d.baseline.train},
                                                               {"finetune.train.precision", &d.finetune.train}};
  for (const auto& [key, tc] : trains) {
    if (tc->precision == "fp32") {
      p.fail(key, "\"fp32\" with run.backend = \"cuda\", whose GEMMs are bf16 only (fp32 accumulation)",
             "\"auto\" or \"bf16\" on the cuda backend");
    }
  }
}

}  // namespace

void check_deck(const Deck& deck, const Places& places) {
  check_run(deck, places);
  check_data(deck, places);
  check_model(deck, places);
  check_seed(deck, places);
  check_experts(deck, places);
  check_averages(deck, places);
  check_ensembles(deck, places);
  check_mix(deck, places);
  check_precision(deck, places);
}

}  // namespace btm::deck
