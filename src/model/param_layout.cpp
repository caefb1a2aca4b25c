#include "btm/model/param_layout.hpp"

#include "btm/error.hpp"

namespace btm {

std::size_t ParamLayout::add(const std::string& name, std::vector<std::int64_t> shape) {
  ParamInfo p;
  p.name = name;
  p.shape = std::move(shape);
  p.numel = 1;
  for (auto s : p.shape) p.numel *= static_cast<std::size_t>(s);
  // Keep every tensor 16-element aligned: vector loads and bf16 copies stay aligned.
  p.offset = (total_ + 15) / 16 * 16;
  total_ = p.offset + p.numel;
  params_.push_back(p);
  return p.offset;
}

ParamLayout ParamLayout::llama(const ModelConfig& c) {
  c.validate();
  if (c.vocab_size <= 0) throw Error("model.vocab_size is not set (it comes from the tokenizer)");
  ParamLayout L;
  const std::int64_t d = c.hidden_size, f = c.resolved_intermediate_size(), v = c.vocab_size;
  const std::int64_t qd = std::int64_t(c.num_attention_heads) * c.head_dim();
  const std::int64_t kvd = std::int64_t(c.kv_heads()) * c.head_dim();
  L.embed_ = L.add("model.embed_tokens.weight", {v, d});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer l;
    l.input_norm = L.add(p + "input_layernorm.weight", {d});
    l.q = L.add(p + "self_attn.q_proj.weight", {qd, d});
    l.k = L.add(p + "self_attn.k_proj.weight", {kvd, d});
    l.v = L.add(p + "self_attn.v_proj.weight", {kvd, d});
    l.o = L.add(p + "self_attn.o_proj.weight", {d, qd});
    l.post_norm = L.add(p + "post_attention_layernorm.weight", {d});
    if (c.is_moe()) {
      const std::string moe = p + "block_sparse_moe.";
      l.router = L.add(moe + "gate.weight", {c.num_local_experts, d});
      for (int e = 0; e < c.num_local_experts; ++e) {
        const std::string x = moe + "experts." + std::to_string(e) + ".";
        ExpertOffsets o;
        o.w1 = L.add(x + "w1.weight", {f, d});
        o.w2 = L.add(x + "w2.weight", {d, f});
        o.w3 = L.add(x + "w3.weight", {f, d});
        l.experts.push_back(o);
      }
    } else {
      l.gate = L.add(p + "mlp.gate_proj.weight", {f, d});
      l.up = L.add(p + "mlp.up_proj.weight", {f, d});
      l.down = L.add(p + "mlp.down_proj.weight", {d, f});
    }
    L.layers_.push_back(l);
  }
  L.final_norm_ = L.add("model.norm.weight", {d});
  L.lm_head_ = c.tie_word_embeddings ? L.embed_ : L.add("lm_head.weight", {v, d});
  return L;
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  for (const auto& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const ParamInfo& ParamLayout::at(const std::string& name) const {
  if (const ParamInfo* p = find(name)) return *p;
  throw Error("no parameter named '" + name + "' in this model");
}

}  // namespace btm
