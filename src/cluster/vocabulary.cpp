// Sharding, term counting, the distributed vocabulary and tf-idf rows (include/btm/cluster/fit.hpp).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <unordered_map>

#include "btm/cluster/fit.hpp"
#include "btm/cluster/terms.hpp"
#include "btm/error.hpp"

namespace btm::cluster {

RowShard shard_rows(std::uint64_t total, int rank, int ranks) {
  const std::uint64_t blocks = (total + kBlockRows - 1) / kBlockRows;
  const std::uint64_t b0 = blocks * rank / ranks, b1 = blocks * (rank + 1) / ranks;
  return {std::min(total, b0 * kBlockRows), std::min(total, b1 * kBlockRows)};
}

std::vector<std::pair<std::int32_t, double>> run_lengths(std::vector<std::int32_t> ids) {
  std::sort(ids.begin(), ids.end());
  std::vector<std::pair<std::int32_t, double>> out;
  for (std::int32_t id : ids) {
    if (!out.empty() && out.back().first == id) out.back().second += 1.0;
    else out.emplace_back(id, 1.0);
  }
  return out;
}

LocalCounts count_terms(const std::vector<std::string>& texts) {
  LocalCounts out;
  TermIndex local;
  out.docs.reserve(texts.size());
  std::vector<std::int32_t> ids;
  for (const auto& text : texts) {
    ids.clear();
    for_each_term(text, [&](std::string_view t) {
      auto it = local.find(t);
      if (it == local.end()) {
        it = local.emplace(std::string(t), static_cast<std::int32_t>(out.terms.size())).first;
        out.terms.emplace_back(t);
      }
      ids.push_back(it->second);
    });
    out.docs.push_back(run_lengths(ids));
  }
  return out;
}

Vocabulary fit_vocabulary(const LocalCounts& local, std::uint64_t total_docs, const Comm& comm) {
  std::vector<std::uint64_t> df(local.terms.size(), 0);
  for (const auto& doc : local.docs) {
    for (const auto& [id, count] : doc) ++df[id];
  }
  // Every rank's (term, df) list, merged identically on every rank; integer sums are exact.
  std::string mine;
  for (std::size_t i = 0; i < local.terms.size(); ++i) mine += local.terms[i] + '\n' + std::to_string(df[i]) + '\n';
  std::map<std::string, std::uint64_t> merged;
  for (const auto& text : comm.allgather(mine)) {
    std::size_t pos = 0;
    while (pos < text.size()) {
      const std::size_t a = text.find('\n', pos), b = text.find('\n', a + 1);
      std::uint64_t n = 0;
      std::from_chars(text.data() + a + 1, text.data() + b, n);
      merged[text.substr(pos, a - pos)] += n;
      pos = b + 1;
    }
  }
  Vocabulary v;
  v.terms.reserve(merged.size());
  v.idf.reserve(merged.size());
  TermIndex index;
  for (const auto& [term, n] : merged) {
    index.emplace(term, static_cast<std::int32_t>(v.terms.size()));
    v.terms.push_back(term);
    v.idf.push_back(std::log((1.0 + total_docs) / (1.0 + n)) + 1.0);
  }
  v.local_to_global.resize(local.terms.size());
  for (std::size_t i = 0; i < local.terms.size(); ++i) v.local_to_global[i] = index.at(local.terms[i]);
  return v;
}

SparseVector tfidf_vector(std::vector<std::pair<std::int32_t, double>> counts, const std::vector<double>& idf) {
  std::sort(counts.begin(), counts.end());
  double norm = 0;
  for (auto& [j, v] : counts) {
    v *= idf[j];
    norm += v * v;
  }
  if (norm > 0) {
    const double inv = 1.0 / std::sqrt(norm);
    for (auto& [j, v] : counts) v *= inv;
  }
  return counts;
}

Csr tfidf_rows(const LocalCounts& local, const Vocabulary& vocabulary) {
  Csr x;
  for (const auto& doc : local.docs) {
    std::vector<std::pair<std::int32_t, double>> counts;
    counts.reserve(doc.size());
    for (const auto& [id, count] : doc) counts.emplace_back(vocabulary.local_to_global[id], count);
    for (const auto& [j, v] : tfidf_vector(std::move(counts), vocabulary.idf)) {
      x.col.push_back(j);
      x.val.push_back(v);
    }
    x.row_ptr.push_back(x.col.size());
  }
  return x;
}

namespace {
template <class T> MPI_Datatype mpi_type();
template <> MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }
template <> MPI_Datatype mpi_type<int>() { return MPI_INT; }
}  // namespace

template <class T>
std::vector<T> gather_rows(const std::vector<T>& local, RowShard shard, std::uint64_t total_rows, int width,
                           const Comm& comm) {
  if (local.size() != shard.size() * width) fail_call("gather_rows: local rows do not match the shard");
  std::vector<T> out(total_rows * width);
  if (comm.size() == 1) {
    std::copy(local.begin(), local.end(), out.begin());
    return out;
  }
  std::vector<int> counts(comm.size()), displs(comm.size());
  for (int r = 0; r < comm.size(); ++r) {
    const RowShard s = shard_rows(total_rows, r, comm.size());
    counts[r] = static_cast<int>(s.size() * width);
    displs[r] = static_cast<int>(s.begin * width);
  }
  BTM_MPI(MPI_Allgatherv(local.data(), static_cast<int>(local.size()), mpi_type<T>(), out.data(), counts.data(),
                         displs.data(), mpi_type<T>(), comm.handle()));
  return out;
}

template std::vector<double> gather_rows(const std::vector<double>&, RowShard, std::uint64_t, int, const Comm&);
template std::vector<int> gather_rows(const std::vector<int>&, RowShard, std::uint64_t, int, const Comm&);

}  // namespace btm::cluster
