#include "btm/model/llama.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "btm/error.hpp"

namespace btm {

// One MoE layer's routing and expert activations for up to N tokens (the dispatched block
// holds at most M = N * k token-slots).
struct Llama::MoeLayer {
  DeviceBuffer logits, probs, gate;  // f32 [N,E], [N,E], [N,k]
  DeviceBuffer expert, slot, order;  // int32 [N,k], [N,k], [N*k] (token of each dispatched row)
  DeviceBuffer pu, aux;              // f32 [2,E] (mean probability, mean gate), [1] aux loss
  DeviceBuffer xe, g, u, a, ye;      // compute [M,d], [M,f] x3, [M,d]
  MoeDispatch plan;                  // host: rows per expert of the last forward
  MoeRouteShape shape;               // of the last forward
};

// Everything the backward pass needs, for one (batch, seq) shape. Residual stream states
// are kept as 2L+1 buffers: R[2l] enters layer l, R[2l+1] follows its attention block.
struct Llama::Activations {
  int n = 0;      // rows (batch * seq) allocated for
  int batch = 0;  // lse is [batch, heads, seq]
  int head_rows = 0;  // rows of the logits block (Llama::head_loss)
  DeviceBuffer tokens, targets, nll;           // int32 [N], int32 [N], f32 [N]
  std::vector<DeviceBuffer> residual;          // 2L+1 x [N, d]
  std::vector<DeviceBuffer> h1, q, k, v, o;    // per layer: [N,d], [N,qd], [N,kvd] x2, [N,qd]
  std::vector<DeviceBuffer> h2, g, u, a;       // per layer: [N,d], [N,f] x3
  std::vector<DeviceBuffer> rstd1, rstd2, lse; // per layer f32: [N], [N], [B,H,T]
  DeviceBuffer hf, rstd_f, logits;             // [N,d], f32 [N], [head_rows,V]
  DeviceBuffer dx, dh, dq, dk, dv, dout, da, dg, du;  // backward scratch ([N*k, f] for MoE)
  std::vector<Llama::MoeLayer> moe;            // per layer (MoE models)
  DeviceBuffer dye, dxe, dgate, dlogits;       // MoE backward scratch: [N*k,d] x2, f32 [N,k], [N,E]
};

// KV cache for batch-1 decoding: per layer [max_pos, kvd] keys and values.
struct Llama::Cache {
  std::vector<DeviceBuffer> k, v;
  int rows = 0;  // scratch capacity in tokens
  DeviceBuffer tokens, x, h, q, o, g, u, a, rstd, lse, logits;
  std::unique_ptr<MoeLayer> moe;  // shared by the layers (no backward)
};

void Llama::allocate_moe(MoeLayer& M, int n) const {
  const ModelConfig& c = config_;
  const std::size_t cb = dtype_bytes(backend_.compute_dtype());
  const std::size_t N = n, E = c.num_local_experts, k = c.experts_per_token();
  const std::size_t d = c.hidden_size, f = c.resolved_intermediate_size();
  auto buf = [&](std::size_t elems, std::size_t bytes) { return DeviceBuffer(backend_, elems * bytes); };
  M.logits = buf(N * E, 4);
  M.probs = buf(N * E, 4);
  M.gate = buf(N * k, 4);
  M.expert = buf(N * k, 4);
  M.slot = buf(N * k, 4);
  M.order = buf(N * k, 4);
  M.pu = buf(2 * E, 4);
  M.aux = buf(1, 4);
  M.xe = buf(N * k * d, cb);
  M.g = buf(N * k * f, cb);
  M.u = buf(N * k * f, cb);
  M.a = buf(N * k * f, cb);
  M.ye = buf(N * k * d, cb);
}

Llama::Llama(const ModelConfig& config, Backend& backend)
    : config_(config), layout_(ParamLayout::llama(config)), backend_(backend) {
  if (config_.is_moe() && !backend_.supports_moe()) {
    throw Error("MoE layers are not implemented on the " + backend_.name() + " backend yet; use backend = \"cpu\"");
  }
  const std::size_t n = layout_.total();
  params_ = DeviceBuffer(backend_, n * sizeof(float));
  grads_ = DeviceBuffer(backend_, n * sizeof(float));
  // On fp32 backends the compute copy is the master copy itself.
  if (backend_.compute_dtype() != DType::f32) {
    compute_params_ = DeviceBuffer(backend_, n * dtype_bytes(backend_.compute_dtype()));
  }
  aux_sum_ = DeviceBuffer(backend_, sizeof(float));
  reset_routing_stats();
}

void Llama::reset_routing_stats() {
  const int L = config_.is_moe() ? config_.num_hidden_layers : 0, E = std::max(config_.num_local_experts, 0);
  stats_ = RoutingStats{};
  stats_.layers = L;
  stats_.experts = E;
  stats_.tokens.assign(std::size_t(L) * E, 0.0);
  stats_.gate_sum.assign(std::size_t(L) * E, 0.0);
  stats_.dropped.assign(L, 0);
}

Llama::~Llama() = default;

const void* Llama::weight(std::size_t offset) const {
  if (!compute_params_.get()) return params_.f32() + offset;
  return static_cast<const char*>(compute_params_.get()) + offset * dtype_bytes(backend_.compute_dtype());
}

std::vector<float> Llama::get_params() const {
  std::vector<float> host(layout_.total());
  backend_.copy_to_host(host.data(), params_.get(), host.size() * sizeof(float));
  return host;
}

void Llama::set_params(const std::vector<float>& host) {
  if (host.size() != layout_.total()) throw Error("set_params: wrong parameter count");
  backend_.copy_to_device(params_.get(), host.data(), host.size() * sizeof(float));
  refresh_compute_params();
}

void Llama::refresh_compute_params() {
  if (compute_params_.get()) backend_.to_compute(params_.f32(), compute_params_.get(), layout_.total());
}

void Llama::zero_grads() { backend_.zero(grads_.get(), grads_.bytes()); }

void Llama::init_weights(std::uint64_t seed) {
  std::vector<float> host(layout_.total(), 0.0f);
  std::mt19937_64 rng(seed);
  // Box-Muller on the raw 64-bit stream: the same numbers on every platform, unlike
  // std::normal_distribution.
  auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  auto normal = [&] {
    return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * M_PI * uniform());
  };
  const double std_dev = config_.initializer_range;
  const double residual_std = std_dev / std::sqrt(2.0 * config_.num_hidden_layers);
  for (const auto& p : layout_.params()) {
    float* t = host.data() + p.offset;
    if (!p.is_matrix()) {
      std::fill(t, t + p.numel, 1.0f);
      continue;
    }
    const bool residual = p.name.find("o_proj") != std::string::npos ||
                          p.name.find("down_proj") != std::string::npos ||
                          p.name.ends_with(".w2.weight");  // an MoE expert's down_proj
    const double s = residual ? residual_std : std_dev;
    for (std::size_t i = 0; i < p.numel; ++i) t[i] = static_cast<float>(s * normal());
  }
  set_params(host);
}

