#include "btm/model/model_file.hpp"

#include <algorithm>
#include <cmath>

#include "btm/error.hpp"

namespace btm {

void write_model_config(h5::File& f, const ModelConfig& c) {
  f.create_group("/config");
  f.set_attr<std::int64_t>("/config", "hidden_size", c.hidden_size);
  f.set_attr<std::int64_t>("/config", "intermediate_size", c.resolved_intermediate_size());
  f.set_attr<std::int64_t>("/config", "num_hidden_layers", c.num_hidden_layers);
  f.set_attr<std::int64_t>("/config", "num_attention_heads", c.num_attention_heads);
  f.set_attr<std::int64_t>("/config", "num_key_value_heads", c.kv_heads());
  f.set_attr<std::int64_t>("/config", "vocab_size", c.vocab_size);
  f.set_attr<std::int64_t>("/config", "max_position_embeddings", c.max_position_embeddings);
  f.set_attr<double>("/config", "rope_theta", c.rope_theta);
  f.set_attr<double>("/config", "rms_norm_eps", c.rms_norm_eps);
  f.set_attr<std::int8_t>("/config", "tie_word_embeddings", c.tie_word_embeddings ? 1 : 0);
  f.set_attr<double>("/config", "initializer_range", c.initializer_range);
  if (c.is_moe()) {
    f.set_attr<std::int64_t>("/config", "num_local_experts", c.num_local_experts);
    f.set_attr<std::int64_t>("/config", "num_experts_per_tok", c.num_experts_per_tok);
    f.set_attr<double>("/config", "router_aux_loss_coef", c.router_aux_loss_coef);
    f.set_attr("/config", "moe_routing", c.moe_routing);
    f.set_attr("/config", "moe_aux_loss", c.moe_aux_loss);
    f.set_attr<double>("/config", "moe_capacity_factor", c.moe_capacity_factor);
  }
  f.set_attr("/config", "model_type", std::string(c.is_moe() ? "mixtral" : "llama"));
  f.set_attr("/config", "architecture_hash", c.architecture_hash());
}

ModelConfig read_model_config(const h5::File& f) {
  if (!f.exists("/config")) throw Error(f.path().string() + ": not a btm model file (no /config)");
  auto i = [&](const char* k) { return static_cast<int>(f.attr<std::int64_t>("/config", k)); };
  ModelConfig c;
  c.hidden_size = i("hidden_size");
  c.intermediate_size = i("intermediate_size");
  c.num_hidden_layers = i("num_hidden_layers");
  c.num_attention_heads = i("num_attention_heads");
  c.num_key_value_heads = i("num_key_value_heads");
  c.vocab_size = i("vocab_size");
  c.max_position_embeddings = i("max_position_embeddings");
  c.rope_theta = f.attr<double>("/config", "rope_theta");
  c.rms_norm_eps = f.attr<double>("/config", "rms_norm_eps");
  c.tie_word_embeddings = f.attr<std::int8_t>("/config", "tie_word_embeddings") != 0;
  if (f.has_attr("/config", "initializer_range")) {
    c.initializer_range = f.attr<double>("/config", "initializer_range");
  }
  if (f.has_attr("/config", "num_local_experts")) {
    c.num_local_experts = i("num_local_experts");
    c.num_experts_per_tok = i("num_experts_per_tok");
    c.router_aux_loss_coef = f.attr<double>("/config", "router_aux_loss_coef");
    // btm's routing keys; a Mixtral file without them routes as Mixtral does.
    if (f.has_attr("/config", "moe_routing")) c.moe_routing = f.string_attr("/config", "moe_routing");
    if (f.has_attr("/config", "moe_aux_loss")) c.moe_aux_loss = f.string_attr("/config", "moe_aux_loss");
    if (f.has_attr("/config", "moe_capacity_factor")) {
      c.moe_capacity_factor = f.attr<double>("/config", "moe_capacity_factor");
    }
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(f.path().string() + ": /config is inconsistent: " + e.what());
  }
  return c;
}

void write_params(h5::File& f, const std::string& group, const ParamLayout& layout,
                  const std::vector<float>& host) {
  if (host.size() != layout.total()) throw Error("write_params: buffer does not match the layout");
  for (const auto& p : layout.params()) {
    std::vector<hsize_t> dims(p.shape.begin(), p.shape.end());
    f.write<float>(group + "/" + p.name, host.data() + p.offset, dims);
  }
}

std::vector<float> read_params(const h5::File& f, const std::string& group, const ParamLayout& layout) {
  std::vector<float> host(layout.total(), 0.0f);
  for (const auto& p : layout.params()) {
    const std::string path = group + "/" + p.name;
    if (!f.exists(path)) throw Error(f.where(path) + ": missing tensor");
    auto dims = f.shape(path);
    std::vector<hsize_t> want(p.shape.begin(), p.shape.end());
    if (dims != want) {
      auto str = [](const std::vector<hsize_t>& d) {
        std::string s = "[";
        for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
        return s + "]";
      };
      throw Error(f.where(path) + ": expected shape " + str(want) + ", found " + str(dims));
    }
    f.read_into<float>(path, host.data() + p.offset, p.numel);
    // A NaN or inf parameter would only surface later as a NaN loss or prior, far from its cause.
    const float* first = host.data() + p.offset;
    const float* bad = std::find_if(first, first + p.numel, [](float v) { return !std::isfinite(v); });
    if (bad != first + p.numel) {
      throw Error(f.where(path) + ": non-finite value (" + std::to_string(*bad) + ") at element " +
                  std::to_string(bad - first) + "; the file is damaged or its training diverged");
    }
  }
  return host;
}

void write_meta(h5::File& f, const ModelMeta& m) {
  f.create_group("/meta");
  f.set_attr("/meta", "name", m.name);
  f.set_attr("/meta", "phase", m.phase);
  f.set_attr("/meta", "parent", m.parent);
  f.set_attr("/meta", "domain", m.domain);
  f.set_attr("/meta", "deck", m.deck);
  f.set_attr("/meta", "version", std::string(BTM_VERSION));
}

ModelMeta read_meta(const h5::File& f) {
  ModelMeta m;
  auto s = [&](const char* k) { return f.has_attr("/meta", k) ? f.string_attr("/meta", k) : std::string(); };
  m.name = s("name");
  m.phase = s("phase");
  m.parent = s("parent");
  m.domain = s("domain");
  m.deck = s("deck");
  return m;
}

void write_tokenizer(h5::File& f, const TokenizerBlob& t) {
  std::vector<std::uint8_t> bytes(t.model.begin(), t.model.end());
  f.write<std::uint8_t>("/tokenizer/model", bytes);
  f.set_attr<std::int64_t>("/tokenizer/model", "vocab_size", t.vocab_size);
  f.set_attr<std::int64_t>("/tokenizer/model", "bos_id", t.bos_id);
  f.set_attr<std::int64_t>("/tokenizer/model", "eos_id", t.eos_id);
}

TokenizerBlob read_tokenizer(const h5::File& f) {
  if (!f.exists("/tokenizer/model")) throw Error(f.where("/tokenizer/model") + ": no tokenizer in this file");
  TokenizerBlob t;
  auto bytes = f.read<std::uint8_t>("/tokenizer/model");
  t.model.assign(bytes.begin(), bytes.end());
  t.vocab_size = static_cast<int>(f.attr<std::int64_t>("/tokenizer/model", "vocab_size"));
  t.bos_id = static_cast<int>(f.attr<std::int64_t>("/tokenizer/model", "bos_id"));
  t.eos_id = static_cast<int>(f.attr<std::int64_t>("/tokenizer/model", "eos_id"));
  return t;
}

void save_model(const std::filesystem::path& path, const ModelFile& model,
                const std::function<void(h5::File&)>& extra) {
  h5::AtomicWrite w(path);
  write_model_config(w.file(), model.config);
  write_params(w.file(), "/params", ParamLayout::llama(model.config), model.params);
  write_meta(w.file(), model.meta);
  if (!model.tokenizer.model.empty()) write_tokenizer(w.file(), model.tokenizer);
  if (extra) extra(w.file());
  w.commit();
}

ModelFile load_model(const std::filesystem::path& path) {
  h5::File f = h5::open_for_read(path, "a btm model file");
  ModelFile m;
  m.config = read_model_config(f);
  m.params = read_params(f, "/params", ParamLayout::llama(m.config));
  m.meta = read_meta(f);
  if (f.exists("/tokenizer/model")) m.tokenizer = read_tokenizer(f);
  return m;
}

}  // namespace btm
