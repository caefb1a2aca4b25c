// `btm export MODEL.h5 DIR` and `btm import HF_DIR OUT.h5`: Hugging Face checkpoints
// (model/hf.hpp). The work is done on rank 0; the other ranks wait for it.
#include <iostream>
#include <sstream>

#include "btm/comm.hpp"
#include "btm/error.hpp"
#include "btm/log.hpp"
#include "btm/model/hf.hpp"
#include "btm/model/llama.hpp"
#include "cli/commands.hpp"
#include "config/schema.hpp"

namespace btm {

namespace {

// Positional arguments and --flag value pairs; unknown flags are errors.
struct Parsed {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
};

Parsed parse(const std::string& command, const std::vector<std::string>& args, const std::vector<std::string>& known,
             const std::string& usage) {
  Parsed p;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) == 0) {
      std::string flag = a, value;
      if (auto eq = a.find('='); eq != std::string::npos) {
        flag = a.substr(0, eq);
        value = a.substr(eq + 1);
      } else {
        if (i + 1 >= args.size()) throw Error("btm " + command + ": " + a + " needs a value\nusage: " + usage);
        value = args[++i];
      }
      if (std::find(known.begin(), known.end(), flag) == known.end()) {
        throw Error("btm " + command + ": unknown option " + flag + "\nusage: " + usage);
      }
      p.flags[flag] = value;
    } else {
      p.positional.push_back(a);
    }
  }
  if (p.positional.size() != 2) throw Error("btm " + command + ": expected 2 arguments\nusage: " + usage);
  return p;
}

template <class F>
int on_root_only(F&& work) {
  const Comm world = Comm::world();
  if (world.is_root()) work();
  world.barrier();
  return 0;
}

}  // namespace

int command_export(const std::vector<std::string>& args) {
  const std::string usage = "btm export MODEL.h5 DIR [--dtype fp32|bf16|fp16] [--shard-size SIZE (default 5GB)]";
  const Parsed p = parse("export", args, {"--dtype", "--shard-size"}, usage);
  HfExportOptions options;
  if (auto it = p.flags.find("--dtype"); it != p.flags.end()) {
    if (it->second == "fp32" || it->second == "f32" || it->second == "float32") options.dtype = TensorDtype::f32;
    else if (it->second == "bf16" || it->second == "bfloat16") options.dtype = TensorDtype::bf16;
    else if (it->second == "fp16" || it->second == "f16" || it->second == "float16") options.dtype = TensorDtype::f16;
    else throw Error("btm export: --dtype expects fp32, bf16 or fp16, got '" + it->second + "'");
  }
  if (auto it = p.flags.find("--shard-size"); it != p.flags.end()) {
    try {
      options.shard_bytes = parse_byte_size(it->second);
    } catch (const Error& e) {
      throw Error(std::string("btm export: --shard-size: ") + e.what());
    }
  }
  return on_root_only([&] {
    const auto files = export_hf(p.positional[0], p.positional[1], options);
    std::string list;
    for (const auto& f : files) list += (list.empty() ? "" : ",") + f;
    log_line("export: model=" + p.positional[0] + " dir=" + p.positional[1] + " dtype=" +
             safetensors_dtype_name(options.dtype) + " files=" + list);
  });
}

int command_import(const std::vector<std::string>& args) {
  const std::string usage = "btm import HF_DIR OUT.h5 [--context N]";
  const Parsed p = parse("import", args, {"--context"}, usage);
  HfImportOptions options;
  if (auto it = p.flags.find("--context"); it != p.flags.end()) {
    try {
      std::size_t used = 0;
      options.context = std::stoi(it->second, &used);
      if (used != it->second.size() || options.context < 2) throw std::invalid_argument(it->second);
    } catch (const std::exception&) {
      throw Error("btm import: --context expects an integer >= 2, got '" + it->second + "'");
    }
  }
  return on_root_only([&] {
    const ModelFile m = import_hf(p.positional[0], options);
    save_model(p.positional[1], m);
    const ModelConfig& c = m.config;
    log_line("import: dir=" + p.positional[0] + " out=" + p.positional[1] + " model_type=" + (c.is_moe() ? "mixtral" : "llama") +
             " parameters=" + std::to_string(parameter_count(c)) + " vocab_size=" + std::to_string(c.vocab_size) +
             " context=" + std::to_string(c.max_position_embeddings));
    // The deck lines that branch experts from this model (inputs/README.md, [seed] init).
    std::ostringstream keys;
    // prepare takes the model's tokenizer when data.tokenizer is unset.
    keys << "# deck keys to start from this model:\n[model]\n"
         << "hidden_size = " << c.hidden_size << "\nintermediate_size = " << c.intermediate_size
         << "\nnum_hidden_layers = " << c.num_hidden_layers << "\nnum_attention_heads = " << c.num_attention_heads
         << "\nnum_key_value_heads = " << c.kv_heads() << "\nvocab_size = " << c.vocab_size
         << "\ncontext = " << c.max_position_embeddings << "\nrope_theta = " << deck::toml_float(c.rope_theta)
         << "\nrms_norm_eps = " << deck::toml_float(c.rms_norm_eps) << "\ntie_word_embeddings = " << (c.tie_word_embeddings ? "true" : "false");
    if (c.is_moe()) {
      keys << "\nnum_local_experts = " << c.num_local_experts << "\nnum_experts_per_tok = " << c.num_experts_per_tok
           << "\nmoe_routing = " << deck::toml_quote(c.moe_routing);
    }
    keys << "\n[seed]\ninit = " << deck::toml_quote(p.positional[1]) << "\ntokens = 0\n";
    std::cout << keys.str() << std::flush;
  });
}

}  // namespace btm