Llama::Activations& Llama::activations(int batch, int seq) {
  const int n = batch * seq;
  if (acts_ && acts_->n >= n && acts_->batch >= batch && acts_->n / std::max(acts_->batch, 1) >= seq &&
      acts_->head_rows == head_block_rows(acts_->n)) {
    return *acts_;
  }
  acts_.reset();  // free the old set before allocating a larger one
  auto A = std::make_unique<Activations>();
  A->n = n;
  A->batch = batch;
  A->head_rows = head_block_rows(n);
  const std::size_t cb = dtype_bytes(backend_.compute_dtype());
  const std::size_t d = config_.hidden_size, f = config_.resolved_intermediate_size();
  const std::size_t qd = std::size_t(config_.num_attention_heads) * config_.head_dim();
  const std::size_t kvd = std::size_t(config_.kv_heads()) * config_.head_dim();
  const std::size_t V = config_.vocab_size, L = config_.num_hidden_layers;
  const std::size_t N = n;
  auto buf = [&](std::size_t elems, std::size_t bytes) { return DeviceBuffer(backend_, elems * bytes); };
  A->tokens = buf(N, 4);
  A->targets = buf(N, 4);
  A->nll = buf(N, 4);
  for (std::size_t i = 0; i < 2 * L + 1; ++i) A->residual.push_back(buf(N * d, cb));
  const bool moe = config_.is_moe();
  // Rows of the feed-forward activations: every token-slot of the dispatched block for MoE.
  const std::size_t F = moe ? N * config_.experts_per_token() : N;
  for (std::size_t l = 0; l < L; ++l) {
    A->h1.push_back(buf(N * d, cb));
    A->q.push_back(buf(N * qd, cb));
    A->k.push_back(buf(N * kvd, cb));
    A->v.push_back(buf(N * kvd, cb));
    A->o.push_back(buf(N * qd, cb));
    A->h2.push_back(buf(N * d, cb));
    if (moe) {
      allocate_moe(A->moe.emplace_back(), n);
    } else {
      A->g.push_back(buf(N * f, cb));
      A->u.push_back(buf(N * f, cb));
      A->a.push_back(buf(N * f, cb));
    }
    A->rstd1.push_back(buf(N, 4));
    A->rstd2.push_back(buf(N, 4));
    A->lse.push_back(buf(N * config_.num_attention_heads, 4));
  }
  A->hf = buf(N * d, cb);
  A->rstd_f = buf(N, 4);
  A->logits = buf(std::size_t(A->head_rows) * V, cb);
  A->dx = buf(N * d, cb);
  A->dh = buf(N * d, cb);
  A->dq = buf(N * qd, cb);
  A->dk = buf(N * kvd, cb);
  A->dv = buf(N * kvd, cb);
  A->dout = buf(N * qd, cb);
  A->da = buf(F * f, cb);
  A->dg = buf(F * f, cb);
  A->du = buf(F * f, cb);
  if (moe) {
    A->dye = buf(F * d, cb);
    A->dxe = buf(F * d, cb);
    A->dgate = buf(F, 4);
    A->dlogits = buf(N * config_.num_local_experts, 4);
  }
  acts_ = std::move(A);
  return *acts_;
}

