#include "backend/cuda/cudnn_attention.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_memory.hpp"
#include "btm/error.hpp"

namespace btm::gpu {

namespace cudnn_detail {

using Dims = std::array<std::int64_t, 4>;

// Sets one attribute; a failure names the attribute.
#define BTM_CUDNN_SET(desc, name, type, count, values) \
  ::btm::gpu::check_cudnn(cudnnBackendSetAttribute((desc), (name), (type), (count), (values)), #name, __FILE__, __LINE__)

// Owns one backend descriptor. Other descriptors refer to it by its raw handle, so it must
// outlive them: graphs keep every descriptor they were built from.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) { BTM_CUDNN(cudnnBackendCreateDescriptor(type, &d_)); }
  ~Desc() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(Desc&& other) noexcept : d_(std::exchange(other.d_, nullptr)) {}
  Desc& operator=(Desc&&) = delete;
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;

  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

void finalize(const Desc& d, const char* what) {
  ::btm::gpu::check_cudnn(cudnnBackendFinalize(d.get()), what, __FILE__, __LINE__);
}

// Builds the operation list of one graph. Virtual tensors get fresh uids from 1000 on.
class GraphBuilder {
 public:
  explicit GraphBuilder(std::vector<Desc>& keep) : keep_(&keep) {}

  cudnnBackendDescriptor_t tensor(std::int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
                                  bool is_virtual, bool by_value = false) {
    Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const std::int64_t alignment = 16;
    BTM_CUDNN_SET(t.get(), CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    BTM_CUDNN_SET(t.get(), CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data());
    BTM_CUDNN_SET(t.get(), CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data());
    BTM_CUDNN_SET(t.get(), CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    BTM_CUDNN_SET(t.get(), CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
    BTM_CUDNN_SET(t.get(), CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value) BTM_CUDNN_SET(t.get(), CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    finalize(t, "tensor descriptor");
    return keep(std::move(t));
  }

  cudnnBackendDescriptor_t virt(cudnnDataType_t type, const Dims& dims, const Dims& strides) {
    return tensor(next_uid_++, type, dims, strides, true);
  }

  // y = mode(x [, b] [, t]); `axis` only for GEN_INDEX.
  void pointwise(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                 cudnnBackendDescriptor_t t, cudnnBackendDescriptor_t y, cudnnDataType_t compute = CUDNN_DATA_FLOAT,
                 std::int64_t axis = -1) {
    Desc pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    BTM_CUDNN_SET(pw.get(), CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    BTM_CUDNN_SET(pw.get(), CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    if (axis >= 0) BTM_CUDNN_SET(pw.get(), CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    finalize(pw, "pointwise descriptor");
    cudnnBackendDescriptor_t pw_raw = keep(std::move(pw));

    Desc op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    const float one = 1.0f;
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw_raw);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (b) BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    if (t) BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
    finalize(op, "pointwise operation");
    ops_.push_back(keep(std::move(op)));
  }

  // c = a b over the last two dims, batch dims broadcast (grouped KV heads).
  void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    Desc mm(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    BTM_CUDNN_SET(mm.get(), CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    finalize(mm, "matmul descriptor");
    cudnnBackendDescriptor_t mm_raw = keep(std::move(mm));

    Desc op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm_raw);
    finalize(op, "matmul operation");
    ops_.push_back(keep(std::move(op)));
  }

  // y = reduce(x) over the dims where y has extent 1 (or a divisor: KV-group sums).
  void reduction(cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    Desc red(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    BTM_CUDNN_SET(red.get(), CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    BTM_CUDNN_SET(red.get(), CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    finalize(red, "reduction descriptor");
    cudnnBackendDescriptor_t red_raw = keep(std::move(red));

    Desc op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &red_raw);
    finalize(op, "reduction operation");
    ops_.push_back(keep(std::move(op)));
  }

  // y = x viewed with other dims/strides (a transpose, for the backward matmuls).
  void reshape(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    Desc op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    BTM_CUDNN_SET(op.get(), CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    finalize(op, "reshape operation");
    ops_.push_back(keep(std::move(op)));
  }

  const std::vector<cudnnBackendDescriptor_t>& ops() const { return ops_; }

  cudnnBackendDescriptor_t keep(Desc&& d) {
    keep_->push_back(std::move(d));
    return keep_->back().get();
  }

 private:
  std::vector<Desc>* keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  std::int64_t next_uid_ = 1000;
};

// Unique ids of the tensors the caller binds (the variant pack).
enum Uid : std::int64_t {
  kQ = 1, kK, kV, kO, kStats, kDout, kDq, kDk, kDv, kScale, kOne, kNegInf, kSoftmaxSum, kDqAccum
};

}  // namespace cudnn_detail

using namespace cudnn_detail;

// One cached graph: its descriptors, execution plan and the host scalars bound by value.
struct CudnnAttention::Entry {
  bool ok = false;
  std::string why;  // when !ok
  std::vector<Desc> keep;
  cudnnBackendDescriptor_t plan = nullptr;
  std::int64_t workspace = 0;
  std::vector<std::int64_t> uids;  // variant-pack order
  float scale = 0.f;
  float one = 1.0f;
  float neg_inf = -std::numeric_limits<float>::infinity();
};

namespace {

constexpr cudnnDataType_t kF32 = CUDNN_DATA_FLOAT;
constexpr cudnnDataType_t kBf16 = CUDNN_DATA_BFLOAT16;

// Keeps scores where row >= col (causal, Tq == Tk) and puts -inf elsewhere, as
// cudnn-frontend's composite diagonal-band mask with right bound 0.
cudnnBackendDescriptor_t causal_mask(GraphBuilder& g, cudnnBackendDescriptor_t scores,
                                     cudnnBackendDescriptor_t neg_inf, const Dims& dims, const Dims& strides) {
  auto row = g.virt(CUDNN_DATA_INT32, dims, strides);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scores, nullptr, nullptr, row, kF32, 2);
  auto col = g.virt(CUDNN_DATA_INT32, dims, strides);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, scores, nullptr, nullptr, col, kF32, 3);
  auto keep = g.virt(CUDNN_DATA_BOOLEAN, dims, strides);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, col, nullptr, keep, CUDNN_DATA_BOOLEAN);
  auto masked = g.virt(kF32, dims, strides);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, scores, neg_inf, keep, masked);
  return masked;
}

// Finalizes the operation graph and the first execution plan the heuristics offer that
// finalizes; throws btm::Error when there is none.
void make_plan(cudnnHandle_t handle, GraphBuilder& g, CudnnAttention::Entry& e) {
  Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  BTM_CUDNN_SET(graph.get(), CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  BTM_CUDNN_SET(graph.get(), CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                std::int64_t(g.ops().size()), g.ops().data());
  finalize(graph, "operation graph");
  cudnnBackendDescriptor_t graph_raw = g.keep(std::move(graph));

  std::string tried;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    BTM_CUDNN_SET(heur.get(), CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph_raw);
    BTM_CUDNN_SET(heur.get(), CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    if (cudnnBackendFinalize(heur.get()) != CUDNN_STATUS_SUCCESS) continue;
    std::int64_t count = 0;
    BTM_CUDNN(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                       &count, nullptr));
    if (count <= 0) continue;
    // The caller creates the descriptors the results are written into.
    std::vector<Desc> configs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (std::int64_t i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(configs.back().get());
    }
    std::int64_t returned = 0;
    BTM_CUDNN(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                       count, &returned, raw.data()));
    for (std::int64_t i = 0; i < returned && i < count; ++i) {
      Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      BTM_CUDNN_SET(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
      BTM_CUDNN_SET(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw[i]);
      const cudnnStatus_t status = cudnnBackendFinalize(plan.get());
      if (status != CUDNN_STATUS_SUCCESS) {
        tried += std::string(tried.empty() ? "" : "; ") + cudnnGetErrorString(status);
        continue;
      }
      std::int64_t workspace = 0;
      std::int64_t got = 0;
      BTM_CUDNN(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                         &got, &workspace));
      e.workspace = workspace;
      e.plan = g.keep(std::move(plan));
      for (auto& c : configs) g.keep(std::move(c));
      g.keep(std::move(heur));
      e.ok = true;
      return;
    }
  }
  throw Error("cuDNN offers no execution plan for this attention graph" +
              (tried.empty() ? std::string() : " (engine configs failed: " + tried + ")"));
}

float negative_infinity_for_mask() {
  // cudnn-frontend: cuDNN before 9.10 wants the lowest finite float as the mask value.
  return cudnnGetVersion() < 91000 ? std::numeric_limits<float>::lowest() : -std::numeric_limits<float>::infinity();
}

// Dims and strides of btm's token-major buffers, seen as [B, heads, T, hd].
struct Layout {
  std::int64_t b, h, kv, t, d;
  Dims q_dims() const { return {b, h, t, d}; }
  Dims q_strides() const { return {t * h * d, d, h * d, 1}; }
  Dims kv_dims() const { return {b, kv, t, d}; }
  Dims kv_strides() const { return {t * kv * d, d, kv * d, 1}; }
  // K^T (and V^T) as a [B, KV, hd, T] view of the same memory.
  Dims kvt_dims() const { return {b, kv, d, t}; }
  Dims kvt_strides() const { return {t * kv * d, d, 1, kv * d}; }
  Dims score_dims() const { return {b, h, t, t}; }
  Dims score_strides() const { return {h * t * t, t * t, t, 1}; }
  Dims score_t_strides() const { return {h * t * t, t * t, 1, t}; }  // the [.., T_k, T_q] transpose
  Dims row_dims() const { return {b, h, t, 1}; }
  Dims row_strides() const { return {h * t, t, 1, 1}; }
};

Layout layout_of(const AttentionShape& s) {
  return {s.batch, s.heads, s.kv_heads, s.q_len, s.head_dim};
}

std::unique_ptr<CudnnAttention::Entry> build_forward(cudnnHandle_t handle, const AttentionShape& s) {
  auto e = std::make_unique<CudnnAttention::Entry>();
  e->scale = float(1.0 / std::sqrt(double(s.head_dim)));
  e->neg_inf = negative_infinity_for_mask();
  const Layout L = layout_of(s);
  GraphBuilder g(e->keep);

  auto q = g.tensor(kQ, kBf16, L.q_dims(), L.q_strides(), false);
  auto kt = g.tensor(kK, kBf16, L.kvt_dims(), L.kvt_strides(), false);
  auto v = g.tensor(kV, kBf16, L.kv_dims(), L.kv_strides(), false);
  auto o = g.tensor(kO, kBf16, L.q_dims(), L.q_strides(), false);
  auto stats = g.tensor(kStats, kF32, L.row_dims(), L.row_strides(), false);
  const Dims scalar{1, 1, 1, 1};
  auto scale = g.tensor(kScale, kF32, scalar, scalar, false, true);
  auto neg_inf = g.tensor(kNegInf, kF32, scalar, scalar, false, true);

  const Dims sd = L.score_dims(), ss = L.score_strides(), rd = L.row_dims(), rs = L.row_strides();
  auto scores = g.virt(kF32, sd, ss);
  g.matmul(q, kt, scores);
  auto scaled = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_MUL, scores, scale, nullptr, scaled);
  auto masked = causal_mask(g, scaled, neg_inf, sd, ss);
  // softmax with statistics: stats = max + log(sum(exp(x - max))).
  auto row_max = g.virt(kF32, rd, rs);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, masked, row_max);
  auto shifted = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_SUB, masked, row_max, nullptr, shifted);
  auto exps = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, nullptr, exps);
  auto row_sum = g.virt(kF32, rd, rs);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, exps, row_sum);
  auto log_sum = g.virt(kF32, rd, rs);
  g.pointwise(CUDNN_POINTWISE_LOG, row_sum, nullptr, nullptr, log_sum);
  g.pointwise(CUDNN_POINTWISE_ADD, row_max, log_sum, nullptr, stats);
  auto probs = g.virt(kBf16, sd, ss);  // the second matmul takes P in the I/O type
  g.pointwise(CUDNN_POINTWISE_DIV, exps, row_sum, nullptr, probs);
  g.matmul(probs, v, o);

  e->uids = {kQ, kK, kV, kO, kStats, kScale, kNegInf};
  make_plan(handle, g, *e);
  return e;
}

std::unique_ptr<CudnnAttention::Entry> build_backward(cudnnHandle_t handle, const AttentionShape& s) {
  auto e = std::make_unique<CudnnAttention::Entry>();
  e->scale = float(1.0 / std::sqrt(double(s.head_dim)));
  e->neg_inf = negative_infinity_for_mask();
  const Layout L = layout_of(s);
  GraphBuilder g(e->keep);

  auto q = g.tensor(kQ, kBf16, L.q_dims(), L.q_strides(), false);
  auto kt = g.tensor(kK, kBf16, L.kvt_dims(), L.kvt_strides(), false);
  auto vt = g.tensor(kV, kBf16, L.kvt_dims(), L.kvt_strides(), false);
  auto o = g.tensor(kO, kBf16, L.q_dims(), L.q_strides(), false);
  auto dout = g.tensor(kDout, kBf16, L.q_dims(), L.q_strides(), false);
  auto stats = g.tensor(kStats, kF32, L.row_dims(), L.row_strides(), false);
  auto dq = g.tensor(kDq, kBf16, L.q_dims(), L.q_strides(), false);
  auto dk = g.tensor(kDk, kBf16, L.kv_dims(), L.kv_strides(), false);
  auto dv = g.tensor(kDv, kBf16, L.kv_dims(), L.kv_strides(), false);
  const Dims scalar{1, 1, 1, 1};
  auto scale = g.tensor(kScale, kF32, scalar, scalar, false, true);
  auto one = g.tensor(kOne, kF32, scalar, scalar, false, true);
  auto neg_inf = g.tensor(kNegInf, kF32, scalar, scalar, false, true);
  // Graph-owned fp32 buffers in device memory we provide: sum(dO*O) per row and the dQ accumulator.
  auto softmax_sum = g.tensor(kSoftmaxSum, kF32, L.row_dims(), L.row_strides(), false);
  const Dims bhsd{L.b, L.h, L.t, L.d};
  const Dims bhsd_packed{L.h * L.t * L.d, L.t * L.d, L.d, 1};
  auto dq_accum = g.tensor(kDqAccum, kF32, bhsd, bhsd_packed, false);

  const Dims sd = L.score_dims(), ss = L.score_strides(), rd = L.row_dims(), rs = L.row_strides();

  // softmax_sum = sum_d dO * O
  auto prod = g.virt(kF32, bhsd, {L.h * L.t * L.d, L.t * L.d, L.h * L.d, 1});
  g.pointwise(CUDNN_POINTWISE_MUL, dout, o, nullptr, prod);
  auto prod_sum = g.virt(kF32, rd, rs);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, prod, prod_sum);
  g.pointwise(CUDNN_POINTWISE_MUL, prod_sum, one, nullptr, softmax_sum);

