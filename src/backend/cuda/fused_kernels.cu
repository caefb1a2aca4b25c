// Fused element-wise and row-wise kernels of the cuda backend. Every kernel reads bf16,
// computes in fp32 and rounds once when it writes bf16.
#include "backend/cuda/fused_kernels.hpp"

#include <math_constants.h>

#include <cub/device/device_radix_sort.cuh>

#include <cmath>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_memory.hpp"
#include "backend/cuda/kernel_utils.cuh"

namespace btm::gpu {

namespace {

// ---- conversions ----------------------------------------------------------------------

__global__ void to_bf16_kernel(const float* __restrict__ src /*[n]*/, bf16* __restrict__ dst /*[n]*/,
                               std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    dst[i] = to_b(src[i]);
}

__global__ void to_float_kernel(const bf16* __restrict__ src /*[n]*/, float* __restrict__ dst /*[n]*/,
                                std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    dst[i] = to_f(src[i]);
}

// ---- RMSNorm --------------------------------------------------------------------------

// One block per row.
__global__ void rmsnorm_forward_kernel(const bf16* __restrict__ x /*[n,d]*/, const float* __restrict__ w /*[d]*/,
                                       bf16* __restrict__ y /*[n,d]*/, float* __restrict__ rstd /*[n]*/,
                                       int d, float eps) {
  __shared__ float shared[33];
  const std::size_t row = blockIdx.x;
  const bf16* xr = x + row * d;
  bf16* yr = y + row * d;
  float ss = 0.f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float v = to_f(xr[j]);
    ss += v * v;
  }
  ss = block_sum(ss, shared);
  const float r = rsqrtf(ss / float(d) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int j = threadIdx.x; j < d; j += blockDim.x) yr[j] = to_b(to_f(xr[j]) * r * w[j]);
}

// dx = r*w*dy - x * r^3/d * sum_j(dy_j w_j x_j); one block per row.
__global__ void rmsnorm_dx_kernel(const bf16* dy /*[n,d]*/, const bf16* __restrict__ x /*[n,d]*/,
                                  const float* __restrict__ w /*[d]*/, const float* __restrict__ rstd /*[n]*/,
                                  bf16* dx /*[n,d], may alias dy*/, int d, bool accumulate) {
  __shared__ float shared[33];
  const std::size_t row = blockIdx.x;
  const bf16* dyr = dy + row * d;
  const bf16* xr = x + row * d;
  bf16* dxr = dx + row * d;
  float dot = 0.f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) dot += to_f(dyr[j]) * w[j] * to_f(xr[j]);
  dot = block_sum(dot, shared);
  const float r = rstd[row];
  const float c = dot * r * r * r / float(d);
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float g = r * w[j] * to_f(dyr[j]) - to_f(xr[j]) * c;
    if (accumulate) g += to_f(dxr[j]);
    dxr[j] = to_b(g);
  }
}

// partial[c, k] = sum over rows of chunk c of dy*x*rstd; grid (ceil(d/kBlock), chunks).
__global__ void rmsnorm_dw_partial_kernel(const bf16* __restrict__ dy /*[n,d]*/, const bf16* __restrict__ x /*[n,d]*/,
                                          const float* __restrict__ rstd /*[n]*/,
                                          float* __restrict__ partial /*[chunks,d]*/, int n, int d,
                                          int rows_per_chunk) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= d) return;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = min(n, r0 + rows_per_chunk);
  float acc = 0.f;
  for (int r = r0; r < r1; ++r) {
    const std::size_t at = std::size_t(r) * d + k;
    acc += to_f(dy[at]) * to_f(x[at]) * rstd[r];
  }
  partial[std::size_t(blockIdx.y) * d + k] = acc;
}

// dw[k] += sum_c partial[c, k] in chunk order (deterministic).
__global__ void rmsnorm_dw_reduce_kernel(const float* __restrict__ partial /*[chunks,d]*/,
                                         float* __restrict__ dw /*[d]*/, int d, int chunks) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= d) return;
  float s = 0.f;
  for (int c = 0; c < chunks; ++c) s += partial[std::size_t(c) * d + k];
  dw[k] += s;
}

int rmsnorm_chunks(int n) {
  int chunks = (n + 63) / 64;
  return chunks < 1 ? 1 : (chunks > 256 ? 256 : chunks);
}

// ---- RoPE -------------------------------------------------------------------------------