void Llama::forward(const std::int32_t* tokens, int batch, int seq, bool training) {
  Activations& A = activations(batch, seq);
  Backend& be = backend_;
  const ModelConfig& c = config_;
  const int n = batch * seq, d = c.hidden_size, f = c.resolved_intermediate_size();
  const int H = c.num_attention_heads, KV = c.kv_heads(), hd = c.head_dim();
  const int qd = H * hd, kvd = KV * hd, V = c.vocab_size;
  const std::size_t cb = dtype_bytes(be.compute_dtype());
  const float theta = static_cast<float>(c.rope_theta), eps = static_cast<float>(c.rms_norm_eps);

  // Split [batch, seq+1] into inputs and targets (host), then upload.
  std::vector<std::int32_t> in(n), tgt(n);
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < seq; ++t) {
      const std::int32_t x = tokens[std::size_t(b) * (seq + 1) + t];
      if (x < 0 || x >= V) {
        throw Error("input token " + std::to_string(x) + " at batch row " + std::to_string(b) +
                    ", position " + std::to_string(t) + " is outside the vocabulary [0, " +
                    std::to_string(V) + ")");
      }
      const std::int32_t y = tokens[std::size_t(b) * (seq + 1) + t + 1];
      if (y >= V) {
        throw Error("target token " + std::to_string(y) + " at batch row " + std::to_string(b) + ", position " +
                    std::to_string(t + 1) + " is outside the vocabulary [0, " + std::to_string(V) +
                    ") (negative targets mean: ignore this token)");
      }
      in[std::size_t(b) * seq + t] = x;
      tgt[std::size_t(b) * seq + t] = y;
    }
  }
  be.copy_to_device(A.tokens.get(), in.data(), in.size() * 4);
  be.copy_to_device(A.targets.get(), tgt.data(), tgt.size() * 4);

  be.embedding_forward(A.tokens.i32(), weight(layout_.embed()), A.residual[0].get(), n, d);
  const AttentionShape shape{batch, seq, seq, H, KV, hd};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const auto& P = layout_.layer(l);
    void* x = A.residual[2 * l].get();
    void* mid = A.residual[2 * l + 1].get();
    void* out = A.residual[2 * l + 2].get();
    be.rmsnorm_forward(x, params() + P.input_norm, A.h1[l].get(), A.rstd1[l].f32(), n, d, eps);
    be.linear_forward(A.h1[l].get(), weight(P.q), A.q[l].get(), n, d, qd, false);
    be.linear_forward(A.h1[l].get(), weight(P.k), A.k[l].get(), n, d, kvd, false);
    be.linear_forward(A.h1[l].get(), weight(P.v), A.v[l].get(), n, d, kvd, false);
    be.rope(A.q[l].get(), batch, seq, H, hd, 0, theta, false);
    be.rope(A.k[l].get(), batch, seq, KV, hd, 0, theta, false);
    be.attention_forward(A.q[l].get(), A.k[l].get(), A.v[l].get(), A.o[l].get(), A.lse[l].f32(), shape);
    be.copy(mid, x, std::size_t(n) * d * cb);
    be.linear_forward(A.o[l].get(), weight(P.o), mid, n, qd, d, true);
    be.rmsnorm_forward(mid, params() + P.post_norm, A.h2[l].get(), A.rstd2[l].f32(), n, d, eps);
    be.copy(out, mid, std::size_t(n) * d * cb);
    if (c.is_moe()) {
      moe_forward(l, A.h2[l].get(), out, n, A.moe[l], training);
      continue;
    }
    be.linear_forward(A.h2[l].get(), weight(P.gate), A.g[l].get(), n, d, f, false);
    be.linear_forward(A.h2[l].get(), weight(P.up), A.u[l].get(), n, d, f, false);
    be.swiglu_forward(A.g[l].get(), A.u[l].get(), A.a[l].get(), std::size_t(n) * f);
    be.linear_forward(A.a[l].get(), weight(P.down), out, n, f, d, true);
  }
  const int L = c.num_hidden_layers;
  if (c.is_moe()) stats_.routed_tokens += std::uint64_t(n);
  be.rmsnorm_forward(A.residual[2 * L].get(), params() + layout_.final_norm(), A.hf.get(),
                     A.rstd_f.f32(), n, d, eps);
}