  // P = exp(scale * Q K^T - stats), causal
  auto scores = g.virt(kF32, sd, ss);
  g.matmul(q, kt, scores);
  auto scaled = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_MUL, scores, scale, nullptr, scaled);
  auto centred = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_SUB, scaled, stats, nullptr, centred);
  auto masked = causal_mask(g, centred, neg_inf, sd, ss);
  auto probs = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_EXP, masked, nullptr, nullptr, probs);

  // dV = P^T dO (summed over the query heads of a KV group)
  auto probs_t = g.virt(kBf16, sd, L.score_t_strides());
  g.reshape(probs, probs_t);
  const bool grouped = s.heads != s.kv_heads;
  const Dims full_head_kv{L.b, L.h, L.t, L.d};
  if (!grouped) {
    g.matmul(probs_t, dout, dv);
  } else {
    auto dv_full = g.virt(kBf16, full_head_kv, bhsd_packed);
    g.matmul(probs_t, dout, dv_full);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, dv_full, dv);
  }

  // dS = scale * P * (dO V^T - softmax_sum)
  auto dp = g.virt(kF32, sd, ss);
  g.matmul(dout, vt, dp);
  auto dp_centred = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_SUB, dp, softmax_sum, nullptr, dp_centred);
  auto ds_unscaled = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_MUL, dp_centred, probs, nullptr, ds_unscaled);
  auto ds = g.virt(kF32, sd, ss);
  g.pointwise(CUDNN_POINTWISE_MUL, ds_unscaled, scale, nullptr, ds);

  // dK = dS^T Q
  auto ds_t = g.virt(kBf16, sd, L.score_t_strides());
  g.reshape(ds, ds_t);
  if (!grouped) {
    g.matmul(ds_t, q, dk);
  } else {
    auto dk_full = g.virt(kBf16, full_head_kv, bhsd_packed);
    g.matmul(ds_t, q, dk_full);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, dk_full, dk);
  }

  // dQ = dS K, accumulated in fp32 and converted
  auto k_rows = g.virt(kF32, L.kv_dims(), L.kv_strides());
  g.reshape(kt, k_rows);
  g.matmul(ds, k_rows, dq_accum);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, dq_accum, nullptr, nullptr, dq);

  e->uids = {kQ, kK, kV, kO, kDout, kStats, kDq, kDk, kDv, kSoftmaxSum, kDqAccum, kScale, kOne, kNegInf};
  make_plan(handle, g, *e);
  return e;
}

