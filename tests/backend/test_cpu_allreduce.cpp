// The cpu backend's MPI allreducer, at 1, 2 and 4 ranks.
#include <mpi.h>

#include <algorithm>
#include <iterator>

#include "backend_test_util.hpp"
#include "btm/comm.hpp"
#include "btm/error.hpp"

namespace btm::test {
namespace {

TEST(CpuAllreducer, SumsEveryElementAcrossTheCommunicatorInPlace) {
  auto be = cpu_backend();
  const Comm world = Comm::world();
  const std::size_t n = 10007;
  Vec local(n);
  // Small integers: every summation order gives the exact result.
  for (std::size_t i = 0; i < n; ++i) local[i] = float((i % 97) * (world.rank() + 1));
  auto buf = upload(*be, local);
  auto reducer = be->make_allreducer(world);
  reducer->sum(buf.f32(), n);
  const Vec got = download(*be, buf, n);
  const float ranks_sum = world.size() * (world.size() + 1) / 2.0f;
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], float(i % 97) * ranks_sum) << i;
  reducer->sum(buf.f32(), 0);  // empty: a no-op, still collective-safe
}

TEST(CpuAllreducer, EveryRankGetsBitwiseTheSameResult) {
  auto be = cpu_backend();
  const Comm world = Comm::world();
  const std::size_t n = 5000;
  auto buf = upload(*be, random_vec(n, 1000 + world.rank()));
  be->make_allreducer(world)->sum(buf.f32(), n);
  Vec got = download(*be, buf, n), root = got;
  BTM_MPI(MPI_Bcast(root.data(), int(n), MPI_FLOAT, 0, world.handle()));
  EXPECT_EQ(got, root);
}

// Buckets of uneven sizes, started one after another while the caller keeps working
// (progress between them), against one blocking sum of the whole buffer.
TEST(CpuAllreducer, BucketsStartedAndAwaitedSumLikeOneBlockingAllreduce) {
  auto be = cpu_backend();
  const Comm world = Comm::world();
  const std::size_t n = 70001;
  const std::size_t bounds[] = {0, 1, 17, 40000, 40016, 65536, n};
  const Vec local = random_vec(n, 2000 + world.rank());
  auto whole = upload(*be, local), bucketed = upload(*be, local);
  auto reducer = be->make_allreducer(world);
  reducer->sum(whole.f32(), n);
  for (std::size_t b = 0; b + 1 < std::size(bounds); ++b) {
    reducer->progress();
    reducer->start_sum(bucketed.f32() + bounds[b], bounds[b + 1] - bounds[b]);
  }
  reducer->progress();
  reducer->wait();
  reducer->wait();  // nothing pending: returns at once
  const Vec want = download(*be, whole, n), got = download(*be, bucketed, n);
  if (world.size() <= 2) {
    EXPECT_EQ(got, want);  // a + b, whatever the order: the same bits
  } else {
    // The ranks' contributions may be added in another order: rounding only.
    for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6f * world.size()) << i;
  }
  Vec root = got;  // and every rank holds the same bits
  BTM_MPI(MPI_Bcast(root.data(), int(n), MPI_FLOAT, 0, world.handle()));
  EXPECT_EQ(got, root);
}

TEST(CpuAllreducer, BucketedSumsOfSmallIntegersAreExactAtAnyRankCount) {
  auto be = cpu_backend();
  const Comm world = Comm::world();
  const std::size_t n = 3001;
  Vec local(n);
  for (std::size_t i = 0; i < n; ++i) local[i] = float((i % 89) * (world.rank() + 1));
  auto buf = upload(*be, local);
  auto reducer = be->make_allreducer(world);
  for (std::size_t b = 0; b < n; b += 1000) reducer->start_sum(buf.f32() + b, std::min<std::size_t>(1000, n - b));
  reducer->start_sum(buf.f32(), 0);  // empty bucket
  reducer->wait();
  const Vec got = download(*be, buf, n);
  const float ranks_sum = world.size() * (world.size() + 1) / 2.0f;
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], float(i % 89) * ranks_sum) << i;
}

TEST(CpuAllreducer, StaysInsideItsGroupCommunicator) {
  auto be = cpu_backend();
  const Comm world = Comm::world();
  OwnedComm group(world, world.rank() % 2, world.rank());
  const Comm g = group.view();
  Vec v(3, float(world.rank()));
  auto buf = upload(*be, v);
  be->make_allreducer(g)->sum(buf.f32(), v.size());
  float want = 0;
  for (int r = world.rank() % 2; r < world.size(); r += 2) want += float(r);
  for (float x : download(*be, buf, v.size())) EXPECT_EQ(x, want);
}

}  // namespace
}  // namespace btm::test
