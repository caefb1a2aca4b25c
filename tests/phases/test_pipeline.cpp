// The whole BTM pipeline (prepare -> seed -> experts -> baseline -> average -> eval) on
// the tiny deck, in process, at 1, 2 and 4 ranks; then a re-run that redoes nothing.
#include <gtest/gtest.h>

#include <filesystem>

#include "btm/comm.hpp"
#include "btm/error.hpp"
#include "btm/expert_training.hpp"
#include "btm/forest.hpp"
#include "btm/h5.hpp"
#include "btm/model/model_file.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"
#include "support/error_of.hpp"
#include "tiny_deck.hpp"

using btm::test::error_of;

namespace fs = std::filesystem;

TEST(Pipeline, EveryPhaseWritesItsFilesAndARerunRedoesNothing) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline");
  const btm::Deck deck = btm::test::tiny_deck(dir);
  ASSERT_TRUE(btm::run_phases(deck, btm::kAllPhases, world));

  EXPECT_TRUE(fs::exists(deck.data_file()));
  EXPECT_TRUE(btm::model_is_complete(deck.seed_file()));
  EXPECT_TRUE(btm::model_is_complete(deck.baseline_file()));
  const btm::Forest forest = btm::Forest::load(deck.forest_file());
  ASSERT_EQ(forest.experts().size(), 3u);
  for (const auto& e : forest.experts()) {
    EXPECT_EQ(e.name, e.domain);
    EXPECT_EQ(e.parent, "seed");
    EXPECT_EQ(e.tokens, 2048u);
    EXPECT_TRUE(btm::model_is_complete(forest.resolve(e))) << e.name;
    EXPECT_EQ(btm::read_train_state(forest.resolve(e)).cursor_domains, std::vector<std::string>{e.domain});
  }
  EXPECT_TRUE(fs::exists(deck.average_file("uniform")));
  for (const char* d : {"scripture", "code-go", "dictionary", "tech-lexicon"}) {
    EXPECT_TRUE(fs::exists(deck.average_file(std::string("posterior-") + d))) << d;
  }
  // The baseline matches the experts' compute: 3 experts x 2048 tokens.
  EXPECT_EQ(btm::read_train_state(deck.baseline_file()).tokens, 3u * 2048u);

  btm::h5::File eval(deck.eval_file(), btm::h5::File::Mode::read);
  const auto methods = eval.read_strings("/results/method");
  const auto domains = eval.read_strings("/results/domain");
  const auto ppl = eval.read<double>("/results/perplexity");
  ASSERT_EQ(methods.size(), ppl.size());
  // seed, baseline, 3 experts, avg-uniform and ensemble on 4 domains, avg-posterior on each.
  EXPECT_EQ(methods.size(), 7u * 4u + 4u);
  for (double p : ppl) EXPECT_TRUE(p > 1.0 && p < 1000.0) << p;

  // Everything is done: a re-run trains nothing and leaves the models untouched.
  world.barrier();
  const auto seed_time = fs::last_write_time(deck.seed_file());
  const auto expert_time = fs::last_write_time(deck.expert_file("code-go"));
  world.barrier();
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts", "baseline"}, world));
  EXPECT_EQ(fs::last_write_time(deck.seed_file()), seed_time);
  EXPECT_EQ(fs::last_write_time(deck.expert_file("code-go")), expert_time);
}

TEST(Pipeline, AveragingIdenticalExpertsReproducesTheExpert) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_identical");
  btm::Deck deck = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\"]", "average.posterior=false"});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts"}, world));
  if (world.is_root()) {
    // A second forest entry pointing at a copy of the same expert.
    fs::copy_file(deck.expert_file("scripture"), deck.expert_file("scripture-copy"));
    btm::Forest::update(deck.forest_file(), [&](btm::Forest& f) {
      btm::ForestEntry e = *f.find("scripture");
      e.name = "scripture-copy";
      e.file = "experts/scripture-copy.h5";
      f.add(e);
    });
  }
  world.barrier();
  btm::run_average(deck, world);
  world.barrier();
  const auto expert = btm::load_model(deck.expert_file("scripture"));
  const auto average = btm::load_model(deck.average_file("uniform"));
  ASSERT_EQ(expert.params.size(), average.params.size());
  for (std::size_t i = 0; i < expert.params.size(); ++i) ASSERT_EQ(expert.params[i], average.params[i]) << i;
}

