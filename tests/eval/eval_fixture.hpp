#pragma once
// Tiny evaluation fixtures: random Llama models written as model files, a synthetic
// data.h5 and a forest manifest, all small enough for tests that take seconds.
#include <filesystem>
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/forest.hpp"
#include "btm/model/llama.hpp"
#include "btm/model/model_file.hpp"
#include "btm/ops/backend.hpp"
#include "../train/synthetic_data.hpp"

namespace btm::test {

constexpr int kVocab = 40;
constexpr int kContext = 8;

inline ModelConfig eval_config() {
  ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.vocab_size = kVocab;
  c.max_position_embeddings = kContext;
  // Large weights, so that random models disagree clearly (posteriors far from uniform).
  c.initializer_range = 0.6;
  return c;
}

// A random model; deterministic in `seed`.
inline ModelFile random_model(const std::string& name, const std::string& domain, std::uint64_t seed) {
  auto backend = make_backend("cpu");
  ModelFile m;
  m.config = eval_config();
  Llama model(m.config, *backend);
  model.init_weights(seed);
  m.params = model.get_params();
  m.meta = {name, domain.empty() ? "seed" : "experts", "", domain, ""};
  m.tokenizer = {"test", kVocab, 1, 2};
  return m;
}

// Per-token log-probabilities of `model` on `tokens` ([batch, T+1]), as [batch, T] doubles.
inline std::vector<float> token_logp(const ModelFile& m, const std::vector<std::int32_t>& tokens, int batch, int T) {
  auto backend = make_backend("cpu");
  Llama model(m.config, *backend);
  model.set_params(m.params);
  std::vector<float> nll(std::size_t(batch) * T);
  model.token_nll(tokens.data(), batch, T, nll.data());
  for (auto& x : nll) x = -x;
  return nll;
}

struct EvalFixture {
  std::filesystem::path dir;
  std::vector<std::string> experts = {"alpha", "beta", "gamma"};
};

// dir/data.h5 (domains alpha, beta, gamma, delta; 400 tokens per split), dir/seed.h5,
// dir/experts/<alpha|beta|gamma>.h5, dir/forest.h5, dir/averages/uniform.h5 and
// dir/averages/posterior-alpha.h5 (the names the average phase uses). Collective over MPI_COMM_WORLD
// (rank 0 writes).
inline EvalFixture make_eval_fixture(const std::filesystem::path& dir) {
  EvalFixture fx{dir};
  if (Comm::world().is_root()) {
    write_synthetic_data(dir / "data.h5", {"alpha", "beta", "gamma", "delta"}, kVocab, 400, 11);
    save_model(dir / "seed.h5", random_model("seed", "", 100));
    Forest forest = Forest::load(dir / "forest.h5");
    for (std::size_t j = 0; j < fx.experts.size(); ++j) {
      const std::string& name = fx.experts[j];
      ModelFile m = random_model(name, name, 200 + j);
      save_model(dir / "experts" / (name + ".h5"), m);
      forest.add({name, name, "seed", "experts/" + name + ".h5", m.config.architecture_hash(), 1000});
    }
    forest.save(dir / "forest.h5");
    save_model(dir / "averages" / "uniform.h5", random_model("uniform", "", 400));
    save_model(dir / "averages" / "posterior-alpha.h5", random_model("posterior-alpha", "", 401));
  }
  Comm::world().barrier();
  return fx;
}

}  // namespace btm::test