void execute(cudnnHandle_t handle, const CudnnAttention::Entry& e, const std::vector<void*>& pointers,
             void* workspace) {
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  BTM_CUDNN_SET(pack.get(), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, std::int64_t(e.uids.size()),
                e.uids.data());
  BTM_CUDNN_SET(pack.get(), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                std::int64_t(pointers.size()), pointers.data());
  BTM_CUDNN_SET(pack.get(), CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  finalize(pack, "variant pack");
  BTM_CUDNN(cudnnBackendExecute(handle, e.plan, pack.get()));
}

bool misaligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 != 0; }

}  // namespace

CudnnAttention::CudnnAttention(cudaStream_t stream, Scratch& scratch) : stream_(stream), scratch_(&scratch) {
  BTM_CUDNN(cudnnCreate(&handle_));
  try {
    BTM_CUDNN(cudnnSetStream(handle_, stream_));
  } catch (...) {
    cudnnDestroy(handle_);
    throw;
  }
}

CudnnAttention::~CudnnAttention() {
  forward_.clear();
  backward_.clear();
  if (handle_) cudnnDestroy(handle_);
}

std::string CudnnAttention::unsupported_reason(const AttentionShape& s, const void* const* pointers, int count) {
  if (s.q_len != s.kv_len) return "q_len != kv_len (KV-cache decode)";
  if (s.head_dim % 8 != 0) return "head_dim " + std::to_string(s.head_dim) + " is not a multiple of 8";
  if (s.head_dim > 128) return "head_dim " + std::to_string(s.head_dim) + " > 128";
  for (int i = 0; i < count; ++i)
    if (misaligned(pointers[i])) return "a tensor is not 16-byte aligned";
  const std::size_t version = cudnnGetVersion();
  if (version < 90000) return "cuDNN " + std::to_string(version) + " is older than 9.0";
  if (version == 91000 || version == 91001) return "cuDNN 9.10.0/9.10.1 have known attention bugs";
  // cudnn-frontend pads the backward of older cuDNN when the sequence is not a multiple of 128.
  if (version < 91600 && s.kv_len % 128 != 0) return "cuDNN < 9.16 needs the sequence length to be a multiple of 128";
  return {};
}

