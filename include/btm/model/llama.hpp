#pragma once
// The Llama-style decoder, forward and backward written once against btm::Backend.
//
// Owns, on the backend's device: fp32 master parameters, fp32 gradients and the compute
// copy of the parameters (bf16 on GPUs; on the cpu backend it aliases the master copy).
// Optimizer moments live with the optimizer (train/optimizer.hpp), in the same layout.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "btm/model/param_layout.hpp"
#include "btm/model_config.hpp"
#include "btm/ops/backend.hpp"

namespace btm {

struct LossSum {
  double nll = 0;           // sum of token NLLs (nats)
  std::uint64_t tokens = 0;  // targets counted
  double aux = 0;           // MoE: load-balancing loss, token-weighted sum (see take_aux_loss_sum)
};

// MoE routing counts, accumulated over every forward pass (training, token_nll, decode)
// until reset_routing_stats(). Dense models: layers = experts = 0.
struct RoutingStats {
  int layers = 0, experts = 0;
  std::vector<double> tokens;    // [L, E] token-slots dispatched to each expert
  std::vector<double> gate_sum;  // [L, E] sum of their post-top-k gates
  std::uint64_t routed_tokens = 0;    // token rows routed per layer (each layer sees them all)
  std::vector<std::uint64_t> dropped;  // [L] token-slots dropped over capacity (switch routing)
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
  // MoE models add to the objective, per layer, the load-balancing loss of the micro-batch
  // weighted by grad_scale * batch * seq (its share of the step's tokens: the step's
  // objective is mean NLL + the token-weighted mean over micro-batches of sum_l aux_l).
  LossSum forward_backward(const std::int32_t* tokens, int batch, int seq, float grad_scale);
  // The same without waiting for the device: the NLL stays in a device accumulator that
  // take_nll_sum() reads (one synchronisation per optimizer step, not per micro-batch).
  // Returns the number of targets counted.
  // `on_final(i)`, when given, is called as soon as gradient_buckets()[i] holds its final
  // value for this micro-batch, for i = 0, 1, ... in order (the gradient allreduce of the last
  // micro-batch starts there, overlapping the rest of its backward pass).
  std::uint64_t accumulate_gradients(const std::int32_t* tokens, int batch, int seq, float grad_scale,
                                     const std::function<void(int)>& on_final = {});
  // Contiguous ranges {offset, count} of grads() that together cover it, in the order the
  // backward pass finishes them: the final norm (and untied head), the layers last to
  // first, then the embedding (which, tied, is also the head).
  std::vector<std::pair<std::size_t, std::size_t>> gradient_buckets() const;
  double take_nll_sum();
  // MoE: sum over the micro-batches since the last call of (batch * seq) * sum over layers of
  // their load-balancing loss; divided by the tokens it is the loss term the gradients
  // include. 0 for dense models. NLL sums never include it.
  double take_aux_loss_sum();
  // Per-token NLL, host [batch, seq] (0 for ignored targets). No gradients.
  void token_nll(const std::int32_t* tokens, int batch, int seq, float* nll);

  // Rows of logits that exist at a time: the LM head and the cross-entropy run in blocks of
  // this many token rows, so no more than [rows, vocab] logits are ever stored. 0 (the
  // default) allows up to 256 MiB of logits. The results do not depend on it beyond float
  // rounding of the head's weight gradient (summed block by block).
  void set_head_rows(int rows) { head_rows_ = std::max(rows, 0); }

  // Incremental decoding with a KV cache (batch 1): feeds `n` tokens at the current position
  // and returns the logits of the last one (host, [vocab]). reset_cache() starts over.
  std::vector<float> decode(const std::int32_t* tokens, int n);
  void reset_cache();
  int cache_length() const { return cache_len_; }

  // ---- mixture of experts ---------------------------------------------------------------
  const RoutingStats& routing_stats() const { return stats_; }
  void reset_routing_stats();
  // sample_top1 noise of the next forward passes (layer l uses a hash of (seed, l)).
  void set_routing_seed(std::uint64_t seed) { routing_seed_ = seed; }
  // false: expert FFN weight gradients are not computed at all (they stay as zero_grads()
  // left them); the router and every other parameter still train.
  void set_train_experts(bool train) { train_experts_ = train; }
  bool train_experts() const { return train_experts_; }
  // Host [L, d]: the mean over all batch*seq input positions of each layer's FFN input
  // (post_attention_layernorm output). tokens as for token_nll, [batch, seq+1]. Dense or MoE.
  std::vector<float> ffn_input_means(const std::int32_t* tokens, int batch, int seq);

 private:
  struct Activations;
  struct Cache;
  Activations& activations(int batch, int seq);
  struct MoeLayer;
  void allocate_moe(MoeLayer& M, int n) const;
  MoeAuxForm aux_form() const;
  void forward(const std::int32_t* tokens, int batch, int seq, bool training);
  // From the final norm's output: the LM head and cross-entropy block by block (nll of every
  // row; with `backward`, the head's weight gradient and d(loss)/d(hf) into the scratch dh).
  void head_loss(int n, bool backward, float grad_scale);
  int head_block_rows(int n) const;
  // From d(loss)/d(hf) (head_loss) down to the embedding.
  void backward(int batch, int seq, float aux_scale, const std::function<void(int)>& on_final);
  // The MoE feed-forward block of layer l: out[n,d] += moe(h[n,d]).
  void moe_forward(int l, const void* h, void* out, int n, MoeLayer& M, bool training);
  // From dy[n,d] (gradient of the block's output): expert and router gradients, and
  // dh[n,d] = the gradient w.r.t. its input h. aux_scale weighs the load-balancing loss.
  void moe_backward(int l, const void* h, const void* dy, void* dh, int n, MoeLayer& M, float aux_scale);
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
  DeviceBuffer aux_sum_;  // f32 [1]: token-weighted load-balancing loss since take_aux_loss_sum()
  RoutingStats stats_;
  std::uint64_t routing_seed_ = 0;
  bool train_experts_ = true;
  int head_rows_ = 0;
};

// FLOPs of one training token (forward + backward), the PaLM appendix B formula:
// 6 * (parameters excluding the embedding lookup) + 12 * layers * seq * hidden
// (attention scores and values; the causal half is not discounted).
// MoE models count the router and only the experts a token is routed to.
double training_flops_per_token(const ModelConfig& config, int seq);
std::uint64_t parameter_count(const ModelConfig& config);

}  // namespace btm