// One thread per (token row, pair index i < hd/2), looping over the heads: the angle
// pos * theta^(-2i/hd) is computed once per thread, in double as the cpu reference does
// (in fp32, pos * inv_freq would lose ~pos ulps), and cos/sin are rounded to fp32.
__global__ void rope_kernel(bf16* x /*[rows, heads*hd]*/, std::size_t items /*rows*hd/2*/, int seq, int heads,
                            int head_dim, int pos0, double log_theta, float sign) {
  const int half = head_dim / 2;
  for (std::size_t p = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; p < items;
       p += std::size_t(gridDim.x) * blockDim.x) {
    const int i = int(p % half);
    const std::size_t row = p / half;  // b*seq + t
    const int t = int(row % seq);
    const double inv_freq = exp(-2.0 * i / head_dim * log_theta);
    double sd, cd;
    sincos(double(pos0 + t) * inv_freq, &sd, &cd);
    const float c = float(cd);
    const float s = sign * float(sd);
    bf16* base = x + row * std::size_t(heads) * head_dim;
    for (int h = 0; h < heads; ++h, base += head_dim) {
      const float a = to_f(base[i]);
      const float b = to_f(base[i + half]);
      base[i] = to_b(a * c - b * s);
      base[i + half] = to_b(b * c + a * s);
    }
  }
}

// ---- SwiGLU -----------------------------------------------------------------------------

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void swiglu_forward_kernel(const bf16* __restrict__ g /*[n]*/, const bf16* __restrict__ u /*[n]*/,
                                      bf16* __restrict__ a /*[n]*/, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float gv = to_f(g[i]);
    a[i] = to_b(gv * sigmoid(gv) * to_f(u[i]));
  }
}

__global__ void swiglu_backward_kernel(const bf16* __restrict__ da /*[n]*/, const bf16* __restrict__ g /*[n]*/,
                                       const bf16* __restrict__ u /*[n]*/, bf16* __restrict__ dg /*[n]*/,
                                       bf16* __restrict__ du /*[n]*/, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float gv = to_f(g[i]);
    const float uv = to_f(u[i]);
    const float d = to_f(da[i]);
    const float s = sigmoid(gv);
    dg[i] = to_b(d * uv * s * (1.0f + gv * (1.0f - s)));
    du[i] = to_b(d * gv * s);
  }
}

// ---- embedding --------------------------------------------------------------------------

// Records (row, value) of a bad input for the host to report (any one of them will do).
__device__ __forceinline__ void report(unsigned long long* slot, std::size_t row, int value) {
  *reinterpret_cast<volatile unsigned long long*>(slot) =
      (static_cast<unsigned long long>(row) << 32) | static_cast<unsigned int>(value);
}

__global__ void embedding_forward_kernel(const std::int32_t* __restrict__ tokens /*[n]*/,
                                         const bf16* __restrict__ table /*[V,d]*/, bf16* __restrict__ x /*[n,d]*/,
                                         std::size_t total, int d, unsigned long long* bad_token) {
  for (std::size_t e = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; e < total;
       e += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t i = e / d;
    const int j = int(e % d);
    const std::int32_t tok = tokens[i];
    if (tok >= 0) {
      x[e] = table[std::size_t(tok) * d + j];
    } else {
      x[e] = to_b(0.f);
      if (j == 0) report(bad_token, i, tok);
    }
  }
}

// The scatter-add runs in a fixed order, so that training is bitwise reproducible (exact
// resume): the (token, row) pairs are sorted by token with a stable radix sort, every token's
// rows are then consecutive and summed in row order. To keep frequent tokens from serialising
// one block, the sorted rows are cut into chunks of kEmbChunk: a run inside one chunk is summed
// and added by that chunk's block alone; a run that crosses chunk boundaries leaves per-chunk
// partial sums (head: the piece continuing a run from the chunk before; tail: the piece that
// starts a run continued in the next chunk), added up in chunk order by a second kernel.
constexpr int kEmbChunk = 32;
constexpr int kEmbThreads = 128;

// rows[i] = i; a negative token is reported (it sorts first and is skipped).
__global__ void embedding_rows_kernel(const std::int32_t* __restrict__ tokens /*[n]*/,
                                      std::int32_t* __restrict__ rows /*[n]*/, int n,
                                      unsigned long long* bad_token) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    rows[i] = i;
    if (tokens[i] < 0) report(bad_token, std::size_t(i), tokens[i]);
  }
}

