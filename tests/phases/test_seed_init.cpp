// [seed] init: a pretrained model (through btm export and btm import) becomes the seed,
// as is (seed.tokens = 0) or trained further; experts branch from it. Mismatches with the
// deck's [model] or data.h5's tokenizer are refused.
#include <gtest/gtest.h>

#include <filesystem>

#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/forest.hpp"
#include "btm/model/hf.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/trainer.hpp"
#include "model/hf_fixture.hpp"
#include "support/error_of.hpp"
#include "tiny_deck.hpp"

using btm::test::error_of;
namespace fs = std::filesystem;

namespace {

// prepare on the tiny deck, then a "pretrained" model of the deck's architecture on its
// tokenizer, exported to a Hugging Face folder and imported back as `dir`/imported.h5.
fs::path pretrained(const btm::Deck& deck, const fs::path& dir, const btm::Comm& world) {
  EXPECT_TRUE(btm::run_phases(deck, {"prepare"}, world));
  const fs::path imported = dir / "imported.h5";
  if (world.is_root()) {
    const btm::Dataset data(deck.data_file());
    const btm::TokenizerBlob tok{data.tokenizer_model(), data.vocab_size(), data.bos_id(), data.eos_id()};
    const btm::ModelFile m = btm::test::hf_fixture_model(btm::resolve_model_config(deck, data), tok, 21, 0.05f);
    btm::save_model(dir / "pretrained.h5", m);
    btm::export_hf(dir / "pretrained.h5", dir / "hf", {});
    btm::save_model(imported, btm::import_hf(dir / "hf", {}));
  }
  world.barrier();
  return imported;
}

}  // namespace

TEST(SeedInit, AnImportedModelIsTheSeedAsIsAndExpertsBranchFromIt) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("seed_init");
  btm::Deck deck = btm::test::tiny_deck(dir, {"experts.domains=[\"code-go\"]"});
  const fs::path imported = pretrained(deck, dir, world);
  deck = btm::test::tiny_deck(dir, {"experts.domains=[\"code-go\"]", "seed.tokens=0", "seed.init=\"" + imported.string() + "\""});
  ASSERT_TRUE(btm::run_phases(deck, {"seed", "experts"}, world));

  const btm::ModelFile init = btm::load_model(imported);
  const btm::Checkpoint seed = btm::load_checkpoint(deck.seed_file());
  EXPECT_EQ(seed.model.params, init.params);
  EXPECT_EQ(seed.model.meta.parent, imported.string());
  EXPECT_EQ(seed.model.meta.phase, "seed");
  EXPECT_TRUE(seed.state.complete);
  EXPECT_EQ(seed.state.step, 0);
  const btm::Forest forest = btm::Forest::load(deck.forest_file());
  ASSERT_EQ(forest.experts().size(), 1u);
  EXPECT_EQ(forest.experts()[0].parent, "seed");
  EXPECT_NE(btm::load_model(deck.expert_file("code-go")).params, init.params);  // trained

  // A re-run keeps the seed; another init in its place is refused, not overwritten.
  world.barrier();
  const auto seed_time = fs::last_write_time(deck.seed_file());
  world.barrier();
  ASSERT_TRUE(btm::run_phases(deck, {"seed"}, world));
  EXPECT_EQ(fs::last_write_time(deck.seed_file()), seed_time);
  const btm::Deck other = btm::test::tiny_deck(dir, {"seed.tokens=0", "seed.init=\"" + (dir / "pretrained.h5").string() + "\""});
  const std::string msg = error_of([&] { btm::run_phases(other, {"seed"}, world); });
  EXPECT_NE(msg.find("is another seed than seed.init"), std::string::npos) << msg;
}

TEST(SeedInit, PrepareTakesTheInitTokenizerAndTrainingContinuesFromTheInitModel) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("seed_init_train");
  btm::Deck deck = btm::test::tiny_deck(dir);
  const fs::path imported = pretrained(deck, dir, world);
  // A new run: prepare takes the init model's tokenizer (data.tokenizer unset). A vanishing
  // learning rate: the trained seed stays at the init model.
  deck = btm::test::tiny_deck(dir / "run", {"seed.tokens=256", "seed.train.lr=1e-9", "seed.init=\"" + imported.string() + "\""});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed"}, world));
  const btm::ModelFile init = btm::load_model(imported);
  EXPECT_EQ(btm::Dataset(deck.data_file()).tokenizer_model(), init.tokenizer.model);
  const btm::Checkpoint seed = btm::load_checkpoint(deck.seed_file());
  EXPECT_EQ(seed.model.meta.parent, imported.string());
  EXPECT_EQ(seed.state.step, 2);
  ASSERT_EQ(seed.model.params.size(), init.params.size());
  float max_diff = 0;
  for (std::size_t i = 0; i < init.params.size(); ++i) max_diff = std::max(max_diff, std::abs(seed.model.params[i] - init.params[i]));
  EXPECT_LT(max_diff, 1e-6f);
}

TEST(SeedInit, AnotherArchitectureTokenizerOrAnUnfinishedModelIsRefused) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("seed_init_bad");
  const btm::Deck deck = btm::test::tiny_deck(dir);
  const fs::path imported = pretrained(deck, dir, world);
  const std::string init = "seed.init=\"" + imported.string() + "\"";
  auto seed_error = [&](std::vector<std::string> overrides) {
    overrides.push_back("seed.tokens=0");
    return error_of([&] { btm::run_phases(btm::test::tiny_deck(dir, overrides), {"seed"}, world); });
  };
  std::string msg = seed_error({init, "model.hidden_size=64"});
  EXPECT_NE(msg.find("holds another architecture than the deck's [model] (file vs deck: hidden_size 32 vs 64"), std::string::npos) << msg;
  if (world.is_root()) {
    btm::ModelFile m = btm::load_model(imported);
    m.tokenizer.model += "x";
    btm::save_model(dir / "foreign.h5", m);
    btm::Checkpoint ck;
    ck.model = btm::load_model(imported);
    ck.state.total_steps = 5;
    btm::save_checkpoint(dir / "unfinished.h5", ck);
  }
  world.barrier();
  msg = seed_error({"seed.init=\"" + (dir / "foreign.h5").string() + "\""});
  EXPECT_NE(msg.find("was trained with another tokenizer than"), std::string::npos) << msg;
  msg = seed_error({"seed.init=\"" + (dir / "unfinished.h5").string() + "\""});
  EXPECT_NE(msg.find("an unfinished training checkpoint"), std::string::npos) << msg;
  msg = seed_error({"seed.init=\"" + (dir / "missing.h5").string() + "\""});
  EXPECT_NE(msg.find("no such file"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(deck.seed_file()));
  msg = error_of([&] { btm::test::tiny_deck(dir, {"seed.tokens=0"}); });
  EXPECT_NE(msg.find("seed.tokens: found 0 without seed.init"), std::string::npos) << msg;
}
