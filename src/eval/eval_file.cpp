// eval.h5 (ARCHITECTURE, Files): the results table and the cached priors.
#include <algorithm>

#include "btm/eval/evaluate.hpp"
#include "btm/h5.hpp"

namespace btm {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + v[i];
  return out;
}

}  // namespace

void write_eval_file(const std::filesystem::path& path, const EvalPlan& plan, const EvalResults& results,
                     const std::string& deck_toml) {
  std::vector<std::string> method, domain, split;
  std::vector<std::uint64_t> tokens;
  std::vector<double> nll, perplexity;
  for (const auto& r : results.rows) {
    method.push_back(r.method);
    domain.push_back(r.domain);
    split.push_back(r.split);
    tokens.push_back(r.tokens);
    nll.push_back(r.nll);
    perplexity.push_back(r.perplexity);
  }
  h5::AtomicWrite w(path);
  h5::File& f = w.file();
  f.create_group("/results");
  f.write_strings("/results/method", method);
  f.write_strings("/results/domain", domain);
  f.write_strings("/results/split", split);
  f.write<std::uint64_t>("/results/tokens", tokens);
  f.write<double>("/results/nll", nll);
  f.write<double>("/results/perplexity", perplexity);
  f.set_attr("/results", "train_domains", join(plan.train_domains));
  f.set_attr("/results", "heldout_domains", join(plan.heldout_domains));
  if (!plan.cluster_domains.empty()) f.set_attr("/results", "cluster_domains", join(plan.cluster_domains));
  f.set_attr("/results", "split", plan.split);
  f.set_attr<std::uint64_t>("/results", "max_tokens_per_domain", plan.max_tokens_per_domain);
  f.set_attr<std::int64_t>("/results", "prior_sequences", plan.prior_sequences);
  f.set_attr<double>("/results", "prior_alpha", plan.prior_alpha);
  f.set_attr("/results", "prior_rule", plan.prior_rule);
  f.set_attr<std::int64_t>("/results", "context", results.context);
  f.set_attr("/results", "single_experts", to_string(plan.single_experts));
  f.set_attr("/results", "methods", join(plan.methods()));
  f.set_attr("/results", "deck", deck_toml);

  if (!results.priors.empty()) {
    std::vector<std::string> experts;
    for (const auto& e : plan.experts) experts.push_back(e.name);
    f.write_strings("/priors/experts", experts);
    f.set_attr("/priors", "prior_rule", plan.prior_rule);
    for (const auto& ens : plan.ensembles) {
      const auto it = results.priors.find(ens.name);
      if (it == results.priors.end()) continue;
      const std::string g = "/priors/" + ens.name;
      for (const auto& [d, prior] : it->second) {
        f.write<double>(g + "/" + d, prior);
        if (ens.top_k > 0) {
          std::vector<std::string> kept;
          for (int j : results.selected.at(ens.name).at(d)) kept.push_back(experts[j]);
          f.set_attr(g + "/" + d, "top_k_experts", join(kept));
        }
      }
      f.set_attr(g, "posterior", ens.posterior);
      f.set_attr<std::int64_t>(g, "top_k", ens.top_k);
    }
  }
  for (const auto* group : {&plan.models, &plan.averages}) {
    for (const auto& m : *group) {
      const auto it = results.routing.find(m.method);
      if (it == results.routing.end()) continue;
      const std::string g = "/routing/" + m.method;
      if (!f.exists(g + "/experts")) f.write_strings(g + "/experts", m.routed_experts);
      for (const auto& [d, s] : it->second) {
        const std::vector<hsize_t> dims = {hsize_t(s.layers), hsize_t(s.experts)};
        f.write<double>(g + "/" + d + "/tokens", s.tokens.data(), dims);
        f.write<double>(g + "/" + d + "/gate_sum", s.gate_sum.data(), dims);
        f.write<std::uint64_t>(g + "/" + d + "/dropped", s.dropped);
        f.set_attr<std::uint64_t>(g + "/" + d, "routed_tokens", s.routed_tokens);
      }
    }
  }
  // Routed ensembles: their settings, and per domain the expert-blocks routing needed and skipped.
  for (const auto& ens : plan.ensembles) {
    const auto it = results.routed.find(ens.name);
    if (it == results.routed.end()) continue;
    const std::string g = "/routing/" + ens.name;
    std::vector<std::string> domains;
    std::vector<std::uint64_t> blocks, needed, skipped;
    for (const auto& [d, c] : it->second) {
      domains.push_back(d);
      blocks.push_back(c.blocks);
      needed.push_back(c.needed);
      skipped.push_back(c.skipped);
    }
    f.write_strings(g + "/domain", domains);
    f.write<std::uint64_t>(g + "/blocks", blocks);
    f.write<std::uint64_t>(g + "/expert_blocks", needed);
    f.write<std::uint64_t>(g + "/skipped_expert_blocks", skipped);
    f.set_attr<std::int64_t>(g, "top_k", ens.top_k);
    f.set_attr<double>(g, "temperature", ens.temperature);
    f.set_attr<std::int64_t>(g, "distance_power", ens.distance_power);
    f.set_attr(g, "clusters_file", plan.clusters_file.string());
  }
  w.commit();
}

}  // namespace btm
