#pragma once
// Hand-written kernels of the cuda backend (everything but GEMMs, attention and the
// optimizer). Each launcher enqueues on `stream` and checks the launch; sizes of 0 are no-ops.
// Compute tensors are bf16, statistics and gradients of fp32 parameters are fp32.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace btm::gpu {

using bf16 = __nv_bfloat16;

void launch_to_bf16(cudaStream_t stream, const float* src /*[n]*/, bf16* dst /*[n]*/, std::size_t n);
void launch_to_float(cudaStream_t stream, const bf16* src /*[n]*/, float* dst /*[n]*/, std::size_t n);

// y[n,d] = x[n,d] * rstd * w[d], rstd[n] = 1/sqrt(mean(x^2) + eps), statistics in fp32.
void launch_rmsnorm_forward(cudaStream_t stream, const bf16* x /*[n,d]*/, const float* w /*[d]*/,
                            bf16* y /*[n,d]*/, float* rstd /*[n]*/, int n, int d, float eps);
// Scratch bytes launch_rmsnorm_backward needs for the deterministic dw reduction.
std::size_t rmsnorm_backward_scratch_bytes(int n, int d);
// dx[n,d] (= or += per accumulate); dw[d] += sum over rows, reduced in a fixed order.
void launch_rmsnorm_backward(cudaStream_t stream, const bf16* dy /*[n,d]*/, const bf16* x /*[n,d]*/,
                             const float* w /*[d]*/, const float* rstd /*[n]*/, bf16* dx /*[n,d]*/,
                             float* dw /*[d]*/, int n, int d, bool accumulate, void* scratch);

// In place on x[batch*seq, heads*head_dim]; Hugging Face rotate_half pairs (i, i + hd/2).
void launch_rope(cudaStream_t stream, bf16* x /*[batch*seq, heads*head_dim]*/, int batch, int seq,
                 int heads, int head_dim, int pos0, float theta, bool inverse);

void launch_swiglu_forward(cudaStream_t stream, const bf16* g /*[n]*/, const bf16* u /*[n]*/,
                           bf16* a /*[n]*/, std::size_t n);
void launch_swiglu_backward(cudaStream_t stream, const bf16* da /*[n]*/, const bf16* g /*[n]*/,
                            const bf16* u /*[n]*/, bf16* dg /*[n]*/, bf16* du /*[n]*/, std::size_t n);

// Bad inputs found on the device are written to a host-mapped slot as (row << 32 | value),
// for the backend to turn into a btm::Error at its next synchronization.

// x[n,d] = table[tokens[i], :]; a negative token gives a zero row and is reported.
void launch_embedding_forward(cudaStream_t stream, const std::int32_t* tokens /*[n]*/,
                              const bf16* table /*[V,d]*/, bf16* x /*[n,d]*/, int n, int d,
                              unsigned long long* bad_token);
// Scratch bytes launch_embedding_backward needs (sorted tokens and rows, partial sums).
std::size_t embedding_backward_scratch_bytes(int n, int d);
// dtable[V,d] += dx rows scattered by token, in a fixed order (bitwise reproducible, no
// atomics): rows sorted by token, each token's rows summed in row order. Negative tokens are
// skipped and reported.
void launch_embedding_backward(cudaStream_t stream, const std::int32_t* tokens /*[n]*/,
                               const bf16* dx /*[n,d]*/, float* dtable /*[V,d]*/, int n, int d,
                               unsigned long long* bad_token, void* scratch);

// nll[n] = logsumexp(row) - row[target] by an online softmax over the row; target < 0 gives
// nll 0 (and a zero gradient row); target >= vocab gives NaN and is reported. When
// grad_scale != 0 the logits are overwritten by grad_scale * (softmax - onehot).
void launch_cross_entropy(cudaStream_t stream, bf16* logits /*[n,vocab]*/,
                          const std::int32_t* targets /*[n]*/, float* nll /*[n]*/, int n, int vocab,
                          float grad_scale, unsigned long long* bad_target);

}  // namespace btm::gpu