CudnnAttention::Entry& CudnnAttention::entry(std::map<Key, std::unique_ptr<Entry>>& cache, const AttentionShape& s,
                                             bool backward) {
  const Key key{s.batch, s.q_len, s.heads, s.kv_heads, s.head_dim};
  auto found = cache.find(key);
  if (found != cache.end()) return *found->second;
  std::unique_ptr<Entry> e;
  try {
    e = backward ? build_backward(handle_, s) : build_forward(handle_, s);
  } catch (const Error& error) {
    // Remembered, so that a shape cuDNN cannot do is not rebuilt at every step.
    e = std::make_unique<Entry>();
    e->ok = false;
    e->why = error.what();
  }
  return *cache.emplace(key, std::move(e)).first->second;
}

bool CudnnAttention::forward(const void* q, const void* k, const void* v, void* o, float* lse,
                             const AttentionShape& s, std::string* why) {
  Entry& e = entry(forward_, s, false);
  if (!e.ok) {
    if (why) *why = e.why;
    return false;
  }
  void* workspace = scratch_->get(std::size_t(e.workspace));
  const std::vector<void*> pointers = {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), o, lse,
                                       &e.scale, &e.neg_inf};
  execute(handle_, e, pointers, workspace);
  return true;
}

bool CudnnAttention::backward(const void* dout, const void* q, const void* k, const void* v, const void* o,
                              const float* lse, void* dq, void* dk, void* dv, const AttentionShape& s,
                              std::string* why) {
  Entry& e = entry(backward_, s, true);
  if (!e.ok) {
    if (why) *why = e.why;
    return false;
  }
  // One scratch allocation: [workspace | softmax_sum | dQ accumulator].
  const std::size_t rows = std::size_t(s.batch) * s.heads * s.q_len;
  const std::size_t ws_bytes = align256(std::size_t(e.workspace));
  const std::size_t sum_bytes = align256(rows * sizeof(float));
  const std::size_t acc_bytes = rows * std::size_t(s.head_dim) * sizeof(float);
  auto* base = static_cast<char*>(scratch_->get(ws_bytes + sum_bytes + acc_bytes));
  void* workspace = e.workspace > 0 ? base : nullptr;
  void* softmax_sum = base + ws_bytes;
  void* dq_accum = base + ws_bytes + sum_bytes;
  // cuDNN >= 9.6 initialises the accumulator itself; zeroing is cheap insurance for older ones.
  BTM_CUDA(cudaMemsetAsync(dq_accum, 0, acc_bytes, stream_));
  const std::vector<void*> pointers = {
      const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), const_cast<void*>(o),
      const_cast<void*>(dout), const_cast<float*>(lse), dq, dk, dv, softmax_sum, dq_accum,
      &e.scale, &e.one, &e.neg_inf};
  execute(handle_, e, pointers, workspace);
  return true;
}

}  // namespace btm::gpu