// One block per chunk of sorted positions [c*kEmbChunk, ...); threads over the d columns.
__global__ void embedding_chunk_kernel(const std::int32_t* __restrict__ tok /*[n] sorted*/,
                                       const std::int32_t* __restrict__ row /*[n] rows in tok order*/,
                                       const bf16* __restrict__ dx /*[n,d]*/, float* __restrict__ dtable /*[V,d]*/,
                                       float* __restrict__ head /*[chunks,d]*/, float* __restrict__ tail /*[chunks,d]*/,
                                       int n, int d) {
  __shared__ std::int32_t s_tok[kEmbChunk];
  __shared__ std::int32_t s_row[kEmbChunk];
  const int c = blockIdx.x;
  const int p0 = c * kEmbChunk;
  const int len = min(kEmbChunk, n - p0);
  const int tid = int(threadIdx.x);
  if (tid < len) {
    s_tok[tid] = tok[p0 + tid];
    s_row[tid] = row[p0 + tid];
  }
  __syncthreads();
  const bool from_prev = p0 > 0 && tok[p0 - 1] == s_tok[0];
  const bool into_next = p0 + len < n && tok[p0 + len] == s_tok[len - 1];
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    int start = 0;
    while (start < len) {
      const std::int32_t t = s_tok[start];
      float acc = 0.f;
      int end = start;
      for (; end < len && s_tok[end] == t; ++end) acc += to_f(dx[std::size_t(s_row[end]) * d + j]);
      if (t >= 0) {
        if (start == 0 && from_prev) {
          head[std::size_t(c) * d + j] = acc;
        } else if (end == len && into_next) {
          tail[std::size_t(c) * d + j] = acc;
        } else {
          dtable[std::size_t(t) * d + j] += acc;  // the run lies in this chunk: its only writer
        }
      }
      start = end;
    }
  }
}

// One block per chunk; the chunk where a crossing run starts adds its tail and the heads of
// the following chunks, in chunk order.
__global__ void embedding_runs_kernel(const std::int32_t* __restrict__ tok /*[n] sorted*/,
                                      const float* __restrict__ head /*[chunks,d]*/,
                                      const float* __restrict__ tail /*[chunks,d]*/, float* __restrict__ dtable /*[V,d]*/,
                                      int n, int d) {
  const int c = blockIdx.x;
  const int p0 = c * kEmbChunk;
  const int last = min(n, p0 + kEmbChunk) - 1;
  const std::int32_t t = tok[last];
  const bool into_next = last + 1 < n && tok[last + 1] == t;
  const bool from_prev = p0 > 0 && tok[p0 - 1] == t;  // then the whole chunk continues a run
  if (t < 0 || !into_next || from_prev) return;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float acc = tail[std::size_t(c) * d + j];
    for (int k = c + 1;; ++k) {
      acc += head[std::size_t(k) * d + j];
      const int next = (k + 1) * kEmbChunk;
      if (next >= n || tok[next] != t) break;
    }
    dtable[std::size_t(t) * d + j] += acc;
  }
}

// Scratch layout of the embedding backward: sorted tokens, row indices in and out, head and
// tail partials, then cub's temporary storage.
struct EmbeddingScratch {
  std::size_t tok = 0, rows_in = 0, rows_out = 0, head = 0, tail = 0, cub = 0, cub_bytes = 0, total = 0;
};

EmbeddingScratch embedding_scratch_layout(int n, int d) {
  EmbeddingScratch s;
  const std::size_t chunks = (std::size_t(n) + kEmbChunk - 1) / kEmbChunk;
  std::size_t at = 0;
  auto carve = [&](std::size_t bytes) {
    const std::size_t here = at;
    at += align256(bytes);
    return here;
  };
  s.tok = carve(std::size_t(n) * 4);
  s.rows_in = carve(std::size_t(n) * 4);
  s.rows_out = carve(std::size_t(n) * 4);
  s.head = carve(chunks * d * 4);
  s.tail = carve(chunks * d * 4);
  BTM_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, s.cub_bytes, static_cast<const std::int32_t*>(nullptr),
                                           static_cast<std::int32_t*>(nullptr), static_cast<const std::int32_t*>(nullptr),
                                           static_cast<std::int32_t*>(nullptr), n));
  s.cub = carve(s.cub_bytes);
  s.total = at;
  return s;
}

// ---- cross-entropy ------------------------------------------------------------------------

