#include <gtest/gtest.h>

#include "btm/comm.hpp"
#include "btm/message_counter.hpp"

namespace mc = btm::message_counter;
using btm::Comm;

TEST(MessageCounter, AttributesCallsToTheCommunicatorThatCarriedThem) {
  Comm w = Comm::world();
  btm::OwnedComm sub(w, w.rank() % 2, w.rank());
  mc::start();
  sub.view().allreduce_sum(1.0);
  sub.view().allreduce_sum(2.0);
  mc::stop();
  EXPECT_EQ(mc::calls_on(sub.view().handle()), 2u);
  if (w.size() > 1) EXPECT_EQ(mc::calls_on(MPI_COMM_WORLD), 0u);
  EXPECT_EQ(mc::calls_not_on(sub.view().handle()), 0u);

  mc::start();
  w.barrier();
  mc::stop();
  EXPECT_EQ(mc::calls_on(MPI_COMM_WORLD), 1u);
  if (w.size() > 1) EXPECT_EQ(mc::calls_not_on(MPI_COMM_WORLD), 0u);
}

TEST(MessageCounter, CountsNothingWhenStopped) {
  mc::start();
  mc::stop();
  Comm::world().barrier();
  EXPECT_EQ(mc::total_calls(), 0u);
}
