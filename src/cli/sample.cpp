// `btm sample MODEL.h5 --prompt ... --tokens N --temperature T --top-p P --seed S`:
// prints the prompt and its continuation as the model writes it.
#include <climits>
#include <iostream>

#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/model/model_file.hpp"
#include "btm/model/sampler.hpp"
#include "cli/commands.hpp"

namespace btm {

int command_sample(const std::vector<std::string>& args) {
  std::string path, prompt;
  SamplingOptions options;
  std::string backend_name = "cpu";
  auto number = [](const std::string& flag, const std::string& v) {
    try {
      std::size_t used = 0;
      double x = std::stod(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return x;
    } catch (const std::exception&) {
      throw Error("btm sample: " + flag + " expects a number, got '" + v + "'");
    }
  };
  auto integer = [](const std::string& flag, const std::string& v, long long lo, long long hi) {
    try {
      std::size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used != v.size() || x < lo || x > hi) throw std::invalid_argument(v);
      return x;
    } catch (const std::exception&) {
      throw Error("btm sample: " + flag + " expects an integer in " + std::to_string(lo) + ".." + std::to_string(hi) +
                  ", got '" + v + "'");
    }
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw Error("btm sample: " + a + " needs a value");
      return args[++i];
    };
    if (a == "--prompt") prompt = value();
    else if (a == "--tokens") options.max_tokens = static_cast<int>(integer(a, value(), 1, 1'000'000));
    else if (a == "--temperature") options.temperature = number(a, value());
    else if (a == "--top-p") options.top_p = number(a, value());
    else if (a == "--seed") options.seed = static_cast<std::uint64_t>(integer(a, value(), 0, LLONG_MAX));
    else if (a == "--backend") backend_name = value();
    else if (a.rfind("--", 0) == 0) throw Error("btm sample: unknown option " + a);
    else if (path.empty()) path = a;
    else throw Error("btm sample: unexpected argument '" + a + "'");
  }
  if (path.empty()) throw Error("btm sample: missing MODEL.h5");
  if (options.temperature < 0) throw Error("btm sample: --temperature must be >= 0");
  if (!(options.top_p > 0 && options.top_p <= 1)) throw Error("btm sample: --top-p must be in (0, 1]");

  const ModelFile file = load_model(path);
  if (file.tokenizer.model.empty()) throw Error(path + ": the model file holds no tokenizer (/tokenizer/model)");
  const Tokenizer tokenizer(file.tokenizer.model);
  auto backend = make_backend(backend_name);
  Llama model(file.config, *backend);
  model.set_params(file.params);

  // Documents are separated by EOS in training, so EOS is how a document starts.
  std::vector<std::int32_t> ids = {tokenizer.eos_id()};
  for (auto t : tokenizer.encode(prompt)) ids.push_back(t);
  options.stop_token = tokenizer.eos_id();
  options.vocab_limit = tokenizer.vocab_size();
  std::cout << prompt << std::flush;
  std::vector<std::int32_t> generated;
  std::string shown;
  generate(model, ids, options, [&](std::int32_t token) {
    if (token == tokenizer.eos_id()) return;
    // Decode the whole continuation each time: byte-fallback pieces only form characters
    // together, so print just what has become complete text.
    generated.push_back(token);
    const std::string text = tokenizer.decode(generated);
    if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
      std::cout << text.substr(shown.size()) << std::flush;
      shown = text;
    }
  });
  std::cout << "\n";
  return 0;
}

}  // namespace btm
