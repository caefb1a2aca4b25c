// The NCCL allreducer at 1 and 2 ranks. Two ranks need two GPUs (NCCL refuses two ranks of
// one communicator on one device), so that case skips on a one-GPU node; the group test
// uses one-rank communicators and runs anywhere.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <vector>

#include "btm/comm.hpp"
#include "gpu_test_util.hpp"

namespace btm::test {
namespace {

using Kind = Buffer::Kind;

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

// Rank r contributes r + 1 + i/n to element i; the sum is known in closed form (exact in fp32
// for these small integers and halves).
std::vector<float> contribution(int rank, std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = float(rank + 1) + float(i % 4) * 0.5f;
  return v;
}

TEST(CudaNccl, AllreduceSumsOverTheCommunicator) {
  const Comm world = Comm::world();
  if (world.size() > device_count()) GTEST_SKIP() << "needs one GPU per rank";
  auto gpu = make_backend("cuda");
  const std::size_t n = (1 << 20) + 3;
  Buffer data(*gpu, Kind::f32, n, contribution(world.rank(), n));
  auto reducer = gpu->make_allreducer(world);
  reducer->sum(data.f32(), n);
  gpu->synchronize();
  std::vector<float> want(n, 0.f);
  for (int r = 0; r < world.size(); ++r) {
    const auto c = contribution(r, n);
    for (std::size_t i = 0; i < n; ++i) want[i] += c[i];
  }
  expect_close(data.read(), want, 0, 0, "allreduce sum");
  EXPECT_TRUE(data.guard_intact());
  reducer->sum(data.f32(), 0);  // empty: a no-op
}

// Expert groups: every rank in its own group; a group's sum must contain only its own data.
TEST(CudaNccl, GroupsNeverMix) {
  const Comm world = Comm::world();
  OwnedComm group(world, world.rank(), 0);
  auto gpu = make_backend("cuda");
  const std::size_t n = 4099;
  const auto mine = contribution(world.rank(), n);
  Buffer data(*gpu, Kind::f32, n, mine);
  auto reducer = gpu->make_allreducer(group.view());
  reducer->sum(data.f32(), n);
  gpu->synchronize();
  expect_close(data.read(), mine, 0, 0, "one-rank group sum");
}

}  // namespace
}  // namespace btm::test
