// Hugging Face checkpoint folder (Llama / Mixtral, SentencePiece tokenizer) -> btm model.
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>

#include "btm/data/json.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/model/hf.hpp"

namespace btm {

namespace {

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open (" + std::strerror(errno) + ")");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(path.string() + ": cannot read");
  return text;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// config.json's members, read with the type each key must have.
class HfConfig {
 public:
  explicit HfConfig(std::filesystem::path path) : path_(std::move(path)) {
    if (!std::filesystem::exists(path_)) throw Error(path_.string() + ": not found (a Hugging Face checkpoint folder holds config.json)");
    try {
      members_ = parse_json_object(read_bytes(path_));
    } catch (const JsonError& e) {
      throw Error(path_.string() + ": not a JSON object: " + e.what());
    }
  }
  bool has(const std::string& key) const { return members_.count(key) && members_.at(key).type != JsonType::null; }
  std::string where(const std::string& key) const { return path_.string() + ": " + key; }

  long long integer(const std::string& key, std::optional<long long> fallback = std::nullopt) const {
    if (!has(key)) return required(key, fallback);
    const JsonValue& v = members_.at(key);
    long long x = 0;
    const char* end = v.text.data() + v.text.size();
    auto res = std::from_chars(v.text.data(), end, x);
    if (v.type != JsonType::number || res.ec != std::errc() || res.ptr != end) {
      throw Error(where(key) + ": expected an integer, found " + describe(v));
    }
    return x;
  }
  double real(const std::string& key, std::optional<double> fallback = std::nullopt) const {
    if (!has(key)) return required(key, fallback);
    const JsonValue& v = members_.at(key);
    double x = 0;
    const char* end = v.text.data() + v.text.size();
    auto res = std::from_chars(v.text.data(), end, x);
    if (v.type != JsonType::number || res.ec != std::errc() || res.ptr != end) {
      throw Error(where(key) + ": expected a number, found " + describe(v));
    }
    return x;
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const JsonValue& v = members_.at(key);
    if (v.type != JsonType::boolean) throw Error(where(key) + ": expected true or false, found " + describe(v));
    return v.text == "true";
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const JsonValue& v = members_.at(key);
    if (v.type != JsonType::string) throw Error(where(key) + ": expected a string, found " + describe(v));
    return v.text;
  }
  const JsonValue* find(const std::string& key) const {
    auto it = members_.find(key);
    return it == members_.end() ? nullptr : &it->second;
  }

