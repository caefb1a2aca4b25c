// Gradient allreduce over a communicator with MPI: in place, in chunks that fit MPI's int
// counts; blocking (sum) or as non-blocking buckets (start_sum, progress, wait) that overlap
// the rest of a backward pass.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "backend/cpu/cpu_kernels.hpp"
#include "btm/error.hpp"

namespace btm::cpu {

namespace {

class MpiAllreducer final : public Allreducer {
 public:
  explicit MpiAllreducer(MPI_Comm comm) : comm_(comm) {}

  void sum(float* data /*[n]*/, std::size_t n) override {
    constexpr std::size_t max_count = INT_MAX;
    for (std::size_t done = 0; done < n;) {
      const std::size_t count = std::min(max_count, n - done);
      BTM_MPI(MPI_Allreduce(MPI_IN_PLACE, data + done, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                            comm_));
      done += count;
    }
  }

  void start_sum(float* data /*[n]*/, std::size_t n) override {
    constexpr std::size_t max_count = INT_MAX;
    for (std::size_t done = 0; done < n;) {
      const std::size_t count = std::min(max_count, n - done);
      MPI_Request& r = pending_.emplace_back(MPI_REQUEST_NULL);
      BTM_MPI(MPI_Iallreduce(MPI_IN_PLACE, data + done, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                             comm_, &r));
      done += count;
    }
  }

  // MPI advances non-blocking collectives only inside MPI calls: a test of the pending
  // requests is what moves them on while this rank computes.
  void progress() override {
    if (pending_.empty()) return;
    int done = 0;
    BTM_MPI(MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE));
    if (done) pending_.clear();
  }

  void wait() override {
    if (pending_.empty()) return;
    BTM_MPI(MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE));
    pending_.clear();
  }

 private:
  MPI_Comm comm_;  // not owned: the Comm passed to make_allreducer must outlive this object
  std::vector<MPI_Request> pending_;  // started by start_sum, completed by wait
};

}  // namespace

std::unique_ptr<Allreducer> make_mpi_allreducer(const Comm& comm) {
  return std::make_unique<MpiAllreducer>(comm.handle());
}

}  // namespace btm::cpu
