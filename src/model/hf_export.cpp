// btm model file -> Hugging Face checkpoint folder (LlamaForCausalLM / MixtralForCausalLM).
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

#include "btm/data/json.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/model/hf.hpp"
#include "btm/train/checkpoint.hpp"

namespace btm {

namespace {

// Shortest text that reads back as the same double ("1e-05", "10000.0").
std::string json_number(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eEni") == std::string::npos) s += ".0";
  return s;
}

// Writes a small text file through a temporary name and a rename.
void write_text_file(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path.string() + ": cannot create the file (" + std::strerror(errno) + ")");
    out << text;
    out.close();
    if (!out) throw Error(path.string() + ": write failed (" + std::strerror(errno) + ")");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error(path.string() + ": cannot rename the finished file into place (" + ec.message() + ")");
}

// Members written one per line, in the order given.
class JsonObject {
 public:
  JsonObject& raw(const std::string& key, const std::string& json) {
    members_.emplace_back(key, json);
    return *this;
  }
  JsonObject& integer(const std::string& key, long long v) { return raw(key, std::to_string(v)); }
  JsonObject& real(const std::string& key, double v) { return raw(key, json_number(v)); }
  JsonObject& boolean(const std::string& key, bool v) { return raw(key, v ? "true" : "false"); }
  JsonObject& string(const std::string& key, const std::string& v) { return raw(key, json_quote(v)); }
  std::string text() const {
    std::string out = "{\n";
    for (std::size_t i = 0; i < members_.size(); ++i) {
      out += "  " + json_quote(members_[i].first) + ": " + members_[i].second + (i + 1 < members_.size() ? ",\n" : "\n");
    }
    return out + "}\n";
  }

 private:
  std::vector<std::pair<std::string, std::string>> members_;
};

const char* torch_dtype(TensorDtype d) {
  return d == TensorDtype::f32 ? "float32" : d == TensorDtype::bf16 ? "bfloat16" : "float16";
}

// Mixtral routes top-k with the kept gates renormalised. btm's soft routing (every expert,
// gates = softmax) is top-E of that; switch and sample_top1 weigh the one expert by its
// probability, which Mixtral cannot express.
int mixtral_experts_per_token(const ModelConfig& c) {
  if (c.moe_routing == "top_k") return c.num_experts_per_tok;
  if (c.moe_routing == "soft") return c.num_local_experts;
  throw Error("moe_routing = \"" + c.moe_routing + "\" cannot be exported as MixtralForCausalLM: Mixtral routes " +
              "top-k with the kept gates renormalised to sum 1, while " + c.moe_routing +
              " routing weighs its one expert by the router probability; finetune with moe_routing = \"top_k\" to export");
}

}  // namespace

std::string hf_config_json(const ModelFile& model, TensorDtype dtype) {
  const ModelConfig& c = model.config;
  const bool moe = c.is_moe();
  JsonObject j;
  j.raw("architectures", moe ? "[\"MixtralForCausalLM\"]" : "[\"LlamaForCausalLM\"]")
      .string("model_type", moe ? "mixtral" : "llama")
      .integer("hidden_size", c.hidden_size)
      .integer("intermediate_size", c.resolved_intermediate_size())
      .integer("num_hidden_layers", c.num_hidden_layers)
      .integer("num_attention_heads", c.num_attention_heads)
      .integer("num_key_value_heads", c.kv_heads())
      .integer("head_dim", c.head_dim())
      .integer("vocab_size", c.vocab_size)
      .integer("max_position_embeddings", c.max_position_embeddings)
      .real("rope_theta", c.rope_theta)
      .raw("rope_scaling", "null")
      .real("rms_norm_eps", c.rms_norm_eps)
      .boolean("tie_word_embeddings", c.tie_word_embeddings)
      .real("initializer_range", c.initializer_range)
      .string("hidden_act", "silu")
      .boolean("attention_bias", false)
      .real("attention_dropout", 0.0);
  if (!moe) j.boolean("mlp_bias", false).integer("pretraining_tp", 1);
  const TokenizerBlob& t = model.tokenizer;
  if (t.bos_id >= 0) j.integer("bos_token_id", t.bos_id);
  if (t.eos_id >= 0) j.integer("eos_token_id", t.eos_id);
  if (moe) {
    j.integer("num_local_experts", c.num_local_experts)
        .integer("num_experts_per_tok", mixtral_experts_per_token(c))
        .real("router_aux_loss_coef", c.router_aux_loss_coef)
        .boolean("output_router_logits", false)
        .real("router_jitter_noise", 0.0)
        .raw("sliding_window", "null")
        // btm's training settings of the MoE layer, kept for a round trip through import.
        .string("btm_moe_routing", c.moe_routing)
        .integer("btm_num_experts_per_tok", c.num_experts_per_tok)
        .string("btm_moe_aux_loss", c.moe_aux_loss)
        .real("btm_moe_capacity_factor", c.moe_capacity_factor);
  }
  j.string("torch_dtype", torch_dtype(dtype)).boolean("use_cache", true);
  return j.text();
}