 private:
  template <class T>
  T required(const std::string& key, std::optional<T> fallback) const {
    if (!fallback) throw Error(where(key) + ": missing (required for a Llama / Mixtral model)");
    return *fallback;
  }
  static std::string describe(const JsonValue& v) {
    return std::string(json_type_name(v.type)) + " (" + (v.text.size() > 40 ? v.text.substr(0, 37) + "..." : v.text) + ")";
  }
  std::filesystem::path path_;
  std::map<std::string, JsonValue> members_;
};

int to_int(long long v, const std::string& where) {
  if (v < 0 || v > 1'000'000'000) throw Error(where + ": " + std::to_string(v) + " is out of range");
  return static_cast<int>(v);
}

ModelConfig read_hf_config(const HfConfig& j, const HfImportOptions& options) {
  const std::string type = j.string("model_type", "");
  if (type != "llama" && type != "mixtral") {
    throw Error(j.where("model_type") + ": \"" + type + "\" is not supported; btm reads \"llama\" (LlamaForCausalLM) and " +
                "\"mixtral\" (MixtralForCausalLM) checkpoints");
  }
  const bool moe = type == "mixtral";
  // What btm's decoder does not compute: refused rather than imported as another function.
  if (j.boolean("attention_bias", false)) throw Error(j.where("attention_bias") + ": true is not supported (btm's attention has no biases)");
  if (j.boolean("mlp_bias", false)) throw Error(j.where("mlp_bias") + ": true is not supported (btm's feed-forward blocks have no biases)");
  // RoPE: transformers 5 writes {"rope_theta", "rope_type"} as rope_parameters (older
  // versions rope_theta and rope_scaling); btm computes the "default" type only.
  std::optional<double> rope_theta;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!j.has(key)) continue;
    const JsonValue& v = *j.find(key);
    if (v.type != JsonType::object) throw Error(j.where(key) + ": expected an object or null, found " + json_type_name(v.type));
    const auto rope = parse_json_object(v.text);
    std::string type;
    for (const char* k : {"rope_type", "type"}) {
      if (rope.count(k)) type = rope.at(k).text;
    }
    if (type != "default") {
      throw Error(j.where(key) + ": rope_type \"" + type + "\" is not supported; btm implements plain RoPE (\"default\")");
    }
    if (rope.count("rope_theta")) {
      const std::string& t = rope.at("rope_theta").text;
      double x = 0;
      auto res = std::from_chars(t.data(), t.data() + t.size(), x);
      if (rope.at("rope_theta").type != JsonType::number || res.ec != std::errc() || res.ptr != t.data() + t.size()) {
        throw Error(j.where(key) + ".rope_theta: expected a number, found " + t);
      }
      rope_theta = x;
    }
  }
  if (const std::string act = j.string("hidden_act", "silu"); act != "silu") {
    throw Error(j.where("hidden_act") + ": \"" + act + "\" is not supported (btm's SwiGLU uses \"silu\")");
  }
  if (j.integer("pretraining_tp", 1) != 1) throw Error(j.where("pretraining_tp") + ": only 1 is supported");
  ModelConfig c;
  c.hidden_size = to_int(j.integer("hidden_size"), j.where("hidden_size"));
  c.intermediate_size = to_int(j.integer("intermediate_size"), j.where("intermediate_size"));
  c.num_hidden_layers = to_int(j.integer("num_hidden_layers"), j.where("num_hidden_layers"));
  c.num_attention_heads = to_int(j.integer("num_attention_heads"), j.where("num_attention_heads"));
  c.num_key_value_heads = to_int(j.integer("num_key_value_heads", c.num_attention_heads), j.where("num_key_value_heads"));
  c.vocab_size = to_int(j.integer("vocab_size"), j.where("vocab_size"));
  const long long max_pos = j.integer("max_position_embeddings", moe ? 4096 * 32 : 2048);
  c.max_position_embeddings = options.context > 0 ? options.context : to_int(max_pos, j.where("max_position_embeddings"));
  c.rope_theta = rope_theta ? *rope_theta : j.real("rope_theta", moe ? 1e6 : 10000.0);
  c.rms_norm_eps = j.real("rms_norm_eps", moe ? 1e-5 : 1e-6);
  c.tie_word_embeddings = j.boolean("tie_word_embeddings", false);
  c.initializer_range = j.real("initializer_range", 0.02);
  if (c.num_attention_heads > 0 && j.has("head_dim") &&
      j.integer("head_dim") != static_cast<long long>(c.hidden_size / c.num_attention_heads)) {
    throw Error(j.where("head_dim") + ": " + std::to_string(j.integer("head_dim")) +
                " is not hidden_size / num_attention_heads; btm's attention needs head_dim = " +
                std::to_string(c.hidden_size / c.num_attention_heads));
  }
  if (moe) {
    if (j.has("sliding_window") && j.integer("sliding_window") < c.max_position_embeddings) {
      throw Error(j.where("sliding_window") + ": " + std::to_string(j.integer("sliding_window")) +
                  " is shorter than the context (" + std::to_string(c.max_position_embeddings) +
                  "); btm attends to the whole context (import with --context at most the window)");
    }
    c.num_local_experts = to_int(j.integer("num_local_experts", 8), j.where("num_local_experts"));
    if (c.num_local_experts < 1) throw Error(j.where("num_local_experts") + ": expected at least 1");
    c.num_experts_per_tok = to_int(j.integer("num_experts_per_tok", 2), j.where("num_experts_per_tok"));
    c.router_aux_loss_coef = j.real("router_aux_loss_coef", 0.001);
    // btm's own keys (written by btm export); a Mixtral checkpoint routes top-k.
    c.moe_routing = j.string("btm_moe_routing", "top_k");
    if (c.moe_routing == "soft") {  // exported as top-E; btm's own k comes back
      c.num_experts_per_tok = to_int(j.integer("btm_num_experts_per_tok", 2), j.where("btm_num_experts_per_tok"));
    }
    c.moe_aux_loss = j.string("btm_moe_aux_loss", c.moe_aux_loss);
    c.moe_capacity_factor = j.real("btm_moe_capacity_factor", c.moe_capacity_factor);
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(j.where("") + "the model is inconsistent: " + e.what());
  }
  return c;
}

// Tensors a checkpoint may hold besides btm's parameters without changing the function.
bool ignorable(const std::string& name, const ModelConfig& c) {
  if (name.ends_with(".rotary_emb.inv_freq")) return true;  // a buffer older transformers saved
  return c.tie_word_embeddings && name == "lm_head.weight";  // a tied head equals the embedding
}

}  // namespace

