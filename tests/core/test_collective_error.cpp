// agree_on_failure: a failure on any rank becomes the same CollectiveError on every rank,
// so a group can take its failure path together instead of hanging in the next collective.
#include <gtest/gtest.h>

#include "btm/collective_error.hpp"
#include "btm/comm.hpp"

namespace {

std::string collective_message(const btm::Comm& comm, const std::function<void()>& work) {
  try {
    btm::agree_on_failure(comm, work);
  } catch (const btm::CollectiveError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(CollectiveError, NothingIsThrownWhenNoRankFails) {
  const btm::Comm world = btm::Comm::world();
  int ran = 0;
  EXPECT_EQ(collective_message(world, [&] { ++ran; }), "");
  EXPECT_EQ(ran, 1);
}

TEST(CollectiveError, AFailureOnTheLastRankIsThrownOnEveryRank) {
  const btm::Comm world = btm::Comm::world();
  const std::string msg = collective_message(world, [&] {
    if (world.rank() == world.size() - 1) throw btm::Error("disk full on the last rank");
  });
  EXPECT_EQ(msg, "disk full on the last rank");
  world.barrier();  // every rank got here: nobody hangs in a collective
}

TEST(CollectiveError, TheLowestFailingRanksMessageWins) {
  const btm::Comm world = btm::Comm::world();
  const std::string msg = collective_message(world, [&] {
    if (world.rank() > 0 || world.size() == 1) throw std::runtime_error("rank " + std::to_string(world.rank()));
  });
  EXPECT_EQ(msg, world.size() == 1 ? "rank 0" : "rank 1");
}

TEST(CollectiveError, WorksOnASubCommunicatorWithoutTheOthers) {
  const btm::Comm world = btm::Comm::world();
  // Two groups; only group 0 fails, group 1 never hears of it.
  btm::OwnedComm group(world, world.rank() % 2, world.rank());
  const std::string msg = collective_message(group.view(), [&] {
    if (world.rank() % 2 == 0 && group.view().rank() == 0) throw btm::Error("group 0 failed");
  });
  EXPECT_EQ(msg, world.rank() % 2 == 0 ? "group 0 failed" : "");
}
