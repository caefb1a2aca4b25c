// Distributed truncated SVD of a row-sharded sparse matrix (include/btm/cluster/fit.hpp).
//
// Randomised subspace iteration (Halko, Martinsson & Tropp 2011) in the row space: Z [rows, l]
// is sharded like X's rows. Each pass forms Y = X^T Z (V x l, from this rank's rows block by
// block into exact sums, then allreduced), Z = X Y on the local rows, and orthonormalises Z
// through its l x l Gram matrix (exact sum, LAPACK dsyevd). The right singular vectors come
// from one last Y = X^T Z: Y^T Y = W S^2 W^T, V = Y W S^-1. The [V, l] matrices are only
// streamed (column-major access of X), never factorised.
#include <algorithm>
#include <cblas.h>
#include <cmath>
#include <cstring>

#include "btm/cluster/exact_sum.hpp"
#include "btm/cluster/fit.hpp"
#include "btm/data/loader.hpp"
#include "btm/error.hpp"

extern "C" {
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
             const int* lwork, int* iwork, const int* liwork, int* info);
}

namespace btm::cluster {

namespace {

void check_lapack(int info, const char* what) {
  if (info != 0) fail_call(std::string(what) + " failed with info = " + std::to_string(info));
}

// Eigenvalues (ascending) and eigenvectors (columns, column-major) of the symmetric a[n, n].
void symmetric_eigen(std::vector<double>& a, int n, std::vector<double>& eigenvalues) {
  const char jobz = 'V', uplo = 'U';
  int info = 0, lwork = -1, liwork = -1, iquery = 0;
  double query = 0;
  eigenvalues.resize(n);
  dsyevd_(&jobz, &uplo, &n, a.data(), &n, eigenvalues.data(), &query, &lwork, &iquery, &liwork, &info);
  check_lapack(info, "dsyevd (workspace query)");
  lwork = std::max(1, static_cast<int>(query));
  liwork = std::max(1, iquery);
  std::vector<double> work(lwork);
  std::vector<int> iwork(liwork);
  dsyevd_(&jobz, &uplo, &n, a.data(), &n, eigenvalues.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  check_lapack(info, "dsyevd");
}

// A standard normal from a counter (Box-Muller on two mix64 draws): the same start on every
// rank without generating it in sequence.
double normal(std::uint64_t seed, std::uint64_t counter) {
  const std::uint64_t a = mix64(seed ^ mix64(2 * counter)), b = mix64(seed ^ mix64(2 * counter + 1));
  const double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53, u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// The local rows by column (CSC): each term's rows ascending, so that the products below
// stream the [V, l] matrices once and touch only the small [rows, l] one at random.
struct Columns {
  std::vector<std::uint64_t> ptr;  // [V + 1]
  std::vector<std::uint32_t> row;  // [nnz] local row
  std::vector<double> val;         // [nnz]
};

Columns by_column(const Csr& x, std::int64_t V) {
  Columns c;
  c.ptr.assign(V + 1, 0);
  for (std::int32_t j : x.col) ++c.ptr[j + 1];
  for (std::int64_t j = 0; j < V; ++j) c.ptr[j + 1] += c.ptr[j];
  c.row.resize(x.col.size());
  c.val.resize(x.col.size());
  std::vector<std::uint64_t> next(c.ptr.begin(), c.ptr.end() - 1);
  for (std::uint64_t i = 0; i < x.rows(); ++i) {
    for (std::uint64_t p = x.row_ptr[i]; p < x.row_ptr[i + 1]; ++p) {
      const std::uint64_t at = next[x.col[p]]++;
      c.row[at] = static_cast<std::uint32_t>(i);
      c.val[at] = x.val[p];
    }
  }
  return c;
}

// z[rows, l] = X Q for q[V, l]. Row i sums its terms in ascending order, as a row-wise
// product would: the same value on any rank.
void times(const Columns& x, std::uint64_t rows, std::int64_t V, const std::vector<double>& q, int l,
           std::vector<double>& z) {
  z.assign(rows * l, 0.0);
  for (std::int64_t j = 0; j < V; ++j) {
    const double* qrow = q.data() + static_cast<std::size_t>(j) * l;  // [l]
    for (std::uint64_t p = x.ptr[j]; p < x.ptr[j + 1]; ++p) {
      double* out = z.data() + static_cast<std::size_t>(x.row[p]) * l;  // [l]
      const double v = x.val[p];
      for (int c = 0; c < l; ++c) out[c] += v * qrow[c];
    }
  }
}

// Y [V, l] = X^T Z over all ranks' rows for z[rows, l], exact at any rank count: each term's
// sum over one block of rows (rows ascending) is converted once into the exact sum.
std::vector<double> transpose_times(const Columns& x, RowShard shard, std::int64_t V, const std::vector<double>& z,
                                    int l, double bound, const Comm& comm) {
  ExactSum y(static_cast<std::size_t>(V) * l, bound);
  std::vector<double> partial(l);
  for (std::int64_t j = 0; j < V; ++j) {
    std::uint64_t p = x.ptr[j];
    while (p < x.ptr[j + 1]) {
      const std::uint64_t block = x.row[p] / kBlockRows;
      std::fill(partial.begin(), partial.end(), 0.0);
      for (; p < x.ptr[j + 1] && x.row[p] / kBlockRows == block; ++p) {
        const double* zrow = z.data() + static_cast<std::size_t>(x.row[p]) * l;  // [l]
        const double v = x.val[p];
        for (int c = 0; c < l; ++c) partial[c] += v * zrow[c];
      }
      y.add(static_cast<std::size_t>(j) * l, partial.data(), l);
    }
  }
  (void)shard;  // shards start at block boundaries: local blocks are global blocks
  y.allreduce(comm);
  return y.values();
}

// g[l, l] = Z^T Z over all ranks' rows of z[rows, l], exact: one dsyrk per block.
std::vector<double> gram(const std::vector<double>& z, std::uint64_t rows, int l, double bound, const Comm& comm) {
  ExactSum g(static_cast<std::size_t>(l) * l, bound);
  std::vector<double> partial(static_cast<std::size_t>(l) * l);
  for (std::uint64_t b0 = 0; b0 < rows; b0 += kBlockRows) {
    const int n = static_cast<int>(std::min(rows, b0 + kBlockRows) - b0);
    // partial[l, l] (upper) = z[n, l]^T z[n, l] for the block's rows
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, l, n, 1.0, z.data() + b0 * l, l, 0.0, partial.data(), l);
    for (int a = 0; a < l; ++a) {
      for (int b = 0; b < a; ++b) partial[a * l + b] = partial[b * l + a];
    }
    g.add(0, partial.data(), partial.size());
  }
  g.allreduce(comm);
  return g.values();
}

// z[rows, l] (row-sharded) := Z W diag(g)^-1/2 with Z^T Z = W diag(g) W^T over all ranks:
// orthonormal columns. One dgemm per block, so a row's result is the same on any rank.
// Orthogonality is lost in proportion to the squared condition number: an ill-conditioned Z
// gets a second pass; directions with g below 1e-13 of the largest are dropped (zero).
void orthonormalise_rows(std::vector<double>& z, std::uint64_t rows, int l, double bound, const Comm& comm) {
  std::vector<double> rotated(z.size()), eigenvalues;
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<double> w = gram(z, rows, l, bound, comm);
    symmetric_eigen(w, l, eigenvalues);
    const double largest = eigenvalues.back();
    double smallest = largest;
    for (int c = 0; c < l; ++c) {
      const bool kept = eigenvalues[c] > 1e-13 * largest;
      if (kept) smallest = std::min(smallest, eigenvalues[c]);
      const double scale = kept ? 1.0 / std::sqrt(eigenvalues[c]) : 0.0;
      for (int a = 0; a < l; ++a) w[static_cast<std::size_t>(c) * l + a] *= scale;
    }
    for (std::uint64_t b0 = 0; b0 < rows; b0 += kBlockRows) {
      const int n = static_cast<int>(std::min(rows, b0 + kBlockRows) - b0);
      // rotated[n, l] = z[n, l] W' (w column-major: element (a, c) at c * l + a)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l, l, 1.0, z.data() + b0 * l, l, w.data(), l, 0.0,
                  rotated.data() + b0 * l, l);
    }
    z.swap(rotated);
    if (largest < 1e6 * smallest) return;  // orthogonal to ~1e-10 after one pass
    bound = static_cast<double>(l) + 1.0;  // now |Z^T Z| <= 1 entrywise, summed over rows
  }
}

}  // namespace

