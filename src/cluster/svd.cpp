// Distributed truncated SVD of a row-sharded sparse matrix (include/btm/cluster/fit.hpp).
//
// Subspace iteration on X^T X with Q [V, l] replicated on every rank: each pass forms
// Y = X^T (X Q) from this rank's rows, block by block into exact sums, allreduces Y, and
// orthonormalises it with LAPACK's LQ factorisation (Y is stored row-major, which is Y^T
// column-major). A Rayleigh-Ritz step on the l x l Gram matrix (X Q)^T (X Q) then gives
// the singular values and rotates Q onto the singular vectors.
#include <algorithm>
#include <cblas.h>
#include <cmath>
#include <cstring>

#include "btm/cluster/exact_sum.hpp"
#include "btm/cluster/fit.hpp"
#include "btm/error.hpp"

extern "C" {
void dgelqf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work, const int* lwork,
             int* info);
void dorglq_(const int* m, const int* n, const int* k, double* a, const int* lda, const double* tau, double* work,
             const int* lwork, int* info);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
             const int* lwork, int* iwork, const int* liwork, int* info);
}

namespace btm::cluster {

namespace {

void check_lapack(int info, const char* what) {
  if (info != 0) fail_call(std::string(what) + " failed with info = " + std::to_string(info));
}

// q[V, l] row-major := an orthonormal basis of its columns' span.
void orthonormalise(std::vector<double>& q, std::int64_t V, int l) {
  // Row-major [V, l] is column-major [l, V] = Q^T; Q^T = L * P with P's rows orthonormal,
  // so P^T (stored in place, row-major [V, l]) has orthonormal columns spanning Q's.
  const int m = l, n = static_cast<int>(V), lda = l;
  std::vector<double> tau(l);
  int info = 0, lwork = -1;
  double query = 0;
  dgelqf_(&m, &n, q.data(), &lda, tau.data(), &query, &lwork, &info);
  check_lapack(info, "dgelqf (workspace query)");
  lwork = std::max(1, static_cast<int>(query));
  std::vector<double> work(lwork);
  dgelqf_(&m, &n, q.data(), &lda, tau.data(), work.data(), &lwork, &info);
  check_lapack(info, "dgelqf");
  lwork = -1;
  dorglq_(&m, &n, &m, q.data(), &lda, tau.data(), &query, &lwork, &info);
  check_lapack(info, "dorglq (workspace query)");
  lwork = std::max(1, static_cast<int>(query));
  work.assign(lwork, 0.0);
  dorglq_(&m, &n, &m, q.data(), &lda, tau.data(), work.data(), &lwork, &info);
  check_lapack(info, "dorglq");
}

// A standard normal from a counter (Box-Muller on two splitmix64 draws): the same start
// matrix on every rank without generating it in sequence.
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
double normal(std::uint64_t seed, std::uint64_t counter) {
  const std::uint64_t a = splitmix64(seed ^ splitmix64(2 * counter)), b = splitmix64(seed ^ splitmix64(2 * counter + 1));
  const double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53, u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// z[l] = x_i Q for row i of x; q[V, l].
void row_times(const Csr& x, std::uint64_t i, const double* q, int l, double* z) {
  std::fill(z, z + l, 0.0);
  for (std::uint64_t p = x.row_ptr[i]; p < x.row_ptr[i + 1]; ++p) {
    const double v = x.val[p];
    const double* qrow = q + static_cast<std::size_t>(x.col[p]) * l;  // [l]
    for (int c = 0; c < l; ++c) z[c] += v * qrow[c];
  }
}

// Y [V, l] = X^T X Q over all ranks' rows, exact at any rank count.
std::vector<double> gram_times(const Csr& x, RowShard shard, std::uint64_t total_rows, std::int64_t V,
                               const std::vector<double>& q, int l, const Comm& comm) {
  ExactSum y(static_cast<std::size_t>(V) * l, static_cast<double>(total_rows) + 1.0);
  std::vector<double> partial(static_cast<std::size_t>(V) * l, 0.0);  // one block's sum, [V, l]
  std::vector<char> touched(V, 0);
  std::vector<std::int32_t> rows_touched;
  std::vector<double> z(l);
  for (std::uint64_t b0 = 0; b0 < shard.size(); b0 += kBlockRows) {
    const std::uint64_t b1 = std::min(shard.size(), b0 + kBlockRows);
    for (std::uint64_t i = b0; i < b1; ++i) {
      row_times(x, i, q.data(), l, z.data());
      for (std::uint64_t p = x.row_ptr[i]; p < x.row_ptr[i + 1]; ++p) {
        const std::int32_t j = x.col[p];
        const double v = x.val[p];
        double* out = partial.data() + static_cast<std::size_t>(j) * l;  // [l]
        for (int c = 0; c < l; ++c) out[c] += v * z[c];
        if (!touched[j]) {
          touched[j] = 1;
          rows_touched.push_back(j);
        }
      }
    }
    for (std::int32_t j : rows_touched) {
      double* row = partial.data() + static_cast<std::size_t>(j) * l;
      y.add(static_cast<std::size_t>(j) * l, row, l);
      std::fill(row, row + l, 0.0);
      touched[j] = 0;
    }
    rows_touched.clear();
  }
  y.allreduce(comm);
  return y.values();
}

}  // namespace

Svd truncated_svd(const Csr& x, RowShard shard, std::uint64_t total_rows, std::int64_t V, int dims,
                  std::uint64_t seed, const Comm& comm, int power_iterations) {
  if (dims < 1 || dims > V) fail_call("truncated_svd: dims must be in 1..V");
  if (x.rows() != shard.size()) fail_call("truncated_svd: local rows do not match the shard");
  const int l = static_cast<int>(std::min<std::int64_t>(V, dims + 10));
  std::vector<double> q(static_cast<std::size_t>(V) * l);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = normal(seed, i);
  orthonormalise(q, V, l);
  for (int it = 0; it < power_iterations; ++it) {
    q = gram_times(x, shard, total_rows, V, q, l, comm);
    orthonormalise(q, V, l);
  }

  // Rayleigh-Ritz: G = (X Q)^T (X Q) = W diag(s^2) W^T; the singular vectors are Q W.
  ExactSum g(static_cast<std::size_t>(l) * l, static_cast<double>(total_rows) + 1.0);
  {
    std::vector<double> z(kBlockRows * l), partial(static_cast<std::size_t>(l) * l);
    for (std::uint64_t b0 = 0; b0 < shard.size(); b0 += kBlockRows) {
      const std::uint64_t b1 = std::min(shard.size(), b0 + kBlockRows);
      const int rows = static_cast<int>(b1 - b0);
      for (std::uint64_t i = b0; i < b1; ++i) row_times(x, i, q.data(), l, z.data() + (i - b0) * l);
      // partial[l, l] = Z^T Z for the block's rows z[rows, l].
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, l, rows, 1.0, z.data(), l, 0.0, partial.data(), l);
      for (int a = 0; a < l; ++a) {
        for (int b = 0; b < a; ++b) partial[a * l + b] = partial[b * l + a];
      }
      g.add(0, partial.data(), partial.size());
    }
  }
  g.allreduce(comm);
  std::vector<double> w = g.values(), eigenvalues(l);
  {
    const char jobz = 'V', uplo = 'U';
    int info = 0, lwork = -1, liwork = -1, iquery = 0;
    double query = 0;
    dsyevd_(&jobz, &uplo, &l, w.data(), &l, eigenvalues.data(), &query, &lwork, &iquery, &liwork, &info);
    check_lapack(info, "dsyevd (workspace query)");
    lwork = std::max(1, static_cast<int>(query));
    liwork = std::max(1, iquery);
    std::vector<double> work(lwork);
    std::vector<int> iwork(liwork);
    dsyevd_(&jobz, &uplo, &l, w.data(), &l, eigenvalues.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
    check_lapack(info, "dsyevd");
  }
  // Eigenvectors are the columns of w (column-major), eigenvalues ascending: take the last
  // `dims`, largest first, as the columns of top[l, dims] (row-major).
  std::vector<double> top(static_cast<std::size_t>(l) * dims);
  Svd out;
  out.singular_values.resize(dims);
  for (int d = 0; d < dims; ++d) {
    const int col = l - 1 - d;
    out.singular_values[d] = std::sqrt(std::max(0.0, eigenvalues[col]));
    for (int a = 0; a < l; ++a) top[a * dims + d] = w[static_cast<std::size_t>(col) * l + a];
  }
  out.term_vectors.assign(static_cast<std::size_t>(V) * dims, 0.0);
  // term_vectors[V, dims] = q[V, l] top[l, dims]
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(V), dims, l, 1.0, q.data(), l, top.data(),
              dims, 0.0, out.term_vectors.data(), dims);
  for (int d = 0; d < dims; ++d) {
    std::int64_t best = 0;
    for (std::int64_t j = 1; j < V; ++j) {
      if (std::fabs(out.term_vectors[j * dims + d]) > std::fabs(out.term_vectors[best * dims + d])) best = j;
    }
    if (out.term_vectors[best * dims + d] < 0) {
      for (std::int64_t j = 0; j < V; ++j) out.term_vectors[j * dims + d] = -out.term_vectors[j * dims + d];
    }
  }
  return out;
}

}  // namespace btm::cluster
