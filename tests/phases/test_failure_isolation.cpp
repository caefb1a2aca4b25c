// One expert's failure stays in its group: past the non-finite guard (NaN injected on
// rank 0 of the group, before the reduction) or with an unreadable checkpoint, the expert is
// recorded failed in forest.h5, its group goes on, the other group's expert is bitwise what
// an undisturbed run gives, the phase ends with ModelsFailed, and a re-run trains only the
// failed one: from its last good checkpoint, to the undisturbed run's result.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "btm/collective_error.hpp"
#include "btm/forest.hpp"
#include "btm/h5.hpp"
#include "btm/model/model_file.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/trainer.hpp"
#include "support/test_paths.hpp"
#include "tiny_deck.hpp"

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kDeck = {"experts.domains=[\"scripture\", \"code-go\"]", "train.checkpoint_every=4",
                                        "train.max_skipped_steps=2"};

class FailureIsolation : public ::testing::Test {
 protected:
  // One prepared corpus, seed and undisturbed experts run, shared by the tests.
  static void SetUpTestSuite() {
    base_ = btm::test::fresh_dir("isolation_base");
    const btm::Deck deck = btm::test::tiny_deck(base_, kDeck);
    ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts"}, btm::Comm::world()));
  }

  // A run folder holding the shared data.h5 and seed.h5 only.
  static btm::Deck fresh_run(const std::string& name) {
    const auto dir = btm::test::fresh_dir(name);
    const btm::Deck deck = btm::test::tiny_deck(dir, kDeck);
    if (btm::Comm::world().is_root()) {
      fs::copy_file(base_ / "data.h5", deck.data_file());
      fs::copy_file(base_ / "seed.h5", deck.seed_file());
    }
    btm::Comm::world().barrier();
    return deck;
  }

  static std::vector<float> undisturbed(const std::string& expert) {
    return btm::load_model(btm::test::tiny_deck(base_, kDeck).expert_file(expert)).params;
  }

  static fs::path base_;
};
fs::path FailureIsolation::base_;