// Running (max, sum of exp(x - max)) of an online softmax.
struct MaxSum {
  float m;
  float s;
};

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  // A NaN logit must surface as a NaN loss (fmaxf alone would drop it).
  if (isnan(a.m) || isnan(b.m)) return {CUDART_NAN_F, CUDART_NAN_F};
  const float m = fmaxf(a.m, b.m);
  if (m == -CUDART_INF_F) return {m, 0.f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

constexpr int kCeThreads = 512;

// One block per row: pass 1 finds logsumexp online, pass 2 (optional) writes the gradient.
__global__ void cross_entropy_kernel(bf16* logits /*[n,vocab]*/, const std::int32_t* __restrict__ targets /*[n]*/,
                                     float* __restrict__ nll /*[n]*/, int vocab, float grad_scale,
                                     unsigned long long* bad_target) {
  __shared__ MaxSum shared[kCeThreads / kWarp];
  __shared__ float row_lse;
  bf16* row = logits + std::size_t(blockIdx.x) * vocab;
  const int target = targets[blockIdx.x];

  // Per thread: a running (max, sum) with one exp per element.
  float m = -CUDART_INF_F;
  float s = 0.f;
  bool nan = false;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float x = to_f(row[j]);
    if (x > m) {
      s = s * expf(m - x) + 1.f;  // the first finite x: expf(-inf) = 0
      m = x;
    } else if (x > -CUDART_INF_F) {
      s += expf(x - m);
    } else if (isnan(x)) {
      nan = true;  // -inf contributes nothing; NaN poisons the row
    }
  }
  MaxSum acc = nan ? MaxSum{CUDART_NAN_F, CUDART_NAN_F} : MaxSum{m, s};
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, acc.m, offset), __shfl_xor_sync(0xffffffffu, acc.s, offset)};
    acc = merge(acc, other);
  }
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  if (lane == 0) shared[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    MaxSum total = shared[0];
    for (int w = 1; w < int(blockDim.x / kWarp); ++w) total = merge(total, shared[w]);
    const float lse = total.m + logf(total.s);
    row_lse = lse;
    float value;
    if (target < 0) {
      value = 0.f;
    } else if (target >= vocab) {
      value = CUDART_NAN_F;
      report(bad_target, blockIdx.x, target);
    } else {
      value = lse - to_f(row[target]);  // read before pass 2 overwrites the row
    }
    nll[blockIdx.x] = value;
  }
  __syncthreads();
  if (grad_scale == 0.f) return;
  const float lse = row_lse;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    float g;
    if (target < 0) g = 0.f;
    else if (target >= vocab) g = CUDART_NAN_F;
    else g = grad_scale * (expf(to_f(row[j]) - lse) - (j == target ? 1.f : 0.f));
    row[j] = to_b(g);
  }
}

}  // namespace

void launch_to_bf16(cudaStream_t stream, const float* src, bf16* dst, std::size_t n) {
  if (n == 0) return;
  to_bf16_kernel<<<grid_for(n), kBlock, 0, stream>>>(src, dst, n);
  BTM_CUDA_LAUNCH();
}

void launch_to_float(cudaStream_t stream, const bf16* src, float* dst, std::size_t n) {
  if (n == 0) return;
  to_float_kernel<<<grid_for(n), kBlock, 0, stream>>>(src, dst, n);
  BTM_CUDA_LAUNCH();
}

void launch_rmsnorm_forward(cudaStream_t stream, const bf16* x, const float* w, bf16* y, float* rstd, int n,
                            int d, float eps) {
  if (n == 0 || d == 0) return;
  rmsnorm_forward_kernel<<<n, kBlock, 0, stream>>>(x, w, y, rstd, d, eps);
  BTM_CUDA_LAUNCH();
}

std::size_t rmsnorm_backward_scratch_bytes(int n, int d) {
  return std::size_t(rmsnorm_chunks(n)) * std::size_t(d) * sizeof(float);
}

