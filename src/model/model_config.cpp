#include "btm/model_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <utility>
#include <vector>

#include "btm/error.hpp"

namespace btm {

int ModelConfig::resolved_intermediate_size() const {
  if (intermediate_size > 0) return intermediate_size;
  int raw = (8 * hidden_size + 2) / 3;
  return (raw + 63) / 64 * 64;
}

int ModelConfig::experts_per_token() const {
  if (num_local_experts <= 0) return 0;
  if (moe_routing == "soft") return num_local_experts;
  if (moe_routing == "switch" || moe_routing == "sample_top1") return 1;
  return num_experts_per_tok;
}

const std::vector<std::string>& moe_routing_modes() {
  static const std::vector<std::string> modes = {"top_k", "switch", "soft", "sample_top1"};
  return modes;
}

const std::vector<std::string>& moe_aux_loss_forms() {
  static const std::vector<std::string> forms = {"btx", "switch"};
  return forms;
}

void ModelConfig::validate() const {
  auto bad = [](const std::string& field, const std::string& why) {
    throw Error("model." + field + ": " + why);
  };
  if (hidden_size <= 0) bad("hidden_size", "must be positive");
  if (num_hidden_layers <= 0) bad("num_hidden_layers", "must be positive");
  if (num_attention_heads <= 0) bad("num_attention_heads", "must be positive");
  if (hidden_size % num_attention_heads != 0) {
    bad("hidden_size", "must be divisible by num_attention_heads (" + std::to_string(hidden_size) +
                           " % " + std::to_string(num_attention_heads) + " != 0)");
  }
  if (head_dim() % 2 != 0) bad("hidden_size", "head dimension hidden_size/num_attention_heads must be even for rotary embeddings");
  if (num_key_value_heads < 0 || num_attention_heads % kv_heads() != 0) {
    bad("num_key_value_heads", "must divide num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  }
  if (intermediate_size < 0) bad("intermediate_size", "must be positive, or 0 for 8/3 * hidden_size");
  if (vocab_size < 0) bad("vocab_size", "must be positive, or 0 to take the tokenizer's");
  if (max_position_embeddings < 2) bad("context", "must be at least 2");
  if (!(rope_theta > 0)) bad("rope_theta", "must be positive");
  if (!(rms_norm_eps > 0)) bad("rms_norm_eps", "must be positive");
  if (!(initializer_range > 0)) bad("initializer_range", "must be positive");
  if (num_local_experts < 0) bad("num_local_experts", "must be 0 (dense) or a number of experts");
  auto one_of = [](const std::string& v, const std::vector<std::string>& allowed) {
    return std::find(allowed.begin(), allowed.end(), v) != allowed.end();
  };
  auto list = [](const std::vector<std::string>& allowed) {
    std::string out;
    for (const auto& a : allowed) out += (out.empty() ? "" : ", ") + a;
    return out;
  };
  if (!one_of(moe_routing, moe_routing_modes())) {
    bad("moe_routing", "unknown routing \"" + moe_routing + "\"; expected one of: " + list(moe_routing_modes()));
  }
  if (!one_of(moe_aux_loss, moe_aux_loss_forms())) {
    bad("moe_aux_loss", "unknown load-balancing form \"" + moe_aux_loss + "\"; expected one of: " +
                            list(moe_aux_loss_forms()));
  }
  if (num_experts_per_tok < 1) bad("num_experts_per_tok", "must be at least 1");
  if (num_local_experts > 0 && moe_routing == "top_k" && num_experts_per_tok > num_local_experts) {
    bad("num_experts_per_tok", std::to_string(num_experts_per_tok) + " exceeds num_local_experts (" +
                                   std::to_string(num_local_experts) + ")");
  }
  if (!(router_aux_loss_coef >= 0) || !std::isfinite(router_aux_loss_coef)) {
    bad("router_aux_loss_coef", "must be a finite number >= 0");
  }
  if (!(moe_capacity_factor > 0) || !std::isfinite(moe_capacity_factor)) {
    bad("moe_capacity_factor", "must be a finite number > 0");
  }
}

namespace {

// (Hugging Face key, value) of every field that changes the parameter shapes or the function.
std::vector<std::pair<std::string, std::string>> architecture_fields(const ModelConfig& c) {
  auto num = [](double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  };
  return {{"hidden_size", std::to_string(c.hidden_size)},
          {"intermediate_size", std::to_string(c.resolved_intermediate_size())},
          {"num_hidden_layers", std::to_string(c.num_hidden_layers)},
          {"num_attention_heads", std::to_string(c.num_attention_heads)},
          {"num_key_value_heads", std::to_string(c.kv_heads())},
          {"vocab_size", std::to_string(c.vocab_size)},
          {"rope_theta", num(c.rope_theta)},
          {"rms_norm_eps", num(c.rms_norm_eps)},
          {"tie_word_embeddings", c.tie_word_embeddings ? "1" : "0"},
          // Dense models carry no routing: two dense configs never differ here.
          {"num_local_experts", std::to_string(std::max(c.num_local_experts, 0))},
          {"num_experts_per_tok", c.is_moe() ? std::to_string(c.experts_per_token()) : "-"},
          {"moe_routing", c.is_moe() ? c.moe_routing : "-"}};
}

// The first fields of architecture_fields() make the historical dense key.
constexpr std::size_t kDenseFields = 9;

}  // namespace

std::string ModelConfig::architecture_hash() const {
  // The historical key string (hashes in existing forests stay valid).
  const auto f = architecture_fields(*this);
  const char* tags[] = {"d", "f", "l", "h", "kv", "v", "theta", "eps", "tied", "experts", "k", "routing"};
  std::string key = "llama";
  // MoE fields join the key only for MoE models, so dense hashes keep their value.
  const std::size_t used = is_moe() ? f.size() : kDenseFields;
  for (std::size_t i = 0; i < used; ++i) key += std::string(":") + tags[i] + "=" + f[i].second;
  // FNV-1a, printed as 16 hex digits: short enough to show, stable across platforms.
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string ModelConfig::architecture_differences(const ModelConfig& other) const {
  const auto mine = architecture_fields(*this), theirs = architecture_fields(other);
  std::string out;
  for (std::size_t i = 0; i < mine.size(); ++i) {
    if (mine[i].second == theirs[i].second) continue;
    out += (out.empty() ? "" : ", ") + mine[i].first + " " + mine[i].second + " vs " + theirs[i].second;
  }
  return out;
}

}  // namespace btm