// The phase's ModelsFailed message, or "" when it finished.
std::string failed_phase(const btm::Deck& deck, const btm::TrainControl& control = {}) {
  try {
    EXPECT_EQ(btm::run_experts(deck, btm::Comm::world(), control), btm::PhaseStatus::done);
  } catch (const btm::ModelsFailed& e) {
    return e.what();
  }
  btm::Comm::world().barrier();  // as run_phases: rank 0 has written forest.h5
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_F(FailureIsolation, AnExpertPastTheGuardFailsAloneAndARerunTrainsOnlyIt) {
  const btm::Deck deck = fresh_run("isolation_nan");
  btm::TrainControl nan_from_step_6;
  nan_from_step_6.nonfinite_at = [](const std::string& model, std::int64_t step) {
    return model == "scripture" && step >= 6;
  };
  const std::string msg = failed_phase(deck, nan_from_step_6);
  EXPECT_TRUE(contains(msg, "1 expert(s) failed")) << msg;
  EXPECT_TRUE(contains(msg, "scripture: phase=experts model=scripture: the loss is not finite at step 8 (3 step(s) "
                            "in a row, train.max_skipped_steps = 2); the last good checkpoint (step 4)"))
      << msg;
  EXPECT_TRUE(contains(msg, "run the same command again")) << msg;

  // The other expert: finished, registered, bitwise the undisturbed run's.
  btm::Forest forest = btm::Forest::load(deck.forest_file());
  ASSERT_NE(forest.find("code-go"), nullptr);
  EXPECT_EQ(forest.find("scripture"), nullptr);
  EXPECT_EQ(btm::load_model(deck.expert_file("code-go")).params, undisturbed("code-go"));
  // The failed one: recorded with its reason and time, its last good checkpoint intact.
  ASSERT_EQ(forest.failures().size(), 1u);
  EXPECT_EQ(forest.failures()[0].name, "scripture");
  EXPECT_TRUE(contains(forest.failures()[0].reason, "not finite at step 8")) << forest.failures()[0].reason;
  EXPECT_EQ(forest.failures()[0].time.size(), 20u) << forest.failures()[0].time;  // 2026-01-02T03:04:05Z
  EXPECT_FALSE(btm::model_is_complete(deck.expert_file("scripture")));
  EXPECT_EQ(btm::read_train_state(deck.expert_file("scripture")).step, 4);
  // forest.h5 itself lists the failure, under /failed, in the current format.
  {
    const btm::h5::File f(deck.forest_file(), btm::h5::File::Mode::read);
    EXPECT_EQ(f.read_strings("/failed/name"), std::vector<std::string>{"scripture"});
    EXPECT_EQ(f.format_version(), btm::h5::kFormatVersion);
  }
  btm::Comm::world().barrier();

  // The re-run: code-go is not trained again, scripture resumes and ends as if nothing happened.
  const auto code_go_written = fs::last_write_time(deck.expert_file("code-go"));
  EXPECT_EQ(failed_phase(deck), "");
  EXPECT_EQ(fs::last_write_time(deck.expert_file("code-go")), code_go_written);
  forest = btm::Forest::load(deck.forest_file());
  EXPECT_NE(forest.find("scripture"), nullptr);
  EXPECT_TRUE(forest.failures().empty());
  EXPECT_EQ(btm::load_model(deck.expert_file("scripture")).params, undisturbed("scripture"));
  EXPECT_FALSE(btm::h5::File(deck.forest_file(), btm::h5::File::Mode::read).exists("/failed"));
}

TEST_F(FailureIsolation, AFewNonFiniteStepsAreSkippedAndTrainingGoesOn) {
  const btm::Deck deck = fresh_run("isolation_skip");
  btm::TrainControl nan_at_3_and_4;
  nan_at_3_and_4.nonfinite_at = [](const std::string& model, std::int64_t step) {
    return model == "scripture" && (step == 3 || step == 4);
  };
  EXPECT_EQ(failed_phase(deck, nan_at_3_and_4), "");
  const btm::Checkpoint ck = btm::load_checkpoint(deck.expert_file("scripture"));
  EXPECT_TRUE(ck.state.complete);
  ASSERT_GE(ck.state.metrics.loss.size(), 5u);
  EXPECT_TRUE(std::isnan(ck.state.metrics.loss[2]));  // step 3: skipped, recorded as it was
  EXPECT_TRUE(std::isnan(ck.state.metrics.loss[3]));
  EXPECT_TRUE(std::isfinite(ck.state.metrics.loss[4]));
  for (float p : ck.model.params) ASSERT_TRUE(std::isfinite(p));
  // Two updates fewer than the undisturbed run; the other expert is untouched.
  EXPECT_NE(ck.model.params, undisturbed("scripture"));
  EXPECT_EQ(btm::load_model(deck.expert_file("code-go")).params, undisturbed("code-go"));
}

TEST_F(FailureIsolation, AnUnreadableCheckpointFailsOnlyItsExpert) {
  const btm::Deck deck = fresh_run("isolation_corrupt");
  if (btm::Comm::world().is_root()) {
    fs::create_directories(deck.expert_file("scripture").parent_path());
    btm::test::write_text(deck.expert_file("scripture"), "not an HDF5 file\n");
  }
  btm::Comm::world().barrier();
  const std::string msg = failed_phase(deck);
  EXPECT_TRUE(contains(msg, "scripture: not a readable HDF5 file: " + deck.expert_file("scripture").string())) << msg;
  const btm::Forest forest = btm::Forest::load(deck.forest_file());
  EXPECT_NE(forest.find("code-go"), nullptr);
  ASSERT_EQ(forest.failures().size(), 1u);
  EXPECT_EQ(btm::load_model(deck.expert_file("code-go")).params, undisturbed("code-go"));
  // Nothing of the bad file was overwritten: the user decides what to do with it.
  EXPECT_EQ(btm::test::read_text(deck.expert_file("scripture")), "not an HDF5 file\n");
}
