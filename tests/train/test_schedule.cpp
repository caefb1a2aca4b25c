#include <gtest/gtest.h>

#include "btm/train/schedule.hpp"

TEST(LrSchedule, WarmsUpLinearlyThenDecaysByCosineToTheFloor) {
  btm::LrSchedule s{1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(1), 0.1);
  EXPECT_DOUBLE_EQ(s.at(5), 0.5);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);  // halfway: floor + (peak - floor) / 2
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  for (long t = 11; t < 110; ++t) EXPECT_GE(s.at(t), s.at(t + 1));
}

TEST(LrSchedule, WithoutWarmupStartsAtThePeak) {
  btm::LrSchedule s{2.0, 0.0, 0, 4};
  EXPECT_NEAR(s.at(0), 2.0, 1e-12);
  EXPECT_NEAR(s.at(4), 0.0, 1e-12);
}