int Llama::head_block_rows(int n) const {
  if (head_rows_ > 0) return std::min(head_rows_, std::max(n, 1));
  // At most 256 MiB of logits. Smaller blocks would stay in cache between the GEMM that
  // writes them and those that read their gradient, but every block re-reads (on the cpu
  // backend: re-packs) the whole head weight in its three GEMMs, which costs more than it
  // saves at moderate sizes (bench/RESULTS.md); blocks bound the memory of large batches and
  // vocabularies instead.
  const std::size_t budget = std::size_t(256) << 20;
  const std::size_t row = std::size_t(config_.vocab_size) * dtype_bytes(backend_.compute_dtype());
  return static_cast<int>(std::clamp<std::size_t>(budget / std::max<std::size_t>(row, 1), 1, std::max(n, 1)));
}

void Llama::head_loss(int n, bool backward, float grad_scale) {
  Activations& A = *acts_;
  Backend& be = backend_;
  const int d = config_.hidden_size, V = config_.vocab_size;
  const std::size_t cb = dtype_bytes(be.compute_dtype());
  const void* w = weight(layout_.lm_head());
  for (int r0 = 0; r0 < n; r0 += A.head_rows) {
    const int rows = std::min(A.head_rows, n - r0);
    const void* hf = static_cast<const char*>(A.hf.get()) + std::size_t(r0) * d * cb;  // [rows, d]
    void* dh = static_cast<char*>(A.dh.get()) + std::size_t(r0) * d * cb;              // [rows, d]
    be.linear_forward(hf, w, A.logits.get(), rows, d, V, false);
    // With a gradient the block becomes d(loss)/d(logits) in place.
    be.cross_entropy(A.logits.get(), A.targets.i32() + r0, A.nll.f32() + r0, rows, V, backward ? grad_scale : 0.0f);
    if (!backward) continue;
    if (grad_scale == 0.0f) {  // the logits were left as they are: no gradient flows
      be.zero(dh, std::size_t(rows) * d * cb);
      continue;
    }
    be.linear_backward_weight(A.logits.get(), hf, grads() + layout_.lm_head(), rows, d, V);
    be.linear_backward_input(A.logits.get(), w, dh, rows, d, V, false);
  }
}

std::vector<std::pair<std::size_t, std::size_t>> Llama::gradient_buckets() const {
  const std::size_t L = config_.num_hidden_layers;
  std::vector<std::pair<std::size_t, std::size_t>> out;
  out.emplace_back(layout_.final_norm(), layout_.total() - layout_.final_norm());
  for (std::size_t l = L; l-- > 0;) {
    const std::size_t end = l + 1 < L ? layout_.layer(int(l) + 1).input_norm : layout_.final_norm();
    out.emplace_back(layout_.layer(int(l)).input_norm, end - layout_.layer(int(l)).input_norm);
  }
  const std::size_t first_layer = L > 0 ? layout_.layer(0).input_norm : layout_.final_norm();
  out.emplace_back(0, first_layer);
  return out;
}