TEST(Pipeline, GrowingTheForestBranchesNewExpertsFromThePosteriorAverage) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_grow");
  // A first forest of two experts from the seed ...
  btm::Deck first = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\", \"code-go\"]"});
  ASSERT_TRUE(btm::run_phases(first, {"prepare", "seed", "experts"}, world));
  // ... then a third expert branched from their average weighted by its domain posterior.
  btm::Deck grow = btm::test::tiny_deck(dir, {"experts.domains=[\"dictionary\"]", "experts.init=\"posterior_average\""});
  ASSERT_TRUE(btm::run_phases(grow, {"experts"}, world));
  const btm::Forest forest = btm::Forest::load(grow.forest_file());
  ASSERT_EQ(forest.experts().size(), 3u);
  const std::string parent = forest.find("dictionary")->parent;
  EXPECT_EQ(parent.rfind("posterior_average(scripture:", 0), 0u) << parent;
  EXPECT_NE(parent.find("code-go:"), std::string::npos) << parent;
}

TEST(Pipeline, ANewExpertCanBranchFromANamedExpert) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_named");
  btm::Deck first = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\"]"});
  ASSERT_TRUE(btm::run_phases(first, {"prepare", "seed", "experts"}, world));
  btm::Deck named = btm::test::tiny_deck(dir, {"experts.domains=[\"code-go\"]", "experts.init=\"scripture\""});
  ASSERT_TRUE(btm::run_phases(named, {"experts"}, world));
  EXPECT_EQ(btm::Forest::load(named.forest_file()).find("code-go")->parent, "scripture");
}

TEST(Pipeline, ExplicitWeightedAverageFollowsItsWeights) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_weighted");
  btm::Deck deck = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\", \"code-go\"]", "average.posterior=false",
                                              "average.uniform=false",
                                              "average.weighted=[{name=\"mostly-go\", weights={scripture=1, code-go=3}}]"});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts", "average"}, world));
  const auto a = btm::load_model(deck.expert_file("scripture")).params;
  const auto b = btm::load_model(deck.expert_file("code-go")).params;
  const auto avg = btm::load_model(deck.average_file("mostly-go")).params;
  for (std::size_t i = 0; i < avg.size(); i += 97) {
    EXPECT_NEAR(avg[i], 0.25 * a[i] + 0.75 * b[i], 1e-6) << i;
  }
  EXPECT_FALSE(std::filesystem::exists(deck.average_file("uniform")));
}

TEST(Pipeline, KeptOptimizerStateContinuesItsBiasCorrectionFromTheParentsSteps) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_kept_moments");
  btm::Deck first = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\"]", "experts.reset_optimizer=false"});
  ASSERT_TRUE(btm::run_phases(first, {"prepare", "seed", "experts"}, world));
  const btm::TrainState seed = btm::read_train_state(first.seed_file());
  const btm::TrainState scripture = btm::read_train_state(first.expert_file("scripture"));
  EXPECT_EQ(seed.adam_step_offset, 0);
  EXPECT_EQ(scripture.adam_step_offset, seed.step);
  // A branch of that expert continues from the seed's and the expert's steps together.
  btm::Deck named = btm::test::tiny_deck(dir, {"experts.domains=[\"code-go\"]", "experts.init=\"scripture\"",
                                               "experts.reset_optimizer=false"});
  ASSERT_TRUE(btm::run_phases(named, {"experts"}, world));
  EXPECT_EQ(btm::read_train_state(named.expert_file("code-go")).adam_step_offset, seed.step + scripture.step);
  // Fresh moments start their bias correction at step 1.
  btm::Deck reset = btm::test::tiny_deck(dir, {"experts.domains=[\"dictionary\"]"});
  ASSERT_TRUE(btm::run_phases(reset, {"experts"}, world));
  EXPECT_EQ(btm::read_train_state(reset.expert_file("dictionary")).adam_step_offset, 0);
}

