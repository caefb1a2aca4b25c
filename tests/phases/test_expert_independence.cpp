// Expert groups never talk to each other while they train: every MPI call made by
// train_group_experts goes over the caller's group communicator (counted through PMPI).
#include <gtest/gtest.h>

#include "btm/data/dataset.hpp"
#include "btm/expert_training.hpp"
#include "btm/group_layout.hpp"
#include "btm/message_counter.hpp"
#include "tiny_deck.hpp"

namespace mc = btm::message_counter;

TEST(ExpertIndependence, TrainingUsesOnlyTheGroupCommunicator) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("independence");
  const btm::Deck deck = btm::test::tiny_deck(dir);
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed"}, world));

  const btm::Dataset data(deck.data_file());
  const auto experts = btm::expert_names_of(deck, data);
  ASSERT_EQ(experts.size(), 3u);
  const auto layout = btm::GroupLayout::make(world.size(), static_cast<int>(experts.size()));
  const int g = layout.group_of_rank(world.rank());
  btm::OwnedComm group(world, g, world.rank());
  std::vector<std::string> mine;
  for (int e : layout.experts_of_group(g)) mine.push_back(experts[e]);
  auto backend = btm::make_backend("cpu");
  const btm::Forest forest = btm::Forest::load(deck.forest_file());

  mc::start();
  const auto status = btm::train_group_experts(deck, data, *backend, group.view(), mine, forest);
  mc::stop();
  EXPECT_EQ(status, btm::PhaseStatus::done);
  EXPECT_GT(mc::calls_on(group.view().handle()), 0u) << "the group's data-parallel traffic was not seen";
  EXPECT_EQ(mc::calls_not_on(group.view().handle()), 0u) << "expert training used another communicator";
  if (world.size() > 1 && group.view().size() < world.size()) {
    EXPECT_EQ(mc::calls_on(MPI_COMM_WORLD), 0u);
  }
}
