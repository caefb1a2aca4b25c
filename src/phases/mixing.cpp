// BTX mixing: which dense models become which experts, and the MoE parameters built from
// them (router, expert FFNs by Mixtral name, averaged trunk).
#include "btm/mixing.hpp"

#include <algorithm>
#include <cmath>

#include "btm/data/loader.hpp"
#include "btm/error.hpp"
#include "btm/expert_training.hpp"
#include "btm/h5.hpp"
#include "btm/model/llama.hpp"
#include "btm/train/checkpoint.hpp"

namespace btm {

namespace {

void require_seed(const Deck& deck, const std::string& why) {
  if (!model_is_complete(deck.seed_file())) {
    throw Error(why + " needs a finished seed model at " + deck.seed_file().string() + "; run the seed phase first");
  }
}

ModelConfig dense_of(const ModelConfig& moe) {
  ModelConfig c = moe;
  c.num_local_experts = 0;
  return c;
}

}  // namespace

std::vector<MixedExpert> mix_experts(const Deck& deck, const MixModel& model, const std::string& where,
                                     const Forest& forest, const std::vector<std::string>& train_domains) {
  const std::string who = where + " (\"" + model.name + "\")";
  std::vector<MixedExpert> out;
  if (model.source == "seed") {
    require_seed(deck, who + ", source = \"seed\",");
    for (int e = 0; e < model.num_experts; ++e) out.push_back({"seed." + std::to_string(e), deck.seed_file(), train_domains});
  } else {
    if (forest.experts().empty()) {
      throw Error(who + ": source = \"forest\" needs experts in " + deck.forest_file().string() +
                  "; run the experts phase first, or use source = \"seed\" (sparse upcycling)");
    }
    std::vector<std::string> names = model.experts;
    if (names.empty()) {
      for (const auto& e : forest.experts()) names.push_back(e.name);
    }
    for (const auto& name : names) {
      const ForestEntry* entry = forest.find(name);
      if (!entry) throw Error(where + ".experts: \"" + name + "\" is not an expert of " + deck.forest_file().string());
      out.push_back({entry->name, finished_expert_file(forest, *entry), {entry->domain}});
    }
    if (model.include_seed) {
      require_seed(deck, who + ", include_seed = true,");
      out.push_back({"seed", deck.seed_file(), train_domains});
    }
    if (model.num_experts > 0 && model.num_experts != static_cast<int>(out.size())) {
      throw Error(where + ".num_experts = " + std::to_string(model.num_experts) + ", but \"" + model.name + "\" mixes " +
                  std::to_string(out.size()) + " experts; set 0 or " + std::to_string(out.size()));
    }
  }
  if (model.num_experts_per_tok > static_cast<int>(out.size())) {
    throw Error(where + ".num_experts_per_tok = " + std::to_string(model.num_experts_per_tok) + ", but \"" + model.name +
                "\" has only " + std::to_string(out.size()) + " experts; expected at most " + std::to_string(out.size()));
  }
  return out;
}

std::vector<double> trunk_weights(const MixModel& model, const std::vector<MixedExpert>& experts,
                                  const std::string& where) {
  if (model.weights.empty()) return std::vector<double>(experts.size(), 1.0);
  std::vector<double> w(experts.size(), 0.0);
  for (const auto& [name, value] : model.weights) {
    const std::string& wanted = name;  // a lambda may not capture a structured binding (Clang 14)
    const auto it = std::find_if(experts.begin(), experts.end(), [&](const MixedExpert& e) { return e.name == wanted; });
    if (it == experts.end()) throw Error(where + ".weights." + name + ": \"" + name + "\" is not one of \"" + model.name + "\"'s experts");
    w[it - experts.begin()] = value;
  }
  double sum = 0;
  for (double v : w) sum += v;
  if (!(sum > 0)) throw Error(where + ".weights: the weights sum to 0; expected a positive sum");
  return w;
}

ModelConfig moe_config(const ModelConfig& dense, const MixModel& model, int num_experts) {
  ModelConfig c = dense;
  c.num_local_experts = num_experts;
  c.num_experts_per_tok = model.num_experts_per_tok;
  c.router_aux_loss_coef = model.router_aux_loss_coef;
  c.moe_routing = model.routing;
  c.moe_aux_loss = model.aux_loss;
  c.moe_capacity_factor = model.capacity_factor;
  return c;
}

std::vector<std::string> mixed_domains(const std::vector<MixedExpert>& experts) {
  std::vector<std::string> out;
  for (const auto& e : experts) {
    for (const auto& d : e.domains) {
      if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(d);
    }
  }
  return out;
}

std::vector<float> assemble_moe_params(const ModelConfig& moe, const ModelFile& trunk,
                                       const std::vector<std::filesystem::path>& expert_files,
                                       const std::vector<std::vector<float>>& routers) {
  const int E = moe.num_local_experts, L = moe.num_hidden_layers;
  const ModelConfig dense = dense_of(moe);
  if (E < 1) throw Error("assemble_moe_params: the MoE configuration has no experts");
  if (trunk.config.architecture_hash() != dense.architecture_hash()) {
    throw Error("mix: the averaged trunk's architecture differs from the MoE's base (" +
                trunk.config.architecture_differences(dense) + ")");
  }
  if (static_cast<int>(expert_files.size()) != E) throw Error("assemble_moe_params: one file per expert is needed");
  if (static_cast<int>(routers.size()) != L) throw Error("assemble_moe_params: one router per layer is needed");
  const ParamLayout out_layout = ParamLayout::llama(moe);
  const ParamLayout dense_layout = ParamLayout::llama(dense);
  std::vector<float> out(out_layout.total(), 0.0f);
  std::vector<char> filled(out_layout.params().size(), 0);
  auto mark = [&](const ParamInfo& p) { filled[&p - out_layout.params().data()] = 1; };

  for (const auto& p : out_layout.params()) {
    const ParamInfo* q = dense_layout.find(p.name);
    if (!q) continue;
    std::copy_n(trunk.params.data() + q->offset, p.numel, out.data() + p.offset);
    mark(p);
  }
  std::vector<h5::File> files;
  for (const auto& f : expert_files) {
    files.push_back(h5::open_for_read(f, "a model file to mix"));
    const ModelConfig c = read_model_config(files.back());
    if (c.architecture_hash() != dense.architecture_hash()) {
      throw Error("mix: " + f.string() + " has another architecture than the mixed model's base (" +
                  c.architecture_differences(dense) + ")");
    }
  }
  const char* pairs[3][2] = {{"w1", "gate_proj"}, {"w3", "up_proj"}, {"w2", "down_proj"}};
  for (int l = 0; l < L; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    const ParamInfo& gate = out_layout.at(prefix + "block_sparse_moe.gate.weight");
    if (routers[l].size() != gate.numel) throw Error("assemble_moe_params: router of layer " + std::to_string(l) + " has the wrong size");
    std::copy(routers[l].begin(), routers[l].end(), out.data() + gate.offset);
    mark(gate);
    for (int e = 0; e < E; ++e) {
      for (const auto& [moe_name, dense_name] : pairs) {
        const ParamInfo& dst = out_layout.at(prefix + "block_sparse_moe.experts." + std::to_string(e) + "." + moe_name + ".weight");
        const ParamInfo& src = dense_layout.at(prefix + "mlp." + dense_name + ".weight");
        if (dst.shape != src.shape) throw Error("mix: " + dst.name + " and " + src.name + " differ in shape");
        files[e].read_into<float>("/params/" + src.name, out.data() + dst.offset, dst.numel);
        mark(dst);
      }
    }
  }
  for (std::size_t i = 0; i < filled.size(); ++i) {
    if (!filled[i]) throw Error("mix: no source for " + out_layout.params()[i].name);
  }
  return out;
}

std::vector<std::vector<float>> centroid_routers(const ModelFile& trunk, const std::vector<MixedExpert>& experts,
                                                 const Dataset& data, Backend& backend, int sequences, int batch,
                                                 const Comm& comm) {
  const ModelConfig& c = trunk.config;
  const int ctx = c.max_position_embeddings, L = c.num_hidden_layers, d = c.hidden_size;
  const int E = static_cast<int>(experts.size());
  Llama model(c, backend);
  model.set_params(trunk.params);
  std::vector<std::vector<float>> routers(L, std::vector<float>(std::size_t(E) * d));
  std::vector<std::int32_t> tokens(std::size_t(batch) * (ctx + 1));
  for (int e = 0; e < E; ++e) {
    data.require(experts[e].domains, "train");
    std::vector<double> sums(std::size_t(L) * d + 1, 0.0);  // [L, d] token sums, then the token count
    const int per_domain = std::max<int>(1, sequences / static_cast<int>(experts[e].domains.size()));
    for (const auto& domain : experts[e].domains) {
      const auto blocks = spaced_blocks(data.num_blocks(domain, "train", ctx), static_cast<std::uint64_t>(per_domain));
      std::vector<std::uint64_t> mine;
      for (std::size_t i = comm.rank(); i < blocks.size(); i += comm.size()) mine.push_back(blocks[i]);
      for (std::size_t i = 0; i < mine.size(); i += batch) {
        const int nb = static_cast<int>(std::min<std::size_t>(batch, mine.size() - i));
        for (int b = 0; b < nb; ++b) data.read_block(domain, "train", mine[i + b], ctx, tokens.data() + std::size_t(b) * (ctx + 1));
        const std::vector<float> means = model.ffn_input_means(tokens.data(), nb, ctx);  // [L, d]
        const double n = double(nb) * ctx;
        for (std::size_t k = 0; k < std::size_t(L) * d; ++k) sums[k] += n * means[k];
        sums.back() += n;
      }
    }
    comm.allreduce_sum(sums.data(), sums.size());
    if (!(sums.back() > 0)) {
      throw Error("mix: router_init = \"centroid\" found no train block of " + std::to_string(ctx + 1) +
                  " tokens for expert \"" + experts[e].name + "\"; use router_init = \"random\"");
    }
    for (int l = 0; l < L; ++l) {
      const double* mean = sums.data() + std::size_t(l) * d;
      double norm = 0;
      for (int k = 0; k < d; ++k) norm += mean[k] * mean[k];
      norm = std::sqrt(norm);
      float* row = routers[l].data() + std::size_t(e) * d;
      for (int k = 0; k < d; ++k) row[k] = static_cast<float>(norm > 0 ? mean[k] / norm : 0.0);
    }
  }
  return routers;
}

std::vector<std::vector<float>> random_routers(const ModelConfig& moe, Backend& backend, std::uint64_t seed) {
  Llama model(moe, backend);
  model.init_weights(seed);
  const std::vector<float> params = model.get_params();
  std::vector<std::vector<float>> routers;
  for (int l = 0; l < moe.num_hidden_layers; ++l) {
    const ParamInfo& gate = model.layout().at("model.layers." + std::to_string(l) + ".block_sparse_moe.gate.weight");
    routers.emplace_back(params.begin() + gate.offset, params.begin() + gate.offset + gate.numel);
  }
  return routers;
}

std::vector<std::string> mixed_expert_names(const std::filesystem::path& mixed_file, int num_experts) {
  if (std::filesystem::exists(mixed_file)) {
    const h5::File f = h5::open_for_read(mixed_file, "a mixed model file");
    if (f.exists("/mix/experts")) {
      std::vector<std::string> names = f.read_strings("/mix/experts");
      if (static_cast<int>(names.size()) == num_experts) return names;
    }
  }
  std::vector<std::string> names;
  for (int e = 0; e < num_experts; ++e) names.push_back(std::to_string(e));
  return names;
}

}  // namespace btm
