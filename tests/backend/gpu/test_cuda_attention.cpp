// Causal attention of the cuda backend, through cuDNN and through the fallback kernels,
// against the cpu reference: forward (o, lse) and backward (dq, dk, dv), multi-head, grouped
// and multi-query KV heads, and KV-cache decode (Tq < Tk). BTM_CUDA_ATTENTION selects the
// path; "cudnn" makes the backend fail rather than fall back, so a cuDNN case that passes
// really ran on cuDNN.
//
// Error bounds (q, k, v, dO uniform in [-1, 1], so |o| <= 1):
//  - fallback: fp32 math, each output rounded once to bf16: kBf16Round relative, plus
//    1e-3 * rms for fp32 ordering inside sums with cancellation (dq, dk);
//  - cuDNN: the fused kernels also round P (forward) and dS, P (backward) to bf16 before
//    the second GEMMs: o moves by <= 2^-8 * sum_j p_j |v_j| <= 2^-8, hence atol 5e-3; the
//    gradients are sums of such rounded products with random signs, so their error is a
//    few 2^-8 of the tensor's rms: 2e-2 * rms + 2e-2 relative;
//  - lse is fp32 everywhere (scores from bf16 inputs, fp32 accumulation): 1e-3 absolute.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "btm/error.hpp"
#include "gpu_test_util.hpp"

namespace btm::test {
namespace {

using Kind = Buffer::Kind;
constexpr double kBf16Round = 1.0 / 256.0;

struct AttentionCase {
  const char* mode;  // BTM_CUDA_ATTENTION
  AttentionShape shape;
};

std::string case_name(const AttentionCase& c) {
  const AttentionShape& s = c.shape;
  return std::string(c.mode) + "_B" + std::to_string(s.batch) + "_Tq" + std::to_string(s.q_len) + "_Tk" +
         std::to_string(s.kv_len) + "_H" + std::to_string(s.heads) + "_KV" + std::to_string(s.kv_heads) + "_hd" +
         std::to_string(s.head_dim);
}

AttentionShape shape(int b, int tq, int tk, int h, int kv, int hd) {
  AttentionShape s;
  s.batch = b;
  s.q_len = tq;
  s.kv_len = tk;
  s.heads = h;
  s.kv_heads = kv;
  s.head_dim = hd;
  return s;
}

std::vector<float> rounded(std::vector<float> v) {
  for (auto& x : v) x = bf16_round(x);
  return v;
}

// Inputs and the cpu reference results for one shape.
struct Reference {
  std::vector<float> q, k, v, dout, o, lse, dq, dk, dv;
};

Reference run_cpu(Backend& cpu, const AttentionShape& s, unsigned seed) {
  std::mt19937 rng(seed);
  Reference r;
  const std::size_t nq = std::size_t(s.batch) * s.q_len * s.q_stride();
  const std::size_t nkv = std::size_t(s.batch) * s.kv_len * s.kv_stride();
  const std::size_t nlse = std::size_t(s.batch) * s.heads * s.q_len;
  r.q = random_bf16(nq, -1, 1, rng);
  r.k = random_bf16(nkv, -1, 1, rng);
  r.v = random_bf16(nkv, -1, 1, rng);
  r.dout = random_bf16(nq, -1, 1, rng);
  Buffer q(cpu, Kind::compute, nq, r.q), k(cpu, Kind::compute, nkv, r.k), v(cpu, Kind::compute, nkv, r.v);
  Buffer dout(cpu, Kind::compute, nq, r.dout);
  Buffer o(cpu, Kind::compute, nq, std::vector<float>(nq, 0.f)), lse(cpu, Kind::f32, nlse, std::vector<float>(nlse, 0.f));
  Buffer dq(cpu, Kind::compute, nq, std::vector<float>(nq, 0.f));
  Buffer dk(cpu, Kind::compute, nkv, std::vector<float>(nkv, 0.f)), dv(cpu, Kind::compute, nkv, std::vector<float>(nkv, 0.f));
  cpu.attention_forward(q.get(), k.get(), v.get(), o.get(), lse.f32(), s);
  r.o = o.read();
  r.lse = lse.read();
  // The backward gets o rounded to bf16, which is what the GPU side is given too.
  Buffer o_rounded(cpu, Kind::compute, nq, rounded(r.o));
  cpu.attention_backward(dout.get(), q.get(), k.get(), v.get(), o_rounded.get(), lse.f32(), dq.get(), dk.get(),
                         dv.get(), s);
  r.dq = dq.read();
  r.dk = dk.read();
  r.dv = dv.read();
  return r;
}

class CudaAttention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(CudaAttention, ForwardAndBackwardMatchCpu) {
  const AttentionCase c = GetParam();
  const AttentionShape& s = c.shape;
  ScopedEnv env("BTM_CUDA_ATTENTION", c.mode);
  auto b = make_backends();
  const Reference r = run_cpu(*b.cpu, s, 42u + unsigned(s.head_dim * 31 + s.kv_len));
  // Bounds of the fused kernels wherever cuDNN may have run (auto takes it for these shapes).
  const std::string mode = c.mode;
  const bool fused = mode == "cudnn" || (mode == "auto" && s.q_len == s.kv_len && s.head_dim % 8 == 0 &&
                                         s.head_dim <= 128);