ModelFile import_hf(const std::filesystem::path& dir, const HfImportOptions& options) {
  if (!std::filesystem::is_directory(dir)) throw Error(dir.string() + ": not a folder (expected a Hugging Face checkpoint folder)");
  const HfConfig json(dir / "config.json");
  ModelFile m;
  m.config = read_hf_config(json, options);
  // The soft routing btm exports as top-E comes back as soft; its k is unused then.
  if (m.config.moe_routing == "soft" && json.integer("num_experts_per_tok", 2) != m.config.num_local_experts) {
    throw Error(json.where("btm_moe_routing") + ": \"soft\" needs num_experts_per_tok = num_local_experts");
  }

  const auto sp_path = dir / "tokenizer.model";
  if (!std::filesystem::exists(sp_path)) {
    throw Error(sp_path.string() + ": not found; btm needs the SentencePiece tokenizer.model (a tokenizer.json-only " +
                "tokenizer, e.g. byte-level BPE, cannot be used by btm)");
  }
  std::string sp_bytes = read_bytes(sp_path);
  std::unique_ptr<Tokenizer> tokenizer;
  try {
    tokenizer = std::make_unique<Tokenizer>(sp_bytes);
  } catch (const Error& e) {
    throw Error(sp_path.string() + ": " + e.what());
  }
  if (tokenizer->vocab_size() > m.config.vocab_size) {
    throw Error(sp_path.string() + ": the tokenizer has " + std::to_string(tokenizer->vocab_size()) + " pieces, more than " +
                json.where("vocab_size") + " = " + std::to_string(m.config.vocab_size));
  }
  if (tokenizer->eos_id() < 0) throw Error(sp_path.string() + ": defines no EOS piece (btm separates documents with EOS)");
  m.tokenizer = {std::move(sp_bytes), tokenizer->vocab_size(), tokenizer->bos_id(), tokenizer->eos_id()};

  const SafetensorsCheckpoint ck(dir);
  const ParamLayout layout = ParamLayout::llama(m.config);
  for (const auto& name : ck.names()) {
    if (!layout.find(name) && !ignorable(name, m.config)) {
      throw Error(ck.file_of(name).string() + ": tensor " + name + " is not a parameter of a " +
                  (m.config.is_moe() ? "Mixtral" : "Llama") + " model as config.json describes it (biases, " +
                  "other layers or experts are not supported)");
    }
  }
  m.params.assign(layout.total(), 0.0f);
  for (const auto& p : layout.params()) {
    if (!ck.contains(p.name)) {
      throw Error(dir.string() + ": tensor " + p.name + " " + shape_text(p.shape) + " is missing from the checkpoint" +
                  (p.name == "lm_head.weight" ? " (is the model tied? tie_word_embeddings is false in config.json)" : ""));
    }
    const TensorEntry& t = ck.entry(p.name);
    if (t.shape != p.shape) {
      throw Error(ck.file_of(p.name).string() + ": tensor " + p.name + " has shape " + shape_text(t.shape) +
                  ", config.json implies " + shape_text(p.shape));
    }
    ck.read_f32(p.name, m.params.data() + p.offset);
  }
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(std::filesystem::absolute(dir), ec);
  m.meta.name = (ec ? dir : canonical).filename().string();
  m.meta.phase = "import";
  m.meta.parent = (ec ? dir : canonical).string();
  return m;
}

}  // namespace btm
