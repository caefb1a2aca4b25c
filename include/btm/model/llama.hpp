#pragma once
// The Llama-style decoder, forward and backward written once against btm::Backend.
//
// Owns, on the backend's device: fp32 master parameters, fp32 gradients and the compute
// copy of the parameters (bf16 on GPUs; on the cpu backend it aliases the master copy).
// Optimizer moments live with the optimizer (train/optimizer.hpp), in the same layout.
#include <cstdint>
#include <memory>
#include <vector>

#include "btm/model/param_layout.hpp"
#include "btm/model_config.hpp"
#include "btm/ops/backend.hpp"

namespace btm {

struct LossSum {
  double nll = 0;           // sum of token NLLs (nats)
  std::uint64_t tokens = 0;  // targets counted
};

class Llama {
 public:
  Llama(const ModelConfig& config, Backend& backend);
  ~Llama();
  Llama(const Llama&) = delete;
  Llama& operator=(const Llama&) = delete;

  const ModelConfig& config() const { return config_; }
  const ParamLayout& layout() const { return layout_; }
  Backend& backend() const { return backend_; }

  float* params() const { return params_.f32(); }  // device [layout().total()]
  float* grads() const { return grads_.f32(); }    // device [layout().total()]
  // Host <-> device copies of the whole parameter buffer; set_params refreshes the compute copy.
  std::vector<float> get_params() const;
  void set_params(const std::vector<float>& host);
  // After the master weights change on the device (optimizer step, averaging).
  void refresh_compute_params();
  void zero_grads();

  // Initialisation: normal(0, initializer_range) for matrices, the residual projections
  // (o_proj, down_proj) scaled by 1/sqrt(2 * layers), norm weights 1. Deterministic in `seed`.
  void init_weights(std::uint64_t seed);

  // tokens: host int32 [batch, seq+1]; inputs are [:, :-1], targets [:, 1:] (< 0: ignored).
  // Adds grad_scale * d(sum of NLL)/d(params) into grads(). Returns the NLL sum over targets.
  LossSum forward_backward(const std::int32_t* tokens, int batch, int seq, float grad_scale);
  // The same without waiting for the device: the NLL stays in a device accumulator that
  // take_nll_sum() reads (one synchronisation per optimizer step, not per micro-batch).
  // Returns the number of targets counted.
  std::uint64_t accumulate_gradients(const std::int32_t* tokens, int batch, int seq, float grad_scale);
  double take_nll_sum();
  // Per-token NLL, host [batch, seq] (0 for ignored targets). No gradients.
  void token_nll(const std::int32_t* tokens, int batch, int seq, float* nll);

  // Incremental decoding with a KV cache (batch 1): feeds `n` tokens at the current position
  // and returns the logits of the last one (host, [vocab]). reset_cache() starts over.
  std::vector<float> decode(const std::int32_t* tokens, int n);
  void reset_cache();
  int cache_length() const { return cache_len_; }

 private:
  struct Activations;
  struct Cache;
  Activations& activations(int batch, int seq);
  void forward(const std::int32_t* tokens, int batch, int seq);
  void backward(int batch, int seq);
  // compute-dtype pointer of the tensor at `offset` (elements) of the layout
  const void* weight(std::size_t offset) const;

  ModelConfig config_;
  ParamLayout layout_;
  Backend& backend_;
  DeviceBuffer params_, grads_, compute_params_;
  DeviceBuffer nll_sum_;  // f32 [rows]: per-position NLL summed over micro-batches
  int nll_rows_ = 0;      // rows of nll_sum_ written since the last take_nll_sum()
  std::unique_ptr<Activations> acts_;
  std::unique_ptr<Cache> cache_;
  int cache_len_ = 0;
};

// FLOPs of one training token (forward + backward), the PaLM appendix B formula:
// 6 * (parameters excluding the embedding lookup) + 12 * layers * seq * hidden
// (attention scores and values; the causal half is not discounted).
double training_flops_per_token(const ModelConfig& config, int seq);
std::uint64_t parameter_count(const ModelConfig& config);

}  // namespace btm
