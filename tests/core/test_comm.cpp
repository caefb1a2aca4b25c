#include <gtest/gtest.h>

#include "btm/comm.hpp"

using btm::Comm;

TEST(Comm, CollectivesAgreeOnEveryRank) {
  Comm w = Comm::world();
  std::vector<float> v(3, static_cast<float>(w.rank() + 1));
  w.allreduce_sum(v.data(), v.size());
  float expect = w.size() * (w.size() + 1) / 2.0f;
  for (float x : v) EXPECT_EQ(x, expect);
  EXPECT_EQ(w.allreduce_sum(std::uint64_t(1)), static_cast<std::uint64_t>(w.size()));
  EXPECT_EQ(w.allreduce_max(double(w.rank())), double(w.size() - 1));
  EXPECT_EQ(w.exclusive_prefix_sum(2), static_cast<std::uint64_t>(2 * w.rank()));
  EXPECT_EQ(w.any(w.rank() == w.size() - 1), true);
  EXPECT_EQ(w.any(false), false);
  std::string s = w.is_root() ? "from root" : "";
  w.broadcast(s);
  EXPECT_EQ(s, "from root");
  auto all = w.allgather("r" + std::to_string(w.rank()));
  ASSERT_EQ(static_cast<int>(all.size()), w.size());
  for (int r = 0; r < w.size(); ++r) EXPECT_EQ(all[r], "r" + std::to_string(r));
}

TEST(Comm, SplitGivesIndependentCommunicators) {
  Comm w = Comm::world();
  btm::OwnedComm half(w, w.rank() % 2, w.rank());
  Comm h = half.view();
  EXPECT_EQ(h.size(), (w.size() + 1 - w.rank() % 2) / 2);
  double sum = h.allreduce_sum(1.0);
  EXPECT_EQ(sum, h.size());
}
