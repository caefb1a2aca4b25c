#pragma once
// Sums of doubles that come out bit-identical whatever the rank count and the order of the
// contributions: every partial sum is converted once (truncated) to a 64-bit fixed-point integer (scale
// 2^s chosen from a bound on the magnitude of the total), and integers add exactly, in any
// order, across ranks too. Callers add per-block partial sums of a rank-independent block
// partition (one conversion per block, not per term), so the result depends only on the
// data. Resolution: bound * 2^-61 per conversion.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "btm/comm.hpp"

namespace btm::cluster {

class ExactSum {
 public:
  // n sums; for each, the magnitudes of all partials added (on all ranks) sum to at most `bound`.
  ExactSum(std::size_t n, double bound);

  std::size_t size() const { return acc_.size(); }
  void add(std::size_t i, double partial);
  // partial[count] into sums [offset, offset + count).
  void add(std::size_t offset, const double* partial, std::size_t count);
  void allreduce(const Comm& comm);  // every rank then holds the total over all ranks
  double value(std::size_t i) const { return static_cast<double>(acc_[i]) / scale_; }
  std::vector<double> values() const;

 private:
  std::vector<std::int64_t> acc_;
  double scale_ = 1;
};

}  // namespace btm::cluster