void Llama::backward(int batch, int seq, float aux_scale, const std::function<void(int)>& on_final) {
  auto final_bucket = [&, next = 0]() mutable {
    if (on_final) on_final(next++);
  };
  Activations& A = *acts_;
  Backend& be = backend_;
  const ModelConfig& c = config_;
  const int n = batch * seq, d = c.hidden_size, f = c.resolved_intermediate_size();
  const int H = c.num_attention_heads, KV = c.kv_heads(), hd = c.head_dim();
  const int qd = H * hd, kvd = KV * hd, L = c.num_hidden_layers;
  const float theta = static_cast<float>(c.rope_theta);
  float* G = grads();

  // A.dh holds d(loss)/d(hf) and the LM head's gradient is in, from head_loss.
  be.rmsnorm_backward(A.dh.get(), A.residual[2 * L].get(), params() + layout_.final_norm(),
                      A.rstd_f.f32(), A.dx.get(), G + layout_.final_norm(), n, d, false);
  final_bucket();  // final norm, untied head
  const AttentionShape shape{batch, seq, seq, H, KV, hd};
  for (int l = L - 1; l >= 0; --l) {
    const auto& P = layout_.layer(l);
    // Feed-forward block: out = mid + swiglu(h2) W_down^T (or the MoE of h2), h2 = norm(mid).
    if (c.is_moe()) {
      moe_backward(l, A.h2[l].get(), A.dx.get(), A.dh.get(), n, A.moe[l], aux_scale);
    } else {
      be.linear_backward_weight(A.dx.get(), A.a[l].get(), G + P.down, n, f, d);
      be.linear_backward_input(A.dx.get(), weight(P.down), A.da.get(), n, f, d, false);
      be.swiglu_backward(A.da.get(), A.g[l].get(), A.u[l].get(), A.dg.get(), A.du.get(), std::size_t(n) * f);
      be.linear_backward_weight(A.dg.get(), A.h2[l].get(), G + P.gate, n, d, f);
      be.linear_backward_weight(A.du.get(), A.h2[l].get(), G + P.up, n, d, f);
      be.linear_backward_input(A.dg.get(), weight(P.gate), A.dh.get(), n, d, f, false);
      be.linear_backward_input(A.du.get(), weight(P.up), A.dh.get(), n, d, f, true);
    }
    be.rmsnorm_backward(A.dh.get(), A.residual[2 * l + 1].get(), params() + P.post_norm,
                        A.rstd2[l].f32(), A.dx.get(), G + P.post_norm, n, d, true);
    // Attention block: mid = x + attn(norm(x)) W_o^T.
    be.linear_backward_weight(A.dx.get(), A.o[l].get(), G + P.o, n, qd, d);
    be.linear_backward_input(A.dx.get(), weight(P.o), A.dout.get(), n, qd, d, false);
    be.attention_backward(A.dout.get(), A.q[l].get(), A.k[l].get(), A.v[l].get(), A.o[l].get(),
                          A.lse[l].f32(), A.dq.get(), A.dk.get(), A.dv.get(), shape);
    be.rope(A.dq.get(), batch, seq, H, hd, 0, theta, true);
    be.rope(A.dk.get(), batch, seq, KV, hd, 0, theta, true);
    be.linear_backward_weight(A.dq.get(), A.h1[l].get(), G + P.q, n, d, qd);
    be.linear_backward_weight(A.dk.get(), A.h1[l].get(), G + P.k, n, d, kvd);
    be.linear_backward_weight(A.dv.get(), A.h1[l].get(), G + P.v, n, d, kvd);
    be.linear_backward_input(A.dq.get(), weight(P.q), A.dh.get(), n, d, qd, false);
    be.linear_backward_input(A.dk.get(), weight(P.k), A.dh.get(), n, d, kvd, true);
    be.linear_backward_input(A.dv.get(), weight(P.v), A.dh.get(), n, d, kvd, true);
    be.rmsnorm_backward(A.dh.get(), A.residual[2 * l].get(), params() + P.input_norm,
                        A.rstd1[l].f32(), A.dx.get(), G + P.input_norm, n, d, true);
    final_bucket();  // layer l
  }
  be.embedding_backward(A.tokens.i32(), A.dx.get(), G + layout_.embed(), n, d);
  final_bucket();  // embedding (and tied head)
}

std::uint64_t Llama::accumulate_gradients(const std::int32_t* tokens, int batch, int seq, float grad_scale,
                                          const std::function<void(int)>& on_final) {
  forward(tokens, batch, seq, true);
  Activations& A = *acts_;
  const int n = batch * seq;
  head_loss(n, true, grad_scale);
  // This micro-batch's load-balancing loss weighs as its share of the step's tokens.
  const float aux_weight = grad_scale * static_cast<float>(n);
  backward(batch, seq, aux_weight, on_final);
  if (config_.is_moe()) {
    for (auto& M : A.moe) backend_.axpy(static_cast<float>(n), M.aux.f32(), aux_sum_.f32(), 1);
  }
  if (nll_sum_.bytes() < std::size_t(n) * sizeof(float)) {
    // Grow, keeping what earlier micro-batches of this step accumulated.
    DeviceBuffer bigger(backend_, std::size_t(n) * sizeof(float));
    if (nll_rows_ > 0) backend_.copy(bigger.get(), nll_sum_.get(), std::size_t(nll_rows_) * sizeof(float));
    nll_sum_ = std::move(bigger);
  }
  backend_.axpy(1.0f, A.nll.f32(), nll_sum_.f32(), n);
  nll_rows_ = std::max(nll_rows_, n);
  std::uint64_t targets = 0;
  for (int b = 0; b < batch; ++b) {
    for (int t = 1; t <= seq; ++t) targets += tokens[std::size_t(b) * (seq + 1) + t] >= 0;
  }
  return targets;
}

double Llama::take_aux_loss_sum() {
  if (!config_.is_moe()) return 0.0;  // dense: no device read on the step's path
  const double total = backend_.sum(aux_sum_.f32(), 1);
  backend_.zero(aux_sum_.get(), sizeof(float));
  return total;
}

double Llama::take_nll_sum() {
  if (nll_rows_ == 0) return 0.0;
  const double total = backend_.sum(nll_sum_.f32(), nll_rows_);
  backend_.zero(nll_sum_.get(), std::size_t(nll_rows_) * sizeof(float));
  nll_rows_ = 0;
  return total;
}

