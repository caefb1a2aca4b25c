// `btm check`: the deck as it will run on P ranks — phases, data, model size, token budgets
// and steps, expert groups, and what eval will compute. Plain aligned text for a terminal.
#include "btm/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "btm/error.hpp"
#include "btm/mixing.hpp"
#include "btm/model/llama.hpp"

namespace btm {

namespace {

bool has(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// 1234567 -> "1,234,567".
std::string commas(std::uint64_t v) {
  std::string digits = std::to_string(v), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string percent(double fraction) { return number(fraction * 100) + "%"; }

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

// "8" when the ranks share the batch evenly, else "8-9".
std::string share(int total, int ranks) {
  int lo = total / ranks, hi = lo + (total % ranks ? 1 : 0);
  return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
}

// Columns padded to their widest cell; `align` has one 'l' or 'r' per column.
class TextTable {
 public:
  TextTable(std::vector<std::string> header, std::string align) : align_(std::move(align)) {
    rows_.push_back(std::move(header));
  }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& out, const std::string& indent = "  ") const {
    std::vector<std::size_t> width(align_.size(), 0);
    for (const auto& row : rows_) {
      for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    }
    for (const auto& row : rows_) {
      std::string line = indent;
      for (std::size_t c = 0; c < row.size(); ++c) {
        std::string pad(width[c] - row[c].size(), ' ');
        bool last = c + 1 == row.size();
        line += align_[c] == 'r' ? pad + row[c] : row[c] + (last ? "" : pad);
        if (!last) line += "  ";
      }
      out << line << "\n";
    }
  }

 private:
  std::string align_;
  std::vector<std::vector<std::string>> rows_;
};

void key_value(std::ostream& out, const std::string& key, const std::string& value) {
  std::string pad(key.size() < 22 ? 22 - key.size() : 1, ' ');
  out << "  " << key << pad << value << "\n";
}

void print_data(const Deck& deck, std::ostream& out) {
  const DataConfig& d = deck.data;
  out << "\nData\n";
  std::string corpus = d.corpus.empty() ? "(none)" : d.corpus.string() + " (format " + d.format + ")";
  // Paths are relative to the working directory: say so now rather than after the queue wait.
  if (!d.corpus.empty() && !std::filesystem::exists(d.corpus)) corpus += " -- not found from this directory";
  key_value(out, "corpus", corpus);
  key_value(out, "train domains",
            d.train_domains.empty() ? "every domain of the corpus"
                                    : std::to_string(d.train_domains.size()) + ": " + join(d.train_domains));
  key_value(out, "held-out domains",
            d.heldout_domains.empty() ? "none"
                                      : std::to_string(d.heldout_domains.size()) + ": " + join(d.heldout_domains));
  key_value(out, "tokenizer", !d.tokenizer.empty()       ? d.tokenizer.string()
                              : !deck.seed.init.empty() ? "the tokenizer of seed.init, " + deck.seed.init.string()
                                                        : "SentencePiece trained on " + number(d.tokenizer_sample_mb) +
                                                              " MB of text, vocab " + std::to_string(d.vocab_size));
  key_value(out, "splits", "valid " + percent(d.valid_fraction) + ", test " + percent(d.test_fraction) +
                               " by document hash (when the corpus has no splits)");
  key_value(out, "cap per domain split", d.max_mb_per_domain > 0 ? number(d.max_mb_per_domain) + " MB" : "none");
  if (deck.clustering()) {
    const ClusterConfig& c = deck.cluster;
    key_value(out, "clusters", std::to_string(c.k) + " (" + c.method + ", tf-idf -> SVD " + std::to_string(c.svd_dims) +
                                   ", fitted on " + (c.sample_docs ? std::to_string(c.sample_docs) : std::string("all")) +
                                   " training documents): the training domains cluster-0 ... cluster-" +
                                   std::to_string(c.k - 1));
  }
}

struct ParamCount {
  std::uint64_t embedding, per_layer, layers, final_norm, lm_head, total;
};

ParamCount count_params(const ModelConfig& m, std::uint64_t vocab) {
  const std::uint64_t d = m.hidden_size, f = m.resolved_intermediate_size();
  const std::uint64_t kv_width = static_cast<std::uint64_t>(m.kv_heads()) * m.head_dim();
  ParamCount p{};
  p.embedding = vocab * d;
  p.per_layer = d * d + 2 * d * kv_width + d * d  // q, k, v, o
                + 3 * d * f                       // gate, up, down (per expert for MoE)
                + 2 * d;                          // input and post-attention RMSNorm
  if (m.is_moe()) {
    const std::uint64_t experts = m.num_local_experts;
    p.per_layer += (experts - 1) * 3 * d * f + experts * d;  // more experts, the router
  }
  p.layers = p.per_layer * m.num_hidden_layers;
  p.final_norm = d;
  p.lm_head = m.tie_word_embeddings ? 0 : vocab * d;
  p.total = p.embedding + p.layers + p.final_norm + p.lm_head;
  return p;
}

void print_model(const Deck& deck, std::ostream& out) {
  const ModelConfig& m = deck.model;
  const bool vocab_from_data = m.vocab_size == 0;
  const std::uint64_t vocab = vocab_from_data ? deck.data.vocab_size : m.vocab_size;
  out << "\nModel (Llama-style decoder)\n";
  key_value(out, "hidden_size", std::to_string(m.hidden_size));
  key_value(out, "intermediate_size", std::to_string(m.resolved_intermediate_size()) +
                                          (m.intermediate_size == 0 ? " (derived: 8/3 x hidden, multiple of 64)" : ""));
  key_value(out, "num_hidden_layers", std::to_string(m.num_hidden_layers));
  key_value(out, "num_attention_heads", std::to_string(m.num_attention_heads) + " (head_dim " +
                                            std::to_string(m.head_dim()) + ")");
  key_value(out, "num_key_value_heads", std::to_string(m.kv_heads()) + (m.num_key_value_heads == 0 ? " (= heads)" : ""));
  key_value(out, "vocab_size", std::to_string(vocab) + (vocab_from_data ? " (model.vocab_size = 0: the tokenizer's, data.vocab_size)" : ""));
  key_value(out, "context", std::to_string(m.max_position_embeddings) + " tokens");
  key_value(out, "rope_theta", number(m.rope_theta));
  key_value(out, "rms_norm_eps", number(m.rms_norm_eps));
  key_value(out, "tie_word_embeddings", m.tie_word_embeddings ? "true" : "false");
  key_value(out, "initializer_range", number(m.initializer_range));
  if (m.is_moe()) {
    key_value(out, "num_local_experts", std::to_string(m.num_local_experts) + " SwiGLU experts per layer (MoE)");
    key_value(out, "moe_routing", m.moe_routing + " (" + std::to_string(m.experts_per_token()) + " experts per token)");
    key_value(out, "moe_aux_loss", m.moe_aux_loss + ", router_aux_loss_coef " + number(m.router_aux_loss_coef));
    if (m.moe_routing == "switch") key_value(out, "moe_capacity_factor", number(m.moe_capacity_factor));
  }
  const ParamCount p = count_params(m, vocab);
  key_value(out, "parameters", commas(p.total));
  key_value(out, "  embedding", commas(p.embedding) + " (vocab x hidden)");
  key_value(out, "  layers", commas(p.layers) + " (" + std::to_string(m.num_hidden_layers) + " x " +
                                 commas(p.per_layer) +
                                 (m.is_moe() ? ": q,k,v,o + router + " + std::to_string(m.num_local_experts) +
                                                   " x (w1,w2,w3) + 2 norms)"
                                             : ": q,k,v,o + gate,up,down + 2 norms)"));
  key_value(out, "  final norm", commas(p.final_norm));
  key_value(out, "  lm_head", m.tie_word_embeddings ? "0 (tied to the embedding)" : commas(p.lm_head));
}

// "4 in forest.h5 (a, b, c, d) + 2 this deck adds (e, f)".
std::string matched_text(const Deck& deck, const std::vector<std::string>& in_forest,
                         const std::vector<std::string>& matched) {
  std::vector<std::string> added(matched.begin() + std::ptrdiff_t(std::min(in_forest.size(), matched.size())), matched.end());
  const std::string forest = deck.forest_file().filename().string();
  return std::to_string(in_forest.size()) + " in " + forest +
         (in_forest.empty() ? std::string() : " (" + join(in_forest) + ")") + " + " + std::to_string(added.size()) +
         " this deck adds" + (added.empty() ? std::string() : " (" + join(added) + ")");
}

void print_training(const Deck& deck, int world_size, std::ostream& out, const std::vector<std::string>& in_forest) {
  const auto experts = deck.expert_domains();
  const auto matched = baseline_matched_experts(in_forest, experts);
  const int context = deck.model.max_position_embeddings;
  out << "\nTraining (tokens per step = global batch x context " << context << ")\n";
  TextTable t({"phase", "tokens", "steps", "global", "micro", "ranks", "seq/rank", "accum", "lr"}, "lrrrrrrrl");
  auto row = [&](const std::string& phase, std::uint64_t tokens, const TrainConfig& tr, int ranks_lo, int ranks_hi) {
    std::string ranks = ranks_lo == ranks_hi ? std::to_string(ranks_lo) : std::to_string(ranks_lo) + "-" + std::to_string(ranks_hi);
    // The fewest ranks carry the most sequences each.
    int per_rank_max = (tr.global_batch + ranks_lo - 1) / ranks_lo;
    std::string per_rank = ranks_lo == ranks_hi ? share(tr.global_batch, ranks_lo)
                                                : share(tr.global_batch, ranks_hi) + ".." + share(tr.global_batch, ranks_lo);
    int accum = (per_rank_max + tr.micro_batch - 1) / tr.micro_batch;
    t.add({phase, commas(tokens), commas(phase_steps(tokens, tr, context)), std::to_string(tr.global_batch),
           std::to_string(tr.micro_batch), ranks, per_rank, std::to_string(accum), number(tr.lr)});
  };
  const auto& phases = deck.run.phases;
  if (has(phases, "seed")) row("seed", deck.seed.tokens, deck.seed.train, world_size, world_size);
  if (has(phases, "experts") && experts.empty()) {  // group sizes depend on the expert count
    const auto& tr = deck.experts.train;
    t.add({"experts", commas(deck.experts.tokens), commas(phase_steps(deck.experts.tokens, tr, context)),
           std::to_string(tr.global_batch), std::to_string(tr.micro_batch), "?", "?", "?", number(tr.lr)});
  } else if (has(phases, "experts")) {
    auto layout = GroupLayout::make(world_size, static_cast<int>(experts.size()));
    int lo = world_size, hi = 0;
    for (int g = 0; g < layout.num_groups; ++g) {
      lo = std::min(lo, layout.group_size(g));
      hi = std::max(hi, layout.group_size(g));
    }
    row("experts", deck.experts.tokens, deck.experts.train, lo, hi);
  }
  if (has(phases, "baseline") && deck.baseline.enabled && !experts.empty()) {
    row("baseline", baseline_tokens(deck, matched.size()), deck.baseline.train, world_size, world_size);
  }
  t.print(out);
  if (has(phases, "experts")) {
    out << "  experts: " << commas(deck.experts.tokens) << " tokens per expert, branched from "
        << (deck.experts.init == "seed" ? "the seed"
            : deck.experts.init == "posterior_average" ? "the posterior-weighted average of the existing experts"
                                                       : "expert '" + deck.experts.init + "'")
        << (deck.experts.reset_optimizer ? "" : ", keeping the optimizer state") << "\n";
  }
  if (has(phases, "baseline") && deck.baseline.enabled) {
    out << "  baseline: dense, "
        << (deck.baseline.tokens > 0 ? "baseline.tokens"
            : experts.empty()         ? "experts.tokens x the number of experts (known after prepare)"
                                      : "compute-matched: " + std::to_string(matched.size()) +
                                            " experts x experts.tokens (whole steps), counting the forest: " +
                                            matched_text(deck, in_forest, matched))
        << "\n";
  }
  if (has(phases, "seed") && !deck.seed.init.empty() && deck.seed.tokens == 0) {
    out << "  seed: the model " << deck.seed.init.string() << " as is (seed.init, seed.tokens = 0)\n";
  } else if (has(phases, "seed")) {
    out << "  seed: mixing " << deck.seed.mixing << " over the training domains"
        << (deck.seed.init.empty() ? "" : ", starting from " + deck.seed.init.string()) << "\n";
  }
}

void print_groups(const Deck& deck, int world_size, std::ostream& out) {
  const auto experts = deck.expert_domains();
  if (experts.empty()) {
    out << "\nExpert groups\n  one expert per corpus domain: the list is known after prepare "
           "(set data.train_domains or experts.domains to see the groups here)\n";
    return;
  }
  const auto layout = GroupLayout::make(world_size, static_cast<int>(experts.size()));
  out << "\nExpert groups: P = " << world_size << " rank" << (world_size == 1 ? "" : "s") << ", E = "
      << experts.size() << " expert" << (experts.size() == 1 ? "" : "s") << ", G = min(P, E) = " << layout.num_groups
      << " group" << (layout.num_groups == 1 ? "" : "s") << "; a group trains its experts one after another\n";
  const std::uint64_t steps = phase_steps(deck.experts.tokens, deck.experts.train, deck.model.max_position_embeddings);
  TextTable t({"group", "ranks", "experts (in order)", "seq/rank/step", "steps"}, "rllrr");
  for (int g = 0; g < layout.num_groups; ++g) {
    int first = layout.first_rank(g), size = layout.group_size(g);
    std::string ranks = size == 1 ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(first + size - 1);
    std::vector<std::string> names;
    for (int e : layout.experts_of_group(g)) names.push_back(experts[e]);
    t.add({std::to_string(g), ranks, join(names), share(deck.experts.train.global_batch, size),
           commas(steps * names.size())});
  }
  t.print(out);
}

// Which experts each eval method runs on the blocks of a domain, as evaluate() schedules them:
// the grid scores the union of what the methods need, so top_k saves forward passes only when
// no other method needs every expert on the same blocks. `n`: experts (0: known after prepare).
void print_expert_use(const Deck& deck, std::size_t n, std::ostream& out) {
  const EvalConfig& ev = deck.eval;
  const std::string all = n ? "all " + std::to_string(n) + " experts" : "every expert";
  out << "  experts run on each domain's " << ev.split << " blocks (the grid runs the union):\n";
  TextTable t({"method", "experts"}, "ll");
  std::vector<std::string> everyone;  // methods that run every expert on the eval blocks
  std::vector<std::string> cached, top_k;
  if (ev.single_experts == "all") {
    t.add({"single experts", all + " (eval.single_experts = \"all\")"});
    everyone.push_back("eval.single_experts = \"all\"");
  } else if (ev.single_experts == "own") {
    t.add({"single experts", "each expert on its own domain only (eval.single_experts = \"own\")"});
  } else {
    t.add({"single experts", "none (eval.single_experts = \"none\")"});
  }
  std::size_t k_union = 0;  // most experts the top-k ensembles can select on one domain
  for (const auto& e : ev.ensembles) {
    if (e.router == "cluster") {
      t.add({e.name, "per block, the experts of the " + (e.top_k ? std::to_string(e.top_k) : std::string("k")) +
                         " nearest clusters of some target (C-BTM routing; the rest are skipped)"});
      continue;
    }
    if (e.prior == "cached") cached.push_back(e.name);
    const bool every = e.prior == "uniform" || e.top_k == 0 || (n && std::size_t(e.top_k) >= n);
    if (every) {
      t.add({e.name, all + (e.prior == "uniform" ? " (uniform prior)" : " (top_k = 0)")});
      everyone.push_back("ensemble \"" + e.name + "\"");
    } else {
      t.add({e.name, "the " + std::to_string(e.top_k) + " with the largest cached prior, per domain"});
      top_k.push_back(e.name);
      k_union += std::size_t(e.top_k);
    }
  }
  if (!cached.empty()) {
    t.add({"cached prior", all + " on " + std::to_string(ev.prior_sequences) + " valid blocks per domain (for " +
                               join(cached) + ")"});
  }
  t.print(out, "    ");
  if (top_k.empty()) return;
  if (!everyone.empty()) {
    out << "  top_k saves nothing here: " << join(everyone) << " already run" << (everyone.size() == 1 ? "s" : "")
        << " every expert on the same blocks (set eval.single_experts = \"own\" or \"none\" and drop the "
           "all-expert ensembles for " << join(top_k) << " to save forward passes)\n";
    return;
  }
  const std::size_t most = k_union + (ev.single_experts == "own" ? 1 : 0);
  out << "  top_k saves forward passes: at most " << most << (n ? " of " + std::to_string(n) : std::string())
      << " experts run on each domain's " << ev.split << " blocks"
      << (n && most >= n ? " (no fewer than all here: the selections can cover every expert)" : "") << "\n";
}

void print_eval(const Deck& deck, std::ostream& out, const std::vector<std::string>& in_forest) {
  const auto experts = deck.expert_domains();
  const auto matched = baseline_matched_experts(in_forest, experts);
  const auto& phases = deck.run.phases;
  std::string n_experts = experts.empty() ? "all" : std::to_string(matched.size());
  std::size_t n_domains = deck.data.train_domains.size() + deck.data.heldout_domains.size();
  if (has(phases, "average")) {
    out << "\nAverages (parameter averaging of the experts)\n";
    TextTable t({"name", "weights"}, "ll");
    if (deck.average.uniform) t.add({"uniform", n_experts + " experts, equal weights"});
    if (deck.average.posterior) {
      t.add({"posterior", "one per eval domain" + (deck.data.train_domains.empty() ? std::string()
                                                    : " (" + std::to_string(n_domains) + ")") +
                              ", weights = cached posterior (" + deck.average.posterior_rule + " rule, EMA rate " +
                              number(deck.eval.prior_alpha) + ") on " + std::to_string(deck.average_posterior_sequences()) +
                              " valid sequences" +
                              (deck.average.posterior_sequences > 0 ? "" : " (eval.prior_sequences)")});
    }
    for (const auto& w : deck.average.weighted) {
      std::vector<std::string> parts;
      for (const auto& [name, weight] : w.weights) parts.push_back(name + " " + number(weight));
      t.add({w.name, join(parts) + " (normalised to sum 1)"});
    }
    if (!deck.average.uniform && !deck.average.posterior && deck.average.weighted.empty()) {
      out << "  none (average.uniform, average.posterior are false and no [[average.weighted]])\n";
    } else {
      t.print(out);
    }
  }
  if (has(phases, "eval")) {
    out << "\nEvaluation on the " << deck.eval.split << " split of every domain"
        << (n_domains > 0 && !deck.data.train_domains.empty()
                ? " (" + std::to_string(n_domains + deck.cluster_domains().size()) + ")"  // and each cluster
                : std::string())
        << ", " << (deck.eval.max_tokens_per_domain > 0 ? "at most " + commas(deck.eval.max_tokens_per_domain) + " tokens each"
                                                        : "whole splits")
        << ", blocks of " << deck.model.max_position_embeddings << " tokens\n";
    std::vector<std::string> models = {"seed"};
    if (deck.baseline.enabled) models.push_back("baseline");
    models.push_back("each expert");
    if (deck.average.uniform || deck.average.posterior || !deck.average.weighted.empty()) models.push_back("the averages");
    for (const auto& m : deck.mix.models) {
      if (m.finetune) models.push_back(m.name);
      if (deck.mix.eval_mixed) models.push_back(m.name + "-mixed");
    }
    out << "  models: " << join(models) << "\n";
    if (deck.eval.ensembles.empty()) {
      out << "  ensembles: none\n";
      return;
    }
    out << "  ensembles (cached prior: " << deck.eval.prior_rule << " rule, EMA rate " << number(deck.eval.prior_alpha)
        << " over " << deck.eval.prior_sequences << " valid sequences):\n";
    TextTable t({"name", "router", "prior / weights", "posterior", "top_k"}, "llllr");
    for (const auto& e : deck.eval.ensembles) {
      const std::string top_k = e.top_k == 0 ? "all" : std::to_string(e.top_k);
      if (e.router == "cluster") {
        t.add({e.name, "cluster", "exp(-d^" + std::to_string(e.distance_power) + "/" + number(e.temperature) + ")", "-", top_k});
      } else {
        t.add({e.name, "posterior", e.prior, e.posterior, top_k});
      }
    }
    t.print(out, "    ");
    print_expert_use(deck, experts.empty() ? 0 : matched.size(), out);
  }
}

// Experts of a [[mix.models]] entry as far as the deck knows them; 0: known after prepare.
int planned_experts(const Deck& deck, const MixModel& m) {
  if (m.source == "seed") return m.num_experts;
  const std::size_t listed = m.experts.empty() ? deck.expert_domains().size() : m.experts.size();
  return listed == 0 ? 0 : static_cast<int>(listed) + (m.include_seed ? 1 : 0);
}

// Tokens of whole steps: what a phase really trains.
std::uint64_t step_tokens(std::uint64_t tokens, const TrainConfig& tr, int context) {
  return phase_steps(tokens, tr, context) * std::uint64_t(tr.global_batch) * std::uint64_t(context);
}

void print_mix(const Deck& deck, std::ostream& out) {
  out << "\nMixture-of-experts models (mix -> mixed/<name>.h5, finetune -> <name>.h5)\n";
  TextTable t({"name", "experts", "top_k", "routing", "aux loss", "router init", "finetune"}, "llrllll");
  for (const auto& m : deck.mix.models) {
    const int E = planned_experts(deck, m);
    std::string experts = m.source == "seed" ? std::to_string(m.num_experts) + " copies of the seed (sparse upcycling)"
                          : m.experts.empty() ? (E ? std::to_string(E - (m.include_seed ? 1 : 0)) : std::string("all")) +
                                                    " forest experts"
                                              : join(m.experts);
    if (m.include_seed) experts += " + the seed";
    t.add({m.name, experts, std::to_string(m.num_experts_per_tok), m.routing + " (capacity " + number(m.capacity_factor) + ")",
           m.aux_loss + " x " + number(m.router_aux_loss_coef), m.router_init,
           m.finetune ? commas(m.finetune_tokens > 0 ? m.finetune_tokens : deck.finetune.tokens) + " tokens, lr " + number(deck.finetune.train.lr) +
                            (deck.finetune.freeze_experts ? ", experts frozen" : "")
                      : "no"});
  }
  t.print(out);
}

// Training FLOPs of every phase and of each method's whole history (BTM, BTX, sparse
// upcycling, dense baseline), MoE counted at its active parameters (top-k experts).
void print_compute(const Deck& deck, std::ostream& out, const std::vector<std::string>& in_forest) {
  const auto& phases = deck.run.phases;
  // The forest's experts (earlier runs' and this deck's): the compute BTM's models stand on.
  const auto experts = deck.expert_domains().empty() ? std::vector<std::string>{}
                                                     : baseline_matched_experts(in_forest, deck.expert_domains());
  const int ctx = deck.model.max_position_embeddings;
  ModelConfig dense = deck.model;
  if (dense.vocab_size == 0) dense.vocab_size = deck.data.vocab_size;
  dense.intermediate_size = dense.resolved_intermediate_size();
  const double dense_fpt = training_flops_per_token(dense, ctx);
  auto flops = [](double f) { return number(f); };
  out << "\nCompute (training FLOPs = tokens x FLOPs per token; PaLM: 6 x active parameters + attention)\n";
  TextTable t({"phase", "model", "tokens", "FLOPs/token", "FLOPs"}, "llrrr");
  const double seed = double(step_tokens(deck.seed.tokens, deck.seed.train, ctx)) * dense_fpt;
  t.add({"seed", "dense", commas(step_tokens(deck.seed.tokens, deck.seed.train, ctx)), flops(dense_fpt), flops(seed)});
  double forest = 0;
  if (!experts.empty()) {
    const std::uint64_t tok = experts.size() * step_tokens(deck.experts.tokens, deck.experts.train, ctx);
    forest = double(tok) * dense_fpt;
    t.add({"experts", std::to_string(experts.size()) + " x dense", commas(tok), flops(dense_fpt), flops(forest)});
  }
  double baseline = 0;
  if (deck.baseline.enabled && !experts.empty()) {
    const std::uint64_t tok = step_tokens(baseline_tokens(deck, experts.size()), deck.baseline.train, ctx);
    baseline = double(tok) * dense_fpt;
    t.add({"baseline", "dense", commas(tok), flops(dense_fpt), flops(baseline)});
  }
  struct Total {
    std::string method;
    double flops;
  };
  std::vector<Total> totals;
  std::map<std::string, double> mixed_total;  // per mix model
  if (!experts.empty()) totals.push_back({"BTM (seed + experts)", seed + forest});
  for (const auto& m : deck.mix.models) {
    const int E = planned_experts(deck, m);
    if (E == 0) continue;
    const ModelConfig moe = moe_config(dense, m, E);
    const double fpt = training_flops_per_token(moe, ctx);
    const std::uint64_t budget = m.finetune_tokens > 0 ? m.finetune_tokens : deck.finetune.tokens;
    const std::uint64_t tok = m.finetune ? step_tokens(budget, deck.finetune.train, ctx) : 0;
    const double ft = double(tok) * fpt;
    t.add({"finetune", m.name + " (MoE " + std::to_string(E) + " experts, top-" + std::to_string(m.num_experts_per_tok) + ")",
           commas(tok), flops(fpt), flops(ft)});
    const bool upcycled = m.source == "seed";
    mixed_total[m.name] = seed + (upcycled ? 0.0 : forest) + ft;
    totals.push_back({m.name + (upcycled ? " (seed + finetune)" : " (seed + experts + finetune)"), mixed_total[m.name]});
  }
  if (deck.baseline.enabled && !experts.empty()) totals.push_back({"dense baseline (seed + baseline)", seed + baseline});
  t.print(out);
  for (const auto& total : totals) out << "  total " << total.method << ": " << flops(total.flops) << "\n";
  if (has(phases, "finetune") && deck.baseline.enabled && !experts.empty()) {
    for (const auto& m : deck.mix.models) {
      if (!mixed_total.count(m.name) || !m.finetune) continue;
      const double target = mixed_total[m.name] - seed;
      const std::uint64_t need = static_cast<std::uint64_t>(std::ceil(target / dense_fpt));
      out << "  baseline.tokens = " << need << " matches " << m.name << "'s total (now "
          << number(100.0 * (seed + baseline) / (seed + target)) << "%)\n";
    }
  }
  // Sparse upcycling at the compute of the first model mixed from the forest.
  const auto btx = std::find_if(deck.mix.models.begin(), deck.mix.models.end(),
                                [&](const MixModel& m) { return m.source == "forest" && mixed_total.count(m.name); });
  for (std::size_t i = 0; btx != deck.mix.models.end() && i < deck.mix.models.size(); ++i) {
    const MixModel& m = deck.mix.models[i];
    if (m.source != "seed" || !m.finetune || !mixed_total.count(m.name)) continue;
    const double fpt = training_flops_per_token(moe_config(dense, m, m.num_experts), ctx);
    const std::uint64_t need = static_cast<std::uint64_t>(std::ceil((mixed_total[btx->name] - seed) / fpt));
    out << "  mix.models[" << i << "].finetune_tokens = " << need << " matches " << btx->name << "'s total (now "
        << number(100.0 * mixed_total[m.name] / mixed_total[btx->name]) << "%)\n";
  }
}

}  // namespace

std::uint64_t phase_steps(std::uint64_t tokens, const TrainConfig& train, int context) {
  if (train.global_batch < 1 || context < 1) throw Error("phase_steps: global_batch and context must be positive");
  const std::uint64_t per_step = static_cast<std::uint64_t>(train.global_batch) * static_cast<std::uint64_t>(context);
  return std::max<std::uint64_t>(1, (tokens + per_step - 1) / per_step);
}

std::uint64_t baseline_tokens(const Deck& deck, std::size_t num_experts) {
  if (deck.baseline.tokens > 0) return deck.baseline.tokens;
  const int context = deck.model.max_position_embeddings;
  const std::uint64_t per_step = std::uint64_t(deck.experts.train.global_batch) * std::uint64_t(context);
  return num_experts * phase_steps(deck.experts.tokens, deck.experts.train, context) * per_step;
}

std::vector<std::string> baseline_matched_experts(const std::vector<std::string>& in_forest,
                                                  const std::vector<std::string>& deck_experts) {
  std::vector<std::string> out;
  for (const auto* list : {&in_forest, &deck_experts}) {
    for (const auto& name : *list) {
      if (!has(out, name)) out.push_back(name);
    }
  }
  return out;
}

void print_plan(const Deck& deck, int world_size, std::ostream& out, const std::vector<std::string>& in_forest) {
  if (world_size < 1) throw Error("btm check: --ranks must be at least 1");
  const std::string source = deck.source.empty() ? "(deck built in code)" : deck.source.string();
  out << "btm plan for " << source << ": run '" << deck.run.name << "' on " << world_size << " rank"
      << (world_size == 1 ? "" : "s") << ", backend " << deck.run.backend << ", seed " << deck.run.seed << "\n";
  out << "  output folder         " << deck.run.out_dir.string() << "\n";

  std::vector<std::string> phases;
  for (const auto& p : kAllPhases) {
    if (!has(deck.run.phases, p)) continue;
    if ((p == "mix" || p == "finetune") && deck.mix.models.empty()) continue;  // nothing to do without [[mix.models]]
    if (p == "cluster" && !deck.clustering()) continue;  // nothing to do without [cluster]
    phases.push_back(p == "baseline" && !deck.baseline.enabled ? "baseline (disabled: baseline.enabled = false)" : p);
  }
  out << "\nPhases\n  " << (phases.empty() ? "none" : join(phases, " -> ")) << "\n";
  print_data(deck, out);
  print_model(deck, out);
  print_training(deck, world_size, out, in_forest);
  print_groups(deck, world_size, out);
  print_eval(deck, out, in_forest);
  if (!deck.mix.models.empty()) print_mix(deck, out);
  if (!deck.mix.models.empty() || has(deck.run.phases, "baseline")) print_compute(deck, out, in_forest);
}

}  // namespace btm
