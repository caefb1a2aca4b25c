// The perplexity table printed at the end of the eval phase (as in the BTM paper's tables:
// domains down, methods across, arithmetic means of per-domain perplexities).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "btm/eval/evaluate.hpp"

namespace btm {

namespace {

std::string fixed2(double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string pad_left(const std::string& s, std::size_t w) { return std::string(w > s.size() ? w - s.size() : 0, ' ') + s; }
std::string pad_right(const std::string& s, std::size_t w) { return s + std::string(w > s.size() ? w - s.size() : 0, ' '); }

}  // namespace

std::string format_table(const EvalPlan& plan, const EvalResults& results) {
  const std::vector<std::string> methods = plan.methods();
  const std::vector<std::string> domains = plan.domains();
  const std::string in_mean = "in-domain mean", out_mean = "held-out mean", cluster_mean = "cluster mean";

  auto ppl = [&](const std::string& m, const std::string& d) {
    const ResultRow* r = results.find(m, d);
    return r && r->tokens > 0 ? r->perplexity : std::nan("");
  };
  // Mean over a group of domains; NaN when the method lacks one of them.
  auto mean = [&](const std::string& m, const std::vector<std::string>& group) {
    double s = 0;
    for (const auto& d : group) s += ppl(m, d);
    return group.empty() ? std::nan("") : s / double(group.size());
  };

  std::size_t first = std::max(in_mean.size(), std::string("domain").size());
  for (const auto& d : domains) first = std::max(first, d.size());
  std::uint64_t total = 0;
  for (const auto& [d, n] : results.tokens) total += n;
  const std::size_t tok_w = std::max<std::size_t>(6, std::to_string(total).size());
  std::vector<std::size_t> width;
  for (const auto& m : methods) width.push_back(std::max<std::size_t>(8, m.size()));

  std::ostringstream out;
  out << "perplexity on the " << plan.split << " split: context " << results.context << ", " << total
      << " tokens over " << domains.size() << " domains";
  if (plan.max_tokens_per_domain > 0) out << " (at most " << plan.max_tokens_per_domain << " per domain)";
  out << "\n";
  std::string header = pad_right("domain", first) + "  " + pad_left("tokens", tok_w);
  for (std::size_t i = 0; i < methods.size(); ++i) header += "  " + pad_left(methods[i], width[i]);
  const std::string rule(header.size(), '-');
  out << header << "\n" << rule << "\n";

  auto row = [&](const std::string& label, const std::string& tokens, auto&& value) {
    std::string line = pad_right(label, first) + "  " + pad_left(tokens, tok_w);
    for (std::size_t i = 0; i < methods.size(); ++i) line += "  " + pad_left(fixed2(value(methods[i])), width[i]);
    out << line << "\n";
  };
  auto domain_rows = [&](const std::vector<std::string>& group) {
    for (const auto& d : group) {
      const auto it = results.tokens.find(d);
      row(d, it == results.tokens.end() ? "-" : std::to_string(it->second), [&](const std::string& m) { return ppl(m, d); });
    }
  };
  domain_rows(plan.train_domains);
  if (!plan.heldout_domains.empty()) {
    if (!plan.train_domains.empty()) out << rule << "\n";
    domain_rows(plan.heldout_domains);
  }
  if (!plan.cluster_domains.empty()) {
    out << rule << "\n";
    domain_rows(plan.cluster_domains);
  }
  out << rule << "\n";
  if (!plan.train_domains.empty()) row(in_mean, "", [&](const std::string& m) { return mean(m, plan.train_domains); });
  if (!plan.heldout_domains.empty()) row(out_mean, "", [&](const std::string& m) { return mean(m, plan.heldout_domains); });
  if (!plan.cluster_domains.empty()) row(cluster_mean, "", [&](const std::string& m) { return mean(m, plan.cluster_domains); });
  return out.str();
}

}  // namespace btm
