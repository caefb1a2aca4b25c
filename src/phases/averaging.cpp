#include "btm/averaging.hpp"

#include "btm/error.hpp"
#include "btm/h5.hpp"

namespace btm {

ModelFile average_models(const std::vector<std::filesystem::path>& models, std::vector<double> weights,
                         const ModelMeta& meta) {
  if (models.empty()) throw Error("nothing to average: no models given");
  if (weights.size() != models.size()) throw Error("averaging: one weight per model is needed");
  double total = 0;
  for (double w : weights) {
    if (!(w >= 0)) throw Error("averaging: weights must be non-negative");
    total += w;
  }
  if (!(total > 0)) throw Error("averaging: the weights sum to zero");
  for (double& w : weights) w /= total;

  std::vector<h5::File> files;
  for (const auto& p : models) files.push_back(h5::open_for_read(p, "a model file to average"));
  ModelFile out;
  out.config = read_model_config(files[0]);
  out.meta = meta;
  if (files[0].exists("/tokenizer/model")) out.tokenizer = read_tokenizer(files[0]);
  for (std::size_t j = 1; j < files.size(); ++j) {
    const ModelConfig c = read_model_config(files[j]);
    if (c.architecture_hash() != out.config.architecture_hash()) {
      throw Error("cannot average " + models[j].string() + " with " + models[0].string() +
                  ": their architectures differ");
    }
  }
  const ParamLayout layout = ParamLayout::llama(out.config);
  out.params.assign(layout.total(), 0.0f);
  std::vector<float> tensor;
  std::vector<double> acc;
  for (const auto& p : layout.params()) {
    acc.assign(p.numel, 0.0);
    tensor.resize(p.numel);
    for (std::size_t j = 0; j < files.size(); ++j) {
      files[j].read_into<float>("/params/" + p.name, tensor.data(), p.numel);
      for (std::size_t i = 0; i < p.numel; ++i) acc[i] += weights[j] * tensor[i];
    }
    for (std::size_t i = 0; i < p.numel; ++i) out.params[p.offset + i] = static_cast<float>(acc[i]);
  }
  return out;
}

}  // namespace btm