LossSum Llama::forward_backward(const std::int32_t* tokens, int batch, int seq, float grad_scale) {
  LossSum out;
  take_nll_sum();  // clean accumulators: this call reports its own batch only
  take_aux_loss_sum();
  out.tokens = accumulate_gradients(tokens, batch, seq, grad_scale);
  out.nll = take_nll_sum();
  out.aux = take_aux_loss_sum();
  return out;
}

void Llama::token_nll(const std::int32_t* tokens, int batch, int seq, float* nll) {
  forward(tokens, batch, seq, false);
  Activations& A = *acts_;
  const int n = batch * seq;
  head_loss(n, false, 0.0f);
  backend_.copy_to_host(nll, A.nll.get(), std::size_t(n) * sizeof(float));
}

void Llama::reset_cache() { cache_len_ = 0; }

std::vector<float> Llama::decode(const std::int32_t* tokens, int n) {
  const ModelConfig& c = config_;
  Backend& be = backend_;
  const int d = c.hidden_size, f = c.resolved_intermediate_size();
  const int H = c.num_attention_heads, KV = c.kv_heads(), hd = c.head_dim();
  const int qd = H * hd, kvd = KV * hd, V = c.vocab_size, L = c.num_hidden_layers;
  const int max_pos = c.max_position_embeddings;
  const std::size_t cb = dtype_bytes(be.compute_dtype());
  const float theta = static_cast<float>(c.rope_theta), eps = static_cast<float>(c.rms_norm_eps);
  if (n <= 0) throw Error("decode: no tokens to feed");
  if (cache_len_ + n > max_pos) {
    throw Error("decode: " + std::to_string(cache_len_ + n) + " positions exceed the context of " +
                std::to_string(max_pos));
  }
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V) throw Error("decode: token " + std::to_string(tokens[i]) + " outside the vocabulary");
  }
  if (!cache_) {
    cache_ = std::make_unique<Cache>();
    for (int l = 0; l < L; ++l) {
      cache_->k.emplace_back(be, std::size_t(max_pos) * kvd * cb);
      cache_->v.emplace_back(be, std::size_t(max_pos) * kvd * cb);
    }
  }
  Cache& C = *cache_;
  if (C.rows < n) {
    auto buf = [&](std::size_t elems, std::size_t bytes) { return DeviceBuffer(be, elems * bytes); };
    C.rows = n;
    C.tokens = buf(n, 4);
    C.x = buf(std::size_t(n) * d, cb);
    C.h = buf(std::size_t(n) * d, cb);
    C.q = buf(std::size_t(n) * qd, cb);
    C.o = buf(std::size_t(n) * qd, cb);
    if (c.is_moe()) {
      C.moe = std::make_unique<MoeLayer>();
      allocate_moe(*C.moe, n);
    } else {
      C.g = buf(std::size_t(n) * f, cb);
      C.u = buf(std::size_t(n) * f, cb);
      C.a = buf(std::size_t(n) * f, cb);
    }
    C.rstd = buf(n, 4);
    C.lse = buf(std::size_t(n) * H, 4);
    C.logits = buf(V, cb);
  }
  const int pos0 = cache_len_;
  be.copy_to_device(C.tokens.get(), tokens, std::size_t(n) * 4);
  be.embedding_forward(C.tokens.i32(), weight(layout_.embed()), C.x.get(), n, d);
  const AttentionShape shape{1, n, pos0 + n, H, KV, hd};
  for (int l = 0; l < L; ++l) {
    const auto& P = layout_.layer(l);
    void* k_new = static_cast<char*>(C.k[l].get()) + std::size_t(pos0) * kvd * cb;
    void* v_new = static_cast<char*>(C.v[l].get()) + std::size_t(pos0) * kvd * cb;
    be.rmsnorm_forward(C.x.get(), params() + P.input_norm, C.h.get(), C.rstd.f32(), n, d, eps);
    be.linear_forward(C.h.get(), weight(P.q), C.q.get(), n, d, qd, false);
    be.linear_forward(C.h.get(), weight(P.k), k_new, n, d, kvd, false);
    be.linear_forward(C.h.get(), weight(P.v), v_new, n, d, kvd, false);
    be.rope(C.q.get(), 1, n, H, hd, pos0, theta, false);
    be.rope(k_new, 1, n, KV, hd, pos0, theta, false);
    be.attention_forward(C.q.get(), C.k[l].get(), C.v[l].get(), C.o.get(), C.lse.f32(), shape);
    be.linear_forward(C.o.get(), weight(P.o), C.x.get(), n, qd, d, true);
    be.rmsnorm_forward(C.x.get(), params() + P.post_norm, C.h.get(), C.rstd.f32(), n, d, eps);
    if (c.is_moe()) {
      moe_forward(l, C.h.get(), C.x.get(), n, *C.moe, false);
      continue;
    }
    be.linear_forward(C.h.get(), weight(P.gate), C.g.get(), n, d, f, false);
    be.linear_forward(C.h.get(), weight(P.up), C.u.get(), n, d, f, false);
    be.swiglu_forward(C.g.get(), C.u.get(), C.a.get(), std::size_t(n) * f);
    be.linear_forward(C.a.get(), weight(P.down), C.x.get(), n, f, d, true);
  }
  if (c.is_moe()) stats_.routed_tokens += std::uint64_t(n);
  // Only the last position's logits are needed.
  void* last = static_cast<char*>(C.x.get()) + std::size_t(n - 1) * d * cb;
  be.rmsnorm_forward(last, params() + layout_.final_norm(), C.h.get(), C.rstd.f32(), 1, d, eps);
  be.linear_forward(C.h.get(), weight(layout_.lm_head()), C.logits.get(), 1, d, V, false);
  cache_len_ += n;
  std::vector<float> logits(V);
  if (be.compute_dtype() == DType::f32) {
    be.copy_to_host(logits.data(), C.logits.get(), std::size_t(V) * 4);
  } else {
    DeviceBuffer tmp(be, std::size_t(V) * 4);
    be.to_float(C.logits.get(), tmp.f32(), V);
    be.copy_to_host(logits.data(), tmp.get(), std::size_t(V) * 4);
  }
  return logits;
}

