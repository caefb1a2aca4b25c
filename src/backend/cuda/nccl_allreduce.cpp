#include "backend/cuda/nccl_allreduce.hpp"

#include <limits>
#include <string>

#include "backend/cuda/cuda_check.hpp"
#include "btm/error.hpp"

namespace btm::gpu {

namespace {

class NcclAllreducer final : public Allreducer {
 public:
  NcclAllreducer(const Comm& comm, cudaStream_t stream, int device) : stream_(stream) {
    BTM_CUDA(cudaSetDevice(device));
    ncclUniqueId id{};
    if (comm.is_root()) BTM_NCCL(ncclGetUniqueId(&id));
    comm.broadcast(&id, sizeof id, 0);
    BTM_NCCL(ncclCommInitRank(&nccl_, comm.size(), id, comm.rank()));
  }

  ~NcclAllreducer() override {
    // Nothing may be queued on a destroyed communicator: finish the stream first. Errors
    // cannot be reported from a destructor.
    cudaStreamSynchronize(stream_);
    if (nccl_) ncclCommDestroy(nccl_);
  }

  NcclAllreducer(const NcclAllreducer&) = delete;
  NcclAllreducer& operator=(const NcclAllreducer&) = delete;

  void sum(float* device_data, std::size_t n) override {
    if (n == 0) return;
    BTM_NCCL(ncclAllReduce(device_data, device_data, n, ncclFloat, ncclSum, nccl_, stream_));
  }

 private:
  cudaStream_t stream_;
  ncclComm_t nccl_ = nullptr;
};

}  // namespace

std::unique_ptr<Allreducer> make_nccl_allreducer(const Comm& comm, cudaStream_t stream, int device) {
  return std::make_unique<NcclAllreducer>(comm, stream, device);
}

}  // namespace btm::gpu
