#include "btm/cluster/exact_sum.hpp"

#include <cmath>

#include "btm/error.hpp"

namespace btm::cluster {

ExactSum::ExactSum(std::size_t n, double bound) : acc_(n, 0) {
  if (!(bound > 0) || !std::isfinite(bound)) fail_call("ExactSum: bound must be positive and finite");
  // |total| * scale <= 2^61 leaves a factor 4 of headroom below the int64 limit.
  scale_ = std::ldexp(1.0, 61 - std::ilogb(bound) - 1);
}

// Truncation toward zero (a plain conversion, vectorised) is as deterministic as rounding.
void ExactSum::add(std::size_t i, double partial) { acc_[i] += static_cast<std::int64_t>(partial * scale_); }

void ExactSum::add(std::size_t offset, const double* partial, std::size_t count) {
  std::int64_t* acc = acc_.data() + offset;  // [count]
  const double scale = scale_;
  for (std::size_t i = 0; i < count; ++i) acc[i] += static_cast<std::int64_t>(partial[i] * scale);
}

void ExactSum::allreduce(const Comm& comm) {
  if (comm.size() == 1 || acc_.empty()) return;
  // In slices: MPI counts are int.
  constexpr std::size_t kSlice = std::size_t(1) << 28;
  for (std::size_t off = 0; off < acc_.size(); off += kSlice) {
    const int n = static_cast<int>(std::min(kSlice, acc_.size() - off));
    BTM_MPI(MPI_Allreduce(MPI_IN_PLACE, acc_.data() + off, n, MPI_INT64_T, MPI_SUM, comm.handle()));
  }
}

std::vector<double> ExactSum::values() const {
  std::vector<double> out(acc_.size());
  for (std::size_t i = 0; i < acc_.size(); ++i) out[i] = value(i);
  return out;
}

}  // namespace btm::cluster
