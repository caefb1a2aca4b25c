#include "config/schema.hpp"

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>

#include "btm/data/json.hpp"

namespace btm::deck {

namespace {

constexpr double kIntMax = INT_MAX;
constexpr double kMaxTokens = 1e15;  // a petatoken: far beyond any run, small enough to be exact

// 1048576 rather than 1.04858e+06 in messages.
std::string number_text(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) {
    return std::to_string(static_cast<long long>(v));
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string integer_range(const Range& r) {
  std::string body = r.hi == kInf ? ">= " + number_text(r.lo) : "in " + number_text(r.lo) + ".." + number_text(r.hi);
  return (r.zero_ok ? "0 or an integer " : "an integer ") + body;
}

std::string real_range(const Range& r) {
  std::string lo = number_text(r.lo), hi = number_text(r.hi);
  if (r.hi == kInf) return "a number " + std::string(r.lo_open ? "> " : ">= ") + lo;
  return "a number in " + std::string(r.lo_open ? "(" : "[") + lo + ", " + hi + (r.hi_open ? ")" : "]");
}

// Builders, one per kind of key, so that the tables below read like the deck reference.
Field integer(std::string key, int& v, double lo, double hi = kIntMax, bool zero_ok = false) {
  return Field{std::move(key), &v, Range{lo, hi, false, false, zero_ok}, {}, false, false};
}
Field count(std::string key, std::uint64_t& v, double lo, double hi = kMaxTokens) {
  return Field{std::move(key), &v, Range{lo, hi}, {}, false, false};
}
Field real(std::string key, double& v, double lo, double hi, bool lo_open, bool hi_open) {
  return Field{std::move(key), &v, Range{lo, hi, lo_open, hi_open, false}, {}, false, false};
}
Field flag(std::string key, bool& v) { return Field{std::move(key), &v, {}, {}, false, false}; }
Field text(std::string key, std::string& v, std::vector<std::string> choices = {}) {
  return Field{std::move(key), &v, {}, std::move(choices), false, false};
}
Field name(std::string key, std::string& v) { return Field{std::move(key), &v, {}, {}, true, false}; }
Field path(std::string key, std::filesystem::path& v) { return Field{std::move(key), &v, {}, {}, false, false}; }
Field names(std::string key, std::vector<std::string>& v, std::vector<std::string> choices = {}) {
  bool is_name_list = choices.empty();
  return Field{std::move(key), &v, {}, std::move(choices), is_name_list, false};
}
Field required(Field f) {
  f.required = true;
  return f;
}

const std::vector<std::string> kMixing = {"balanced", "proportional"};

}  // namespace

bool Range::contains(double v) const {
  if (std::isnan(v)) return false;
  if (zero_ok && v == 0) return true;
  bool above = lo_open ? v > lo : v >= lo;
  bool below = hi_open ? v < hi : v <= hi;
  return above && below;
}

std::string Field::expected() const {
  struct Describe {
    const Field& f;
    std::string operator()(int*) const { return integer_range(f.range); }
    std::string operator()(std::uint64_t*) const { return integer_range(f.range); }
    std::string operator()(double*) const { return real_range(f.range); }
    std::string operator()(bool*) const { return "true or false"; }
    std::string operator()(std::string*) const {
      if (!f.choices.empty()) return "one of: " + join(f.choices);
      return f.name ? kNameRule : "a string";
    }
    std::string operator()(std::filesystem::path*) const { return "a path (string)"; }
    std::string operator()(std::vector<std::string>*) const {
      if (!f.choices.empty()) return "an array of distinct strings, each one of: " + join(f.choices);
      return "an array of distinct names, each " + std::string(kNameRule);
    }
    std::string operator()(std::map<std::string, double>*) const {
      return "a table of expert = weight, each weight " + real_range(f.range);
    }
  };
  return std::visit(Describe{*this}, target);
}

bool is_name(std::string_view s) {
  if (s.empty() || s.front() == '.') return false;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-' || c == '+';
    if (!ok) return false;
  }
  return true;
}

std::vector<Field> run_fields(RunConfig& c) {
  return {name("name", c.name),
          path("out_dir", c.out_dir),
          count("seed", c.seed, 0, kInf),
          text("backend", c.backend, {"cpu", "cuda"}),
          names("phases", c.phases, kAllPhases),
          integer("blas_threads", c.blas_threads, 1, 1024)};
}

std::vector<Field> data_fields(DataConfig& c) {
  return {path("corpus", c.corpus),
          text("format", c.format, {"auto", "jsonl", "text_tree", "split_jsonl"}),
          names("train_domains", c.train_domains),
          names("heldout_domains", c.heldout_domains),
          path("tokenizer", c.tokenizer),
          integer("vocab_size", c.vocab_size, 256, 4194304),
          real("tokenizer_sample_mb", c.tokenizer_sample_mb, 0, 1e6, true, false),
          real("valid_fraction", c.valid_fraction, 0, 1, false, true),
          real("test_fraction", c.test_fraction, 0, 1, false, true),
          real("max_mb_per_domain", c.max_mb_per_domain, 0, kInf, false, false)};
}

std::vector<Field> cluster_fields(ClusterConfig& c) {
  return {flag("enabled", c.enabled),
          integer("k", c.k, 1, 65536),
          text("method", c.method, {"balanced", "unbalanced", "random"}),
          integer("svd_dims", c.svd_dims, 1, 100000),
          count("sample_docs", c.sample_docs, 0),
          integer("iterations", c.iterations, 1, 100000),
          text("assign", c.assign, {"nearest", "balanced"}),
          real("temperature", c.temperature, 0, kInf, true, false),
          integer("top_k", c.top_k, 1, 65536),
          count("seed", c.seed, 0, kInf)};
}

std::vector<Field> model_fields(ModelConfig& c) {
  return {integer("hidden_size", c.hidden_size, 1, 65536),
          integer("intermediate_size", c.intermediate_size, 1, 1048576, true),
          integer("num_hidden_layers", c.num_hidden_layers, 1, 1024),
          integer("num_attention_heads", c.num_attention_heads, 1, 1024),
          integer("num_key_value_heads", c.num_key_value_heads, 1, 1024, true),
          integer("vocab_size", c.vocab_size, 256, 4194304, true),
          integer("context", c.max_position_embeddings, 2, 1048576),
          real("rope_theta", c.rope_theta, 0, kInf, true, false),
          real("rms_norm_eps", c.rms_norm_eps, 0, 1, true, true),
          flag("tie_word_embeddings", c.tie_word_embeddings),
          real("initializer_range", c.initializer_range, 0, 1, true, false),
          integer("num_local_experts", c.num_local_experts, 1, 4096, true),
          integer("num_experts_per_tok", c.num_experts_per_tok, 1, 4096),
          real("router_aux_loss_coef", c.router_aux_loss_coef, 0, kInf, false, true),
          text("moe_routing", c.moe_routing, moe_routing_modes()),
          text("moe_aux_loss", c.moe_aux_loss, moe_aux_loss_forms()),
          real("moe_capacity_factor", c.moe_capacity_factor, 0, kInf, true, true)};
}

bool is_moe_model_key(std::string_view key) {
  return key == "num_local_experts" || key == "num_experts_per_tok" || key == "router_aux_loss_coef" ||
         key.starts_with("moe_");
}

std::vector<Field> train_fields(TrainConfig& c) {
  return {integer("micro_batch", c.micro_batch, 1, 65536),
          integer("global_batch", c.global_batch, 1, 16777216),
          real("lr", c.lr, 0, 10, true, false),
          real("min_lr_ratio", c.min_lr_ratio, 0, 1, false, false),
          real("warmup_fraction", c.warmup_fraction, 0, 1, false, true),
          real("weight_decay", c.weight_decay, 0, 10, false, false),
          real("beta1", c.beta1, 0, 1, false, true),
          real("beta2", c.beta2, 0, 1, false, true),
          real("adam_eps", c.adam_eps, 0, 1, true, false),
          real("grad_clip", c.grad_clip, 0, kInf, false, false),
          integer("log_every", c.log_every, 1),
          integer("eval_every", c.eval_every, 0),
          integer("eval_batches", c.eval_batches, 1, 1000000),
          integer("checkpoint_every", c.checkpoint_every, 0),
          integer("max_skipped_steps", c.max_skipped_steps, 0, 1000000),
          text("precision", c.precision, {"auto", "fp32", "bf16"})};
}

std::vector<Field> seed_fields(SeedConfig& c) {
  return {count("tokens", c.tokens, 0), text("mixing", c.mixing, kMixing), path("init", c.init)};
}

std::vector<Field> experts_fields(ExpertsConfig& c) {
  return {count("tokens", c.tokens, 1),
          names("domains", c.domains),
          text("init", c.init),  // seed | posterior_average | <expert name>: checked across fields
          flag("reset_optimizer", c.reset_optimizer),
          integer("posterior_sequences", c.posterior_sequences, 1, 1000000, true)};
}

std::vector<Field> baseline_fields(BaselineConfig& c) {
  return {flag("enabled", c.enabled), count("tokens", c.tokens, 0), text("mixing", c.mixing, kMixing)};
}

std::vector<Field> average_fields(AverageConfig& c) {
  return {flag("uniform", c.uniform), flag("posterior", c.posterior),
          text("posterior_rule", c.posterior_rule, {"previous_token", "exact"}),
          integer("posterior_sequences", c.posterior_sequences, 1, 1000000, true)};
}

std::vector<Field> weighted_fields(WeightedAverage& c) {
  return {required(name("name", c.name)),
          required(Field{"weights", &c.weights, Range{0, kInf}, {}, false, false})};
}

std::vector<Field> eval_fields(EvalConfig& c) {
  return {text("split", c.split, {"test", "valid"}),
          count("max_tokens_per_domain", c.max_tokens_per_domain, 0),
          integer("prior_sequences", c.prior_sequences, 1, 1000000),
          real("prior_alpha", c.prior_alpha, 0, 1, true, false),
          text("prior_rule", c.prior_rule, {"previous_token", "exact"}),
          integer("batch", c.batch, 1, 65536),
          text("single_experts", c.single_experts, {"all", "own", "none"})};
}

std::vector<Field> ensemble_fields(EnsembleConfig& c) {
  return {required(name("name", c.name)),
          text("prior", c.prior, {"uniform", "cached"}),
          text("posterior", c.posterior, {"exact", "previous_token"}),
          integer("top_k", c.top_k, 0, 4096),
          text("router", c.router, {"posterior", "cluster"}),
          real("temperature", c.temperature, 0, 1e6, true, false),
          integer("distance_power", c.distance_power, 2, 4)};
}

std::vector<Field> mix_fields(MixConfig& c) {
  return {integer("centroid_sequences", c.centroid_sequences, 1, 1000000), flag("eval_mixed", c.eval_mixed)};
}

std::vector<Field> mix_model_fields(MixModel& c) {
  return {required(name("name", c.name)),
          text("source", c.source, {"forest", "seed"}),
          names("experts", c.experts),
          integer("num_experts", c.num_experts, 1, 4096, true),
          flag("include_seed", c.include_seed),
          Field{"weights", &c.weights, Range{0, kInf}, {}, false, false},
          text("router_init", c.router_init, {"random", "centroid"}),
          integer("num_experts_per_tok", c.num_experts_per_tok, 1, 4096),
          text("routing", c.routing, {"top_k", "switch", "soft", "sample_top1"}),
          text("aux_loss", c.aux_loss, {"btx", "switch"}),
          real("router_aux_loss_coef", c.router_aux_loss_coef, 0, 100, false, false),
          real("capacity_factor", c.capacity_factor, 0, 1e6, true, false),
          flag("finetune", c.finetune),
          count("finetune_tokens", c.finetune_tokens, 0)};
}

std::vector<Field> finetune_fields(FinetuneConfig& c) {
  return {count("tokens", c.tokens, 1), text("mixing", c.mixing, kMixing), flag("freeze_experts", c.freeze_experts)};
}

// TOML basic strings take JSON's escapes (json_quote also escapes DEL, which TOML requires).
std::string toml_quote(std::string_view s) { return json_quote(s); }

std::string toml_float(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eEni") == std::string::npos) s += ".0";  // "3" would read back as an integer
  return s;
}

}  // namespace btm::deck
