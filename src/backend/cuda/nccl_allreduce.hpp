#pragma once
// In-place sum over an MPI communicator with NCCL, on the backend's stream. Each Allreducer
// owns one NCCL communicator built over exactly the ranks of its MPI communicator (the
// ncclUniqueId is made on its rank 0 and broadcast over it), so expert groups never share one.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>

#include "btm/comm.hpp"
#include "btm/ops/backend.hpp"

namespace btm::gpu {

// Collective over `comm`: every rank of it must call this.
std::unique_ptr<Allreducer> make_nccl_allreducer(const Comm& comm, cudaStream_t stream, int device);

}  // namespace btm::gpu