TEST(Pipeline, AnUnfinishedCheckpointInAnExpertsPlaceIsRefusedByAverageAndEval) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_unfinished_expert");
  btm::Deck deck = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\", \"code-go\"]", "average.posterior=false"});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts"}, world));
  if (world.is_root()) {
    btm::h5::File f(deck.expert_file("code-go"), btm::h5::File::Mode::read_write);
    f.set_attr<std::int8_t>("/train", "complete", 0);
  }
  world.barrier();
  const std::string expected = "lists expert \"code-go\" with file " + deck.expert_file("code-go").string() +
                               ", which is an unfinished training checkpoint";
  const std::string average = error_of([&] { btm::run_average(deck, world); });
  EXPECT_NE(average.find(expected), std::string::npos) << average;
  const std::string eval = error_of([&] { btm::run_eval(deck, world); });
  EXPECT_NE(eval.find(expected), std::string::npos) << eval;
}

TEST(Pipeline, EvalLeavesOutAveragesTheDeckNoLongerAsksFor) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_stale_averages");
  btm::Deck deck = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\", \"code-go\"]"});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts", "average"}, world));
  ASSERT_TRUE(fs::exists(deck.average_file("uniform")));
  btm::Deck without = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\", \"code-go\"]", "average.uniform=false",
                                                 "average.posterior=false"});
  btm::run_eval(without, world);
  btm::h5::File eval(without.eval_file(), btm::h5::File::Mode::read);
  for (const auto& m : eval.read_strings("/results/method")) {
    EXPECT_NE(m, "avg-uniform");
    EXPECT_NE(m, "avg-posterior");
  }
}

TEST(Pipeline, ForestAddRefusesUnfinishedModelsPhaseNamesTakenNamesAndOtherTokenizers) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_forest_add");
  btm::Deck deck = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\", \"code-go\"]"});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts"}, world));
  if (!world.is_root()) return;  // one process edits the manifest
  const auto forest = deck.forest_file();
  const auto go = deck.expert_file("code-go");
  auto add = [&](const fs::path& model, const std::string& name, bool replace = false) {
    return error_of([&] { btm::add_expert_file(forest, model, name, "", replace); });
  };
  EXPECT_NE(add(go, "scripture").find("already has an expert named 'scripture'"), std::string::npos);
  EXPECT_EQ(btm::Forest::load(forest).find("scripture")->file, "experts/scripture.h5");  // untouched
  EXPECT_NE(add(deck.seed_file(), "seed").find("'seed' is the name of a phase's model"), std::string::npos);
  EXPECT_EQ(add(deck.seed_file(), "generalist"), "");
  EXPECT_EQ(btm::Forest::load(forest).experts().size(), 3u);
  EXPECT_EQ(add(go, "scripture", /*replace=*/true), "");
  EXPECT_EQ(btm::Forest::load(forest).find("scripture")->file, "experts/code-go.h5");

  // An unfinished checkpoint, and a model on another tokenizer.
  const auto unfinished = dir / "unfinished.h5";
  fs::copy_file(go, unfinished);
  btm::h5::File(unfinished, btm::h5::File::Mode::read_write).set_attr<std::int8_t>("/train", "complete", 0);
  EXPECT_NE(add(unfinished, "late").find("is not a finished model"), std::string::npos);
  const auto foreign = dir / "foreign.h5";
  btm::ModelFile m = btm::load_model(go);
  m.tokenizer.model += "another tokenizer";
  btm::save_model(foreign, m);
  EXPECT_NE(add(foreign, "foreign").find("uses another tokenizer than the forest's experts"), std::string::npos);
  EXPECT_EQ(btm::Forest::load(forest).find("foreign"), nullptr);
}

TEST(Pipeline, AnMoeModelOnABackendWithoutMoeKernelsIsRefusedBeforeAnyPhase) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("pipeline_moe_cuda");
  const btm::Deck deck = btm::test::tiny_deck(dir, {"model.num_local_experts=2", "run.backend=\"cuda\""});
  const std::string err = error_of([&] { btm::run_phases(deck, {"prepare", "seed"}, world); });
  EXPECT_NE(err.find("model.num_local_experts = 2: MoE layers are not implemented on the cuda backend yet; "
                     "use backend = \"cpu\""),
            std::string::npos)
      << err;
  EXPECT_FALSE(fs::exists(deck.data_file()));  // nothing was done
}