void Llama::moe_forward(int l, const void* h, void* out, int n, MoeLayer& M, bool training) {
  Backend& be = backend_;
  const ModelConfig& c = config_;
  const auto& P = layout_.layer(l);
  const int d = c.hidden_size, f = c.resolved_intermediate_size(), E = c.num_local_experts;
  const std::size_t cb = dtype_bytes(be.compute_dtype());
  MoeRouteShape& s = M.shape;
  s.n = n;
  s.experts = E;
  s.k = c.experts_per_token();
  s.routing = moe_routing_from_name(c.moe_routing);
  s.training = training;
  s.seed = routing_seed_ ^ (0x9e3779b97f4a7c15ull * std::uint64_t(l + 1));
  // Switch capacity applies while training only: evaluation and decoding are dropless.
  s.capacity = s.routing == MoeRouting::switch_top1 && training
                   ? static_cast<int>(std::ceil(c.moe_capacity_factor * n / E))
                   : 0;
  // Router in fp32 on the master weights.
  be.moe_router_forward(h, params() + P.router, M.logits.f32(), n, d, E);
  be.moe_route(M.logits.f32(), M.probs.f32(), M.expert.i32(), M.gate.f32(), s);
  be.moe_plan(M.expert.i32(), M.gate.f32(), M.order.i32(), M.slot.i32(), s, M.plan);
  be.moe_aux_loss(M.probs.f32(), M.expert.i32(), M.gate.f32(), M.pu.f32(), M.aux.f32(), s, aux_form(),
                  static_cast<float>(c.router_aux_loss_coef));
  const int m = M.plan.rows();
  be.moe_dispatch(h, M.order.i32(), M.xe.get(), m, d);
  // Each expert on its own rows only (a grouped GEMM as one call per expert).
  auto at = [&](const DeviceBuffer& b, int row, int width) {
    return static_cast<char*>(b.get()) + std::size_t(row) * width * cb;
  };
  for (int e = 0, r0 = 0; e < E; r0 += M.plan.counts[e], ++e) {
    const int rows = M.plan.counts[e];
    if (rows == 0) continue;
    be.linear_forward(at(M.xe, r0, d), weight(P.experts[e].w1), at(M.g, r0, f), rows, d, f, false);
    be.linear_forward(at(M.xe, r0, d), weight(P.experts[e].w3), at(M.u, r0, f), rows, d, f, false);
  }
  be.swiglu_forward(M.g.get(), M.u.get(), M.a.get(), std::size_t(m) * f);
  for (int e = 0, r0 = 0; e < E; r0 += M.plan.counts[e], ++e) {
    const int rows = M.plan.counts[e];
    if (rows == 0) continue;
    be.linear_forward(at(M.a, r0, f), weight(P.experts[e].w2), at(M.ye, r0, d), rows, f, d, false);
  }
  be.moe_combine(M.ye.get(), M.slot.i32(), M.gate.f32(), out, n, s.k, d);
  for (int e = 0; e < E; ++e) {
    stats_.tokens[std::size_t(l) * E + e] += M.plan.counts[e];
    stats_.gate_sum[std::size_t(l) * E + e] += M.plan.gate_sum[e];
  }
  stats_.dropped[l] += M.plan.dropped;
}

