#include <gtest/gtest.h>

#include <set>

#include "btm/error.hpp"
#include "btm/group_layout.hpp"

using btm::GroupLayout;

// Every property of ARCHITECTURE's layout, for every (P, E) up to 64 x 24.
TEST(GroupLayout, PartitionsRanksAndExpertsForManyShapes) {
  for (int P = 1; P <= 64; ++P) {
    for (int E = 1; E <= 24; ++E) {
      auto L = GroupLayout::make(P, E);
      ASSERT_EQ(L.num_groups, std::min(P, E)) << P << "x" << E;
      int covered = 0;
      for (int g = 0; g < L.num_groups; ++g) {
        EXPECT_EQ(L.first_rank(g), g * P / L.num_groups);
        EXPECT_GE(L.group_size(g), P / L.num_groups);
        EXPECT_LE(L.group_size(g), P / L.num_groups + 1);
        for (int r = L.first_rank(g); r < L.first_rank(g) + L.group_size(g); ++r) {
          EXPECT_EQ(L.group_of_rank(r), g) << "P=" << P << " E=" << E << " rank " << r;
          ++covered;
        }
      }
      EXPECT_EQ(covered, P);
      std::set<int> experts;
      for (int g = 0; g < L.num_groups; ++g) {
        auto mine = L.experts_of_group(g);
        EXPECT_FALSE(mine.empty());
        for (int e : mine) {
          EXPECT_EQ(L.group_of_expert(e), g);
          EXPECT_TRUE(experts.insert(e).second) << "expert " << e << " assigned twice";
        }
      }
      EXPECT_EQ(static_cast<int>(experts.size()), E);
    }
  }
}

TEST(GroupLayout, FewerRanksThanExpertsTrainsSeveralPerGroup) {
  auto L = GroupLayout::make(2, 5);
  EXPECT_EQ(L.num_groups, 2);
  EXPECT_EQ(L.experts_of_group(0), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(L.experts_of_group(1), (std::vector<int>{1, 3}));
}

TEST(GroupLayout, UnevenRanksGiveGroupsOfNearlyEqualSize) {
  auto L = GroupLayout::make(7, 3);
  EXPECT_EQ(L.group_size(0), 2);
  EXPECT_EQ(L.group_size(1), 2);
  EXPECT_EQ(L.group_size(2), 3);
  EXPECT_EQ(L.group_of_rank(6), 2);
}

TEST(GroupLayout, RejectsEmptyShapes) {
  EXPECT_THROW(GroupLayout::make(0, 3), btm::Error);
  EXPECT_THROW(GroupLayout::make(4, 0), btm::Error);
}