Svd truncated_svd(const Csr& x, RowShard shard, std::uint64_t total_rows, std::int64_t V, int dims,
                  std::uint64_t seed, const Comm& comm, int power_iterations) {
  if (dims < 1 || dims > V || static_cast<std::uint64_t>(dims) > total_rows) {
    fail_call("truncated_svd: dims must be in 1..min(V, rows)");
  }
  if (x.rows() != shard.size()) fail_call("truncated_svd: local rows do not match the shard");
  const int l = static_cast<int>(std::min<std::int64_t>({V, static_cast<std::int64_t>(total_rows), dims + 10}));
  const Columns cols = by_column(x, V);
  const std::uint64_t rows = shard.size();
  const double n = static_cast<double>(total_rows);
  // Bounds for the exact sums. Rows of X are unit vectors; Z is Gaussian (|g| < 9: u1 >=
  // 2^-53) or has orthonormal columns, so an entry of X^T Z sums partials of magnitude at
  // most 9n, and Z = X X^T Z has column norms <= sigma_1^2 <= |X|_F^2 = n.
  const double y_bound = 9.0 * n + 1.0, gram_bound = 81.0 * n + n * n + 1.0;

  // Subspace iteration in the row space, Z [rows, l] sharded like X: Z = orth(X X^T Z),
  // from a Gaussian Z drawn by global row.
  std::vector<double> z(rows * l), y;
  for (std::uint64_t i = 0; i < rows; ++i) {
    for (int c = 0; c < l; ++c) z[i * l + c] = normal(seed, (shard.begin + i) * l + c);
  }
  for (int it = 0; it < power_iterations; ++it) {
    y = transpose_times(cols, shard, V, z, l, y_bound, comm);
    times(cols, rows, V, y, l, z);
    orthonormalise_rows(z, rows, l, gram_bound, comm);
  }
  // Z spans the leading left singular vectors; B = Z^T X = Y^T with Y = X^T Z, and
  // Y^T Y = W diag(s^2) W^T gives X's leading right singular vectors Y W diag(s)^-1.
  y = transpose_times(cols, shard, V, z, l, y_bound, comm);
  std::vector<double> w(static_cast<std::size_t>(l) * l), eigenvalues;
  // w[l, l] (upper, column-major) = y^T y for y[V, l] row-major (= y^T column-major)
  cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, l, static_cast<int>(V), 1.0, y.data(), l, 0.0, w.data(), l);
  symmetric_eigen(w, l, eigenvalues);
  // Eigenvalues ascending: the last `dims` columns, largest first, scaled by 1/s, as the
  // columns of top[l, dims] (row-major).
  std::vector<double> top(static_cast<std::size_t>(l) * dims);
  Svd out;
  out.singular_values.resize(dims);
  for (int d = 0; d < dims; ++d) {
    const int col = l - 1 - d;
    const double s = std::sqrt(std::max(0.0, eigenvalues[col]));
    out.singular_values[d] = s;
    const double inv = s > 1e-12 * std::sqrt(std::max(eigenvalues.back(), 0.0)) ? 1.0 / s : 0.0;
    for (int a = 0; a < l; ++a) top[a * dims + d] = w[static_cast<std::size_t>(col) * l + a] * inv;
  }
  out.term_vectors.assign(static_cast<std::size_t>(V) * dims, 0.0);
  // term_vectors[V, dims] = y[V, l] top[l, dims]
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(V), dims, l, 1.0, y.data(), l, top.data(),
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
