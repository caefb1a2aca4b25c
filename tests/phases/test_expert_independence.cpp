// Expert groups never talk to each other while they train: every MPI call made by
// train_group_experts goes over the caller's group communicator (counted through PMPI),
// branched from the seed or from the posterior-weighted average of the forest.
#include <gtest/gtest.h>

#include "btm/data/dataset.hpp"
#include "btm/expert_training.hpp"
#include "btm/group_layout.hpp"
#include "btm/message_counter.hpp"
#include "tiny_deck.hpp"

namespace mc = btm::message_counter;

namespace {

// Trains `experts` in expert groups of the world with the message counter on; expects
// every MPI call on the caller's group communicator.
void expect_only_group_traffic(const btm::Deck& deck, const std::vector<std::string>& experts) {
  const btm::Comm world = btm::Comm::world();
  const btm::Dataset data(deck.data_file());
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

}  // namespace

TEST(ExpertIndependence, TrainingUsesOnlyTheGroupCommunicator) {
  const auto dir = btm::test::fresh_dir("independence");
  const btm::Deck deck = btm::test::tiny_deck(dir);
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed"}, btm::Comm::world()));
  const auto experts = btm::expert_names_of(deck, btm::Dataset(deck.data_file()));
  ASSERT_EQ(experts.size(), 3u);
  expect_only_group_traffic(deck, experts);
}

TEST(ExpertIndependence, BranchingFromThePosteriorAverageStaysInTheGroupToo) {
  // The domain posterior of the existing experts (forward passes over the new domain's
  // valid data) is computed by the new expert's group alone.
  const auto dir = btm::test::fresh_dir("independence_posterior");
  const btm::Deck first = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\"]"});
  ASSERT_TRUE(btm::run_phases(first, {"prepare", "seed", "experts"}, btm::Comm::world()));
  const btm::Deck grow =
      btm::test::tiny_deck(dir, {"experts.domains=[\"code-go\", \"dictionary\"]", "experts.init=\"posterior_average\""});
  expect_only_group_traffic(grow, {"code-go", "dictionary"});
  btm::Comm::world().barrier();  // every group's leader has registered its expert
  const btm::Forest forest = btm::Forest::load(grow.forest_file());
  ASSERT_NE(forest.find("dictionary"), nullptr);
  EXPECT_EQ(forest.find("dictionary")->parent.rfind("posterior_average(scripture:", 0), 0u);
}
