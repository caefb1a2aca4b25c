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

}  // namespace

void check_deck(const Deck& deck, const Places& places) {
  check_run(deck, places);
  check_data(deck, places);
  check_model(deck, places);
  check_experts(deck, places);
  check_averages(deck, places);
  check_ensembles(deck, places);
}

}  // namespace btm::deck