void launch_rmsnorm_backward(cudaStream_t stream, const bf16* dy, const bf16* x, const float* w,
                             const float* rstd, bf16* dx, float* dw, int n, int d, bool accumulate,
                             void* scratch) {
  if (n == 0 || d == 0) return;
  // dw first: it reads dy, which dx may overwrite (in-place backward, as on the cpu backend).
  const int chunks = rmsnorm_chunks(n);
  const int rows_per_chunk = (n + chunks - 1) / chunks;
  auto* partial = static_cast<float*>(scratch);
  const unsigned column_blocks = unsigned((d + kBlock - 1) / kBlock);
  rmsnorm_dw_partial_kernel<<<dim3(column_blocks, unsigned(chunks)), kBlock, 0, stream>>>(
      dy, x, rstd, partial, n, d, rows_per_chunk);
  BTM_CUDA_LAUNCH();
  rmsnorm_dw_reduce_kernel<<<column_blocks, kBlock, 0, stream>>>(partial, dw, d, chunks);
  BTM_CUDA_LAUNCH();
  rmsnorm_dx_kernel<<<n, kBlock, 0, stream>>>(dy, x, w, rstd, dx, d, accumulate);
  BTM_CUDA_LAUNCH();
}

void launch_rope(cudaStream_t stream, bf16* x, int batch, int seq, int heads, int head_dim, int pos0,
                 float theta, bool inverse) {
  const std::size_t items = std::size_t(batch) * seq * (head_dim / 2);
  if (items == 0 || heads == 0) return;
  rope_kernel<<<grid_for(items), kBlock, 0, stream>>>(x, items, seq, heads, head_dim, pos0, std::log(double(theta)),
                                                      inverse ? -1.f : 1.f);
  BTM_CUDA_LAUNCH();
}

void launch_swiglu_forward(cudaStream_t stream, const bf16* g, const bf16* u, bf16* a, std::size_t n) {
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(g, u, a, n);
  BTM_CUDA_LAUNCH();
}

void launch_swiglu_backward(cudaStream_t stream, const bf16* da, const bf16* g, const bf16* u, bf16* dg,
                            bf16* du, std::size_t n) {
  if (n == 0) return;
  swiglu_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(da, g, u, dg, du, n);
  BTM_CUDA_LAUNCH();
}

void launch_embedding_forward(cudaStream_t stream, const std::int32_t* tokens, const bf16* table, bf16* x,
                              int n, int d, unsigned long long* bad_token) {
  const std::size_t total = std::size_t(n) * d;
  if (total == 0) return;
  embedding_forward_kernel<<<grid_for(total), kBlock, 0, stream>>>(tokens, table, x, total, d, bad_token);
  BTM_CUDA_LAUNCH();
}

std::size_t embedding_backward_scratch_bytes(int n, int d) {
  return n > 0 && d > 0 ? embedding_scratch_layout(n, d).total : 0;
}

void launch_embedding_backward(cudaStream_t stream, const std::int32_t* tokens, const bf16* dx,
                               float* dtable, int n, int d, unsigned long long* bad_token, void* scratch) {
  if (n == 0 || d == 0) return;
  const EmbeddingScratch s = embedding_scratch_layout(n, d);
  char* base = static_cast<char*>(scratch);
  auto* tok = reinterpret_cast<std::int32_t*>(base + s.tok);
  auto* rows_in = reinterpret_cast<std::int32_t*>(base + s.rows_in);
  auto* rows_out = reinterpret_cast<std::int32_t*>(base + s.rows_out);
  auto* head = reinterpret_cast<float*>(base + s.head);
  auto* tail = reinterpret_cast<float*>(base + s.tail);
  embedding_rows_kernel<<<grid_for(std::size_t(n)), kBlock, 0, stream>>>(tokens, rows_in, n, bad_token);
  BTM_CUDA_LAUNCH();
  std::size_t cub_bytes = s.cub_bytes;
  BTM_CUDA(cub::DeviceRadixSort::SortPairs(base + s.cub, cub_bytes, tokens, tok, rows_in, rows_out, n, 0,
                                           int(sizeof(std::int32_t) * 8), stream));
  const unsigned chunks = unsigned((n + kEmbChunk - 1) / kEmbChunk);
  embedding_chunk_kernel<<<chunks, kEmbThreads, 0, stream>>>(tok, rows_out, dx, dtable, head, tail, n, d);
  BTM_CUDA_LAUNCH();
  embedding_runs_kernel<<<chunks, kEmbThreads, 0, stream>>>(tok, head, tail, dtable, n, d);
  BTM_CUDA_LAUNCH();
}

void launch_cross_entropy(cudaStream_t stream, bf16* logits, const std::int32_t* targets, float* nll, int n,
                          int vocab, float grad_scale, unsigned long long* bad_target) {
  if (n == 0) return;
  cross_entropy_kernel<<<n, kCeThreads, 0, stream>>>(logits, targets, nll, vocab, grad_scale, bad_target);
  BTM_CUDA_LAUNCH();
}

}  // namespace btm::gpu