  const std::size_t nq = r.q.size(), nkv = r.k.size(), nlse = r.lse.size();
  Buffer q(*b.gpu, Kind::compute, nq, r.q), k(*b.gpu, Kind::compute, nkv, r.k), v(*b.gpu, Kind::compute, nkv, r.v);
  Buffer o(*b.gpu, Kind::compute, nq), lse(*b.gpu, Kind::f32, nlse);
  b.gpu->attention_forward(q.get(), k.get(), v.get(), o.get(), lse.f32(), s);
  expect_close(lse.read(), r.lse, 1e-3, 1e-5, "lse");
  if (fused) expect_close(o.read(), r.o, 5e-3, 1e-2, "o");
  else expect_close(o.read(), r.o, 1e-4, kBf16Round, "o");

  // Backward from the same (cpu) o and lse as the reference used.
  Buffer o_in(*b.gpu, Kind::compute, nq, rounded(r.o)), lse_in(*b.gpu, Kind::f32, nlse, r.lse);
  Buffer dout(*b.gpu, Kind::compute, nq, r.dout);
  Buffer dq(*b.gpu, Kind::compute, nq), dk(*b.gpu, Kind::compute, nkv), dv(*b.gpu, Kind::compute, nkv);
  b.gpu->attention_backward(dout.get(), q.get(), k.get(), v.get(), o_in.get(), lse_in.f32(), dq.get(), dk.get(),
                            dv.get(), s);
  const double rel = fused ? 2e-2 : kBf16Round;
  const double of_rms = fused ? 2e-2 : 1e-3;
  expect_close(dq.read(), r.dq, of_rms * rms(r.dq) + 1e-6, rel, "dq");
  expect_close(dk.read(), r.dk, of_rms * rms(r.dk) + 1e-6, rel, "dk");
  expect_close(dv.read(), r.dv, of_rms * rms(r.dv) + 1e-6, rel, "dv");
  for (const Buffer* out : {&o, &lse, &dq, &dk, &dv}) EXPECT_TRUE(out->guard_intact());
}

INSTANTIATE_TEST_SUITE_P(
    Paths, CudaAttention,
    ::testing::Values(
        // cuDNN fused attention: training shapes (Tq == Tk, hd % 8 == 0, hd <= 128).
        AttentionCase{"cudnn", shape(2, 64, 64, 4, 4, 64)},     // multi-head
        AttentionCase{"cudnn", shape(2, 128, 128, 8, 2, 64)},   // grouped KV heads
        AttentionCase{"cudnn", shape(1, 256, 256, 4, 1, 128)},  // multi-query, hd 128
        AttentionCase{"cudnn", shape(3, 100, 100, 2, 2, 32)},   // T not a multiple of 64
        // Fallback kernels: everything, including what cuDNN does not take.
        AttentionCase{"fallback", shape(2, 64, 64, 4, 4, 64)},
        AttentionCase{"fallback", shape(2, 33, 33, 6, 3, 40)},   // hd not a multiple of 8
        AttentionCase{"fallback", shape(3, 5, 37, 4, 2, 20)},    // decode: Tq < Tk
        AttentionCase{"fallback", shape(1, 1, 50, 8, 1, 128)},   // one new token, multi-query
        AttentionCase{"fallback", shape(1, 16, 16, 2, 2, 256)},  // the largest head_dim
        AttentionCase{"fallback", shape(1, 7, 7, 3, 1, 1)},      // hd 1
        // auto: cuDNN where it applies, fallback elsewhere, same results either way.
        AttentionCase{"auto", shape(2, 64, 64, 4, 2, 64)},
        AttentionCase{"auto", shape(2, 9, 40, 4, 2, 64)}),
    [](const auto& info) { return case_name(info.param); });

TEST(CudaAttentionModes, CudnnModeRefusesShapesCudnnCannotRun) {
  ScopedEnv env("BTM_CUDA_ATTENTION", "cudnn");
  auto gpu = make_backend("cuda");
  const AttentionShape s = shape(1, 4, 16, 2, 2, 64);  // decode
  Buffer q(*gpu, Kind::compute, 4 * 128, std::vector<float>(4 * 128, 0.f));
  Buffer kv(*gpu, Kind::compute, 16 * 128, std::vector<float>(16 * 128, 0.f));
  Buffer o(*gpu, Kind::compute, 4 * 128), lse(*gpu, Kind::f32, 8);
  EXPECT_THROW(gpu->attention_forward(q.get(), kv.get(), kv.get(), o.get(), lse.f32(), s), Error);
}

TEST(CudaAttentionModes, UnknownModeIsAClearError) {
  ScopedEnv env("BTM_CUDA_ATTENTION", "fastest");
  try {
    auto gpu = make_backend("cuda");
    FAIL() << "BTM_CUDA_ATTENTION=fastest was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BTM_CUDA_ATTENTION"), std::string::npos) << e.what();
  }
}

TEST(CudaAttentionModes, RejectsInconsistentShapes) {
  auto gpu = make_backend("cuda");
  Buffer x(*gpu, Kind::compute, 1024, std::vector<float>(1024, 0.f));
  Buffer lse(*gpu, Kind::f32, 64);
  // heads not a multiple of kv_heads
  EXPECT_THROW(gpu->attention_forward(x.get(), x.get(), x.get(), x.get(), lse.f32(), shape(1, 4, 4, 3, 2, 8)), Error);
  // kv_len < q_len
  EXPECT_THROW(gpu->attention_forward(x.get(), x.get(), x.get(), x.get(), lse.f32(), shape(1, 8, 4, 2, 2, 8)), Error);
}

}  // namespace
}  // namespace btm::test
