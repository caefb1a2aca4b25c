// `btm check` end to end: the built binary, run as a plain process (no mpirun).
#include <gtest/gtest.h>

#include <filesystem>

#include "btm/forest.hpp"
#include "config/deck_test_util.hpp"
#include "support/run_btm.hpp"
#include "support/test_paths.hpp"

using btm::test::contains;

using Result = btm::test::BtmResult;
using btm::test::run_btm;

TEST(CheckCommand, QuickstartPrintsThePlanAndExitsZero) {
  auto dir = btm::test::fresh_dir("check_cli_ok");
  Result r = run_btm("check inputs/quickstart.toml --ranks 3", dir);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "Expert groups: P = 3 ranks, E = 4 experts, G = min(P, E) = 3 groups"));
  EXPECT_TRUE(contains(r.out, "scripture, go-code"));
  EXPECT_TRUE(contains(r.out, "ensemble-uniform"));
  std::filesystem::remove_all(dir);
}

TEST(CheckCommand, AnExistingForestIsCountedForTheBaseline) {
  auto dir = btm::test::fresh_dir("check_cli_forest");
  btm::Forest::update(dir / "forest.h5", [](btm::Forest& f) {
    for (const std::string name : {"old1", "old2"}) f.add({name, name, "seed", "experts/" + name + ".h5", "arch", 100});
  });
  Result r = run_btm("check inputs/quickstart.toml --ranks 2 --set run.out_dir='" + dir.string() + "'", dir);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "2 in forest.h5 (old1, old2) + 4 this deck adds (scripture, fortunes, python-docs, go-code)"))
      << r.out;
  std::filesystem::remove_all(dir);
}

TEST(CheckCommand, BadDeckFailsWithFileAndLineOnStderr) {
  auto dir = btm::test::fresh_dir("check_cli_bad");
  const auto deck = dir / "bad.toml";
  btm::test::write_text(deck, "[data]\ncorpus = \"c.jsonl\"\n\n[train]\nlr = -1\n");
  Result r = run_btm("check '" + deck.string() + "'", dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, deck.string() + ":5:6: train.lr: found -1; expected a number in (0, 10]"));
  EXPECT_EQ(r.out.find("Expert groups"), std::string::npos);
  // --set errors name the override.
  Result s = run_btm("check inputs/quickstart.toml --set train.lrr=1", dir);
  EXPECT_NE(s.exit_code, 0);
  EXPECT_TRUE(contains(s.err, "--set train.lrr=1: train.lrr: unknown key; did you mean 'lr'?"));
  std::filesystem::remove_all(dir);
}

TEST(RunCommand, UnknownPhaseIsRefusedBeforeTheDeckIsEchoedOrAnythingRuns) {
  auto dir = btm::test::fresh_dir("run_cli_bad_phase");
  Result r = run_btm("run inputs/quickstart.toml --phases prepare,sed --set run.out_dir='" + (dir / "out").string() + "'", dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "unknown phase 'sed'; expected one of: prepare, cluster, seed, experts, baseline, average, mix, finetune, eval"));
  EXPECT_EQ(r.out.find("resolved deck"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));
  std::filesystem::remove_all(dir);
}

TEST(RunCommand, AnEmptyPhaseListIsAnErrorNotEveryPhase) {
  auto dir = btm::test::fresh_dir("run_cli_empty_phases");
  for (const std::string phases : {"''", "','"}) {
    Result r = run_btm("run inputs/quickstart.toml --phases " + phases + " --set run.out_dir='" + (dir / "out").string() + "'", dir);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, "--phases names no phase")) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "out"));
  }
  std::filesystem::remove_all(dir);
}

TEST(RunCommand, HelpAfterACommandPrintsTheUsage) {
  auto dir = btm::test::fresh_dir("run_cli_help");
  for (const std::string command : {"run", "check", "inspect", "sample"}) {
    Result r = run_btm(command + " --help", dir);
    EXPECT_EQ(r.exit_code, 0) << command << ": " << r.err;
    EXPECT_TRUE(contains(r.out, "usage:")) << command;
  }
  std::filesystem::remove_all(dir);
}

TEST(RunCommand, AnOutputFolderThatCannotBeMadeIsRefusedBeforeAnyWork) {
  auto dir = btm::test::fresh_dir("run_cli_bad_out_dir");
  btm::test::write_text(dir / "a-file", "not a folder\n");
  Result r = run_btm("run inputs/quickstart.toml --set run.out_dir='" + (dir / "a-file" / "sub").string() + "'", dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "run.out_dir: cannot create the output folder " + (dir / "a-file" / "sub").string()))
      << r.err;
  EXPECT_EQ(r.out.find("resolved deck"), std::string::npos);
  std::filesystem::remove_all(dir);
}