void Llama::moe_backward(int l, const void* h, const void* dy, void* dh, int n, MoeLayer& M, float aux_scale) {
  Backend& be = backend_;
  const ModelConfig& c = config_;
  const auto& P = layout_.layer(l);
  const int d = c.hidden_size, f = c.resolved_intermediate_size(), E = c.num_local_experts;
  const std::size_t cb = dtype_bytes(be.compute_dtype());
  const MoeRouteShape& s = M.shape;
  Activations& A = *acts_;
  float* G = grads();
  const int m = M.plan.rows();
  auto at = [&](const DeviceBuffer& b, int row, int width) {
    return static_cast<char*>(b.get()) + std::size_t(row) * width * cb;
  };
  be.moe_combine_backward(dy, M.ye.get(), M.slot.i32(), M.gate.f32(), A.dye.get(), A.dgate.f32(), n, s.k, d);
  for (int e = 0, r0 = 0; e < E; r0 += M.plan.counts[e], ++e) {
    const int rows = M.plan.counts[e];
    if (rows == 0) continue;
    if (train_experts_) be.linear_backward_weight(at(A.dye, r0, d), at(M.a, r0, f), G + P.experts[e].w2, rows, f, d);
    be.linear_backward_input(at(A.dye, r0, d), weight(P.experts[e].w2), at(A.da, r0, f), rows, f, d, false);
  }
  be.swiglu_backward(A.da.get(), M.g.get(), M.u.get(), A.dg.get(), A.du.get(), std::size_t(m) * f);
  for (int e = 0, r0 = 0; e < E; r0 += M.plan.counts[e], ++e) {
    const int rows = M.plan.counts[e];
    if (rows == 0) continue;
    if (train_experts_) {
      be.linear_backward_weight(at(A.dg, r0, f), at(M.xe, r0, d), G + P.experts[e].w1, rows, d, f);
      be.linear_backward_weight(at(A.du, r0, f), at(M.xe, r0, d), G + P.experts[e].w3, rows, d, f);
    }
    be.linear_backward_input(at(A.dg, r0, f), weight(P.experts[e].w1), at(A.dxe, r0, d), rows, d, f, false);
    be.linear_backward_input(at(A.du, r0, f), weight(P.experts[e].w3), at(A.dxe, r0, d), rows, d, f, true);
  }
  be.moe_dispatch_backward(A.dxe.get(), M.slot.i32(), dh, n, s.k, d, false);
  be.moe_route_backward(A.dgate.f32(), M.probs.f32(), M.expert.i32(), M.gate.f32(), M.pu.f32(), A.dlogits.f32(), s,
                        aux_form(), static_cast<float>(c.router_aux_loss_coef), aux_scale);
  be.moe_router_backward(A.dlogits.f32(), h, params() + P.router, G + P.router, dh, n, d, E);
}

MoeAuxForm Llama::aux_form() const {
  return config_.moe_aux_loss == "switch" ? MoeAuxForm::switch_fraction : MoeAuxForm::btx;
}

std::vector<float> Llama::ffn_input_means(const std::int32_t* tokens, int batch, int seq) {
  forward(tokens, batch, seq, false);
  Activations& A = *acts_;
  const int n = batch * seq, d = config_.hidden_size, L = config_.num_hidden_layers;
  std::vector<float> means(std::size_t(L) * d);
  std::vector<float> host(std::size_t(n) * d);
  DeviceBuffer f32;
  if (backend_.compute_dtype() != DType::f32) f32 = DeviceBuffer(backend_, host.size() * sizeof(float));
  for (int l = 0; l < L; ++l) {
    if (f32.get()) {
      backend_.to_float(A.h2[l].get(), f32.f32(), host.size());
      backend_.copy_to_host(host.data(), f32.get(), host.size() * sizeof(float));
    } else {
      backend_.copy_to_host(host.data(), A.h2[l].get(), host.size() * sizeof(float));
    }
    for (int j = 0; j < d; ++j) {
      double sum = 0;
      for (int i = 0; i < n; ++i) sum += host[std::size_t(i) * d + j];
      means[std::size_t(l) * d + j] = static_cast<float>(sum / std::max(n, 1));
    }
  }
  return means;
}

std::uint64_t parameter_count(const ModelConfig& config) {
  const ParamLayout layout = ParamLayout::llama(config);
  std::uint64_t n = 0;
  for (const auto& p : layout.params()) n += p.numel;
  return n;
}

double training_flops_per_token(const ModelConfig& c, int seq) {
  const double embed = double(c.vocab_size) * c.hidden_size;
  double dense = double(parameter_count(c)) - (c.tie_word_embeddings ? 0.0 : embed);
  // MoE: a token passes through experts_per_token() experts of each layer, not all of them.
  if (c.is_moe()) {
    const double expert = 3.0 * c.hidden_size * double(c.resolved_intermediate_size());
    dense -= double(c.num_hidden_layers) * (c.num_local_experts - c.experts_per_token()) * expert;
  }
  return 6.0 * dense + 12.0 * c.num_hidden_layers * double(seq) * c.hidden_size;
}

}  // namespace btm