std::vector<std::string> export_hf(const std::filesystem::path& model_file, const std::filesystem::path& dir,
                                   const HfExportOptions& options) {
  if (!std::filesystem::exists(model_file)) throw Error(model_file.string() + ": model file not found");
  if (!model_is_complete(model_file) && h5::open_for_read(model_file, "a btm model file").exists("/train")) {
    const TrainState s = read_train_state(model_file);
    throw Error(model_file.string() + " is an unfinished training checkpoint (step " + std::to_string(s.step) + " of " +
                std::to_string(s.total_steps) + "); finish its phase (btm run DECK) before exporting it");
  }
  const ModelFile model = load_model(model_file);
  if (model.tokenizer.model.empty()) throw Error(model_file.string() + ": holds no tokenizer (/tokenizer/model) to export");
  const std::string config = hf_config_json(model, options.dtype);  // refuses what HF cannot express

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    throw Error(dir.string() + ": cannot create the export folder (" + (ec ? ec.message() : "a file of that name exists") + ")");
  }
  const ParamLayout layout = ParamLayout::llama(model.config);
  std::vector<TensorToWrite> tensors;
  for (const auto& p : layout.params()) tensors.push_back({p.name, p.shape, model.params.data() + p.offset});
  std::vector<std::string> files = write_safetensors_checkpoint(dir, std::move(tensors), options.dtype, options.shard_bytes);

  write_text_file(dir / "config.json", config);
  files.push_back("config.json");

  const TokenizerBlob& t = model.tokenizer;
  JsonObject gen;
  if (t.bos_id >= 0) gen.integer("bos_token_id", t.bos_id);
  if (t.eos_id >= 0) gen.integer("eos_token_id", t.eos_id);
  write_text_file(dir / "generation_config.json", gen.text());
  files.push_back("generation_config.json");

  // The SentencePiece model as is; LlamaTokenizer reads it. btm never adds BOS (documents
  // are separated by EOS) and its models keep whitespace as written (no dummy prefix).
  write_text_file(dir / "tokenizer.model", t.model);
  files.push_back("tokenizer.model");
  const Tokenizer tokenizer(t.model);
  auto special = [&](int id) { return id >= 0 ? json_quote(tokenizer.piece(id)) : std::string("null"); };
  JsonObject specials;
  specials.raw("bos_token", special(tokenizer.bos_id()))
      .raw("eos_token", special(tokenizer.eos_id()))
      .raw("unk_token", special(tokenizer.unk_id()))
      .raw("pad_token", special(tokenizer.pad_id()));
  write_text_file(dir / "special_tokens_map.json", specials.text());
  files.push_back("special_tokens_map.json");
  JsonObject tc = specials;
  tc.string("tokenizer_class", "LlamaTokenizer")
      .boolean("add_bos_token", false)
      .boolean("add_eos_token", false)
      .boolean("add_prefix_space", false)
      .boolean("legacy", false)
      .boolean("clean_up_tokenization_spaces", false)
      .raw("sp_model_kwargs", "{}")
      .integer("model_max_length", model.config.max_position_embeddings);
  write_text_file(dir / "tokenizer_config.json", tc.text());
  files.push_back("tokenizer_config.json");
  return files;
}

std::uint64_t parse_byte_size(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  const std::string number = text.substr(0, i), unit = text.substr(i);
  double v = 0;
  auto res = std::from_chars(number.data(), number.data() + number.size(), v);
  const std::vector<std::pair<std::string, double>> units = {
      {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
  for (const auto& [name, scale] : units) {
    if (number.empty() || res.ec != std::errc() || res.ptr != number.data() + number.size()) break;
    if (unit == name && v * scale >= 1) return static_cast<std::uint64_t>(v * scale);
  }
  throw Error("expected a size such as 5GB, 500MB, 2GiB or a byte count, got '" + text + "'");
}

}  // namespace btm
