// Gradient allreduce over a communicator with MPI: in place, in chunks that fit MPI's int
// counts.
#include <mpi.h>

#include <algorithm>
#include <climits>

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

 private:
  MPI_Comm comm_;  // not owned: the Comm passed to make_allreducer must outlive this object
};

}  // namespace

std::unique_ptr<Allreducer> make_mpi_allreducer(const Comm& comm) {
  return std::make_unique<MpiAllreducer>(comm.handle());
}

}  // namespace btm::cpu
