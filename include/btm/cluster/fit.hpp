#pragma once
// The distributed steps of fitting a C-BTM clustering. Documents (rows) are sharded over the
// ranks in contiguous ranges of whole blocks of kBlockRows rows; every sum over rows is
// formed per block and accumulated exactly (ExactSum), so results are identical at any
// rank count. The dense linear algebra is LAPACK/BLAS (OpenBLAS).
#include <cstdint>
#include <string>
#include <vector>

#include "btm/cluster/clustering.hpp"
#include "btm/comm.hpp"

namespace btm::cluster {

inline constexpr std::uint64_t kBlockRows = 64;

// Rows [begin, end) of `total` for `rank` of `ranks`: whole blocks, as even as possible.
struct RowShard {
  std::uint64_t begin = 0, end = 0;
  std::uint64_t size() const { return end - begin; }
};
RowShard shard_rows(std::uint64_t total, int rank, int ranks);

// Term counts of this rank's documents, terms numbered locally.
struct LocalCounts {
  std::vector<std::string> terms;  // local id -> term
  std::vector<std::vector<std::pair<std::int32_t, double>>> docs;  // per document: (local id, count)
};
LocalCounts count_terms(const std::vector<std::string>& texts);

// The vocabulary (sorted) and idf of the documents of all ranks: document frequencies
// summed exactly; idf = ln((1 + n) / (1 + df)) + 1 (scikit-learn's smooth idf), n = total
// documents. Also returns, per local term, its vocabulary index.
struct Vocabulary {
  std::vector<std::string> terms;
  std::vector<double> idf;
  std::vector<std::int32_t> local_to_global;
};
Vocabulary fit_vocabulary(const LocalCounts& local, std::uint64_t total_docs, const Comm& comm);

// Compressed sparse rows.
struct Csr {
  std::vector<std::uint64_t> row_ptr = {0};  // [rows + 1]
  std::vector<std::int32_t> col;             // [nnz]
  std::vector<double> val;                   // [nnz]
  std::uint64_t rows() const { return row_ptr.size() - 1; }
};

// (id, count) pairs of a list of ids, ids ascending.
std::vector<std::pair<std::int32_t, double>> run_lengths(std::vector<std::int32_t> ids);

// One document's L2-normalised tf-idf vector from its (vocabulary index, count) pairs.
SparseVector tfidf_vector(std::vector<std::pair<std::int32_t, double>> counts, const std::vector<double>& idf);
Csr tfidf_rows(const LocalCounts& local, const Vocabulary& vocabulary);

// Truncated SVD of the row-sharded matrix X [total_rows, V] (this rank's rows start at
// `shard.begin`, a block boundary): the top `dims` right singular vectors (dims <= V and
// <= total_rows), by randomised subspace iteration (Halko et al.; l = dims + 10 vectors,
// `power_iterations` passes of Z = orth(X X^T Z) from a Gaussian start drawn from `seed`,
// as scikit-learn's TruncatedSVD), orthonormalised through LAPACK eigendecompositions of
// l x l Gram matrices. Signs: each component's largest-magnitude entry is positive.
struct Svd {
  std::vector<double> term_vectors;     // [V, dims]: component d of term j at j * dims + d
  std::vector<double> singular_values;  // [dims], descending
};
Svd truncated_svd(const Csr& x, RowShard shard, std::uint64_t total_rows, std::int64_t V, int dims,
                  std::uint64_t seed, const Comm& comm, int power_iterations = 5);

// k-means over the row-sharded unit embeddings e [shard.size(), dims] (all ranks together
// `total_rows`). Greedy k-means++ start from `seed`; Lloyd iterations whose assignment step
// is exact balanced assignment (balanced = true; the n x k distances are gathered) or the
// nearest centroid; at most `iterations`, stopping when no label changes. An empty cluster
// keeps its centroid.
struct KMeans {
  std::vector<double> centroids;  // [k, dims]
  std::vector<int> labels;        // [total_rows]: every row's cluster, on every rank
  int iterations = 0;             // Lloyd iterations run
  double inertia = 0;             // sum of squared distances to the assigned centroids
};
KMeans fit_kmeans(const std::vector<double>& e, RowShard shard, std::uint64_t total_rows, int dims, int k,
                  bool balanced, int iterations, std::uint64_t seed, const Comm& comm);

// Centroids [k, dims] = the mean embedding of each label's rows (zero for an empty label).
std::vector<double> label_means(const std::vector<double>& e, RowShard shard, const std::vector<int>& labels,
                                int dims, int k, const Comm& comm);

// Every rank's rows of a row-sharded array of `width` values per row, on every rank, in
// row order.
template <class T>
std::vector<T> gather_rows(const std::vector<T>& local, RowShard shard, std::uint64_t total_rows, int width,
                           const Comm& comm);

}  // namespace btm::cluster
