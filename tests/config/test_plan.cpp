// The plan `btm check` prints: steps, baseline tokens, parameter count, and the expert
// groups of ARCHITECTURE's process layout for several world sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <regex>
#include <sstream>

#include "btm/config.hpp"
#include "btm/plan.hpp"
#include "config/deck_test_util.hpp"
#include "support/test_paths.hpp"

using btm::test::contains;
using btm::test::kGoodDeck;

namespace {

struct GroupRow {
  std::string group, ranks, experts, per_rank, steps;
};

// Rows of the "Expert groups" table, cells split on runs of two or more spaces.
std::vector<GroupRow> group_rows(const std::string& plan) {
  std::istringstream in(plan.substr(plan.find("Expert groups")));
  std::string line;
  std::getline(in, line);  // title
  std::getline(in, line);  // header
  std::vector<GroupRow> rows;
  const std::regex gap(" {2,}");
  while (std::getline(in, line) && !line.empty() && line.rfind("  ", 0) == 0) {
    std::vector<std::string> cells;
    std::string body = line.substr(line.find_first_not_of(' '));
    for (std::sregex_token_iterator it(body.begin(), body.end(), gap, -1), end; it != end; ++it) cells.push_back(*it);
    if (cells.size() != 5) break;
    rows.push_back({cells[0], cells[1], cells[2], cells[3], cells[4]});
  }
  return rows;
}

std::string plan_for(const btm::Deck& deck, int ranks) {
  std::ostringstream out;
  btm::print_plan(deck, ranks, out);
  return out.str();
}

btm::Deck four_experts() {  // alpha, beta, gamma, delta; global batch 32
  return btm::parse_deck(kGoodDeck, "four.toml");
}

}  // namespace

TEST(PhaseSteps, CeilOfTokensOverTokensPerStepAtLeastOne) {
  btm::TrainConfig t;
  t.global_batch = 32;
  EXPECT_EQ(btm::phase_steps(32 * 128, t, 128), 1u);
  EXPECT_EQ(btm::phase_steps(32 * 128 + 1, t, 128), 2u);
  EXPECT_EQ(btm::phase_steps(1'000'000, t, 128), 245u);  // 1e6 / 4096 = 244.1
  EXPECT_EQ(btm::phase_steps(1, t, 128), 1u);
  EXPECT_EQ(btm::phase_steps(0, t, 128), 1u);
}

TEST(BaselineTokens, ComputeMatchedToTheExpertsWholeStepsUnlessGiven) {
  btm::Deck d = four_experts();
  d.model.max_position_embeddings = 100;
  d.experts.train.global_batch = 10;  // 1000 tokens per step
  d.experts.tokens = 1000;
  EXPECT_EQ(btm::baseline_tokens(d, 4), 4000u);
  d.experts.tokens = 2500;  // each expert trains 3 steps = 3000 tokens
  EXPECT_EQ(btm::baseline_tokens(d, 4), 12000u);
  EXPECT_EQ(btm::baseline_tokens(d, 2), 6000u);
  d.baseline.tokens = 123;
  EXPECT_EQ(btm::baseline_tokens(d, 4), 123u);
}

TEST(BaselineTokens, ComputeMatchedToTheWholeForestNotOnlyTheDecksExperts) {
  // The forest's experts first, then the deck's new ones; an expert in both counts once.
  EXPECT_EQ(btm::baseline_matched_experts({"old1", "alpha"}, {"alpha", "beta"}),
            (std::vector<std::string>{"old1", "alpha", "beta"}));
  EXPECT_EQ(btm::baseline_matched_experts({}, {"alpha", "beta"}), (std::vector<std::string>{"alpha", "beta"}));
  // Two experts trained by an earlier run are in forest.h5: the baseline matches all six.
  btm::Deck d = four_experts();  // 500,000 tokens per expert = 245 steps of 32 x 64 tokens
  std::ostringstream out;
  btm::print_plan(d, 2, out, {"old1", "old2"});
  const std::string plan = out.str();
  std::regex baseline_row(R"(baseline\s+3,010,560\s+1,470\s)");  // 6 x 245 x 2048
  EXPECT_TRUE(std::regex_search(plan, baseline_row)) << plan;
  EXPECT_TRUE(contains(plan, "compute-matched: 6 experts x experts.tokens (whole steps), counting the forest: "
                             "2 in forest.h5 (old1, old2) + 4 this deck adds (alpha, beta, gamma, delta)"))
      << plan;
  // Without a forest: the deck's four.
  EXPECT_TRUE(contains(plan_for(d, 2), "0 in forest.h5 + 4 this deck adds (alpha, beta, gamma, delta)"));
}

TEST(Plan, SaysWhichExpertsEachEvalMethodRunsAndWhetherTopKSavesAny) {
  btm::Deck d = four_experts();
  d.eval.ensembles = {{"ens", "cached", "exact", 0}, {"top2", "cached", "exact", 2}};
  std::string plan = plan_for(d, 2);
  EXPECT_TRUE(std::regex_search(plan, std::regex(R"(single experts\s+all 4 experts)"))) << plan;
  EXPECT_TRUE(std::regex_search(plan, std::regex(R"(top2\s+the 2 with the largest cached prior)"))) << plan;
  EXPECT_TRUE(std::regex_search(plan, std::regex(R"(cached prior\s+all 4 experts on 100 valid blocks per domain \(for ens, top2\))")))
      << plan;
  EXPECT_TRUE(contains(plan, "top_k saves nothing here: eval.single_experts = \"all\", ensemble \"ens\" already run "
                             "every expert on the same blocks"))
      << plan;
  // Only the top-2 ensemble and no single experts: two of four experts run per domain.
  d.eval.single_experts = "none";
  d.eval.ensembles = {{"top2", "cached", "exact", 2}};
  plan = plan_for(d, 2);
  EXPECT_TRUE(contains(plan, "top_k saves forward passes: at most 2 of 4 experts run on each domain's test blocks")) << plan;
  // A uniform-prior ensemble needs every expert again.
  d.eval.ensembles.push_back({"flat", "uniform", "exact", 0});
  EXPECT_TRUE(contains(plan_for(d, 2), "top_k saves nothing here: ensemble \"flat\" already runs every expert")) << plan;
}

TEST(Plan, OneRankTrainsEveryExpertInOrder) {
  auto rows = group_rows(plan_for(four_experts(), 1));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].group, "0");
  EXPECT_EQ(rows[0].ranks, "0");
  EXPECT_EQ(rows[0].experts, "alpha, beta, gamma, delta");
  EXPECT_EQ(rows[0].per_rank, "32");
}

TEST(Plan, TwoRanksMakeTwoGroupsOfTwoExperts) {
  std::string plan = plan_for(four_experts(), 2);
  EXPECT_TRUE(contains(plan, "P = 2 ranks, E = 4 experts, G = min(P, E) = 2 groups"));
  auto rows = group_rows(plan);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].ranks, "0");
  EXPECT_EQ(rows[0].experts, "alpha, gamma");
  EXPECT_EQ(rows[1].ranks, "1");
  EXPECT_EQ(rows[1].experts, "beta, delta");
}

TEST(Plan, ThreeRanksGiveTheFirstGroupTwoExperts) {
  auto rows = group_rows(plan_for(four_experts(), 3));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].experts, "alpha, delta");
  EXPECT_EQ(rows[1].experts, "beta");
  EXPECT_EQ(rows[2].experts, "gamma");
  // 500,000 tokens per expert / (32 x 64 tokens per step) = 245 steps per expert, in sequence.
  EXPECT_EQ(rows[0].steps, "490");
  EXPECT_EQ(rows[1].steps, "245");
  for (int g = 0; g < 3; ++g) EXPECT_EQ(rows[g].ranks, std::to_string(g));
}

TEST(Plan, EightRanksGiveEachExpertTwoRanks) {
  std::string plan = plan_for(four_experts(), 8);
  auto rows = group_rows(plan);
  ASSERT_EQ(rows.size(), 4u);
  const char* ranks[] = {"0-1", "2-3", "4-5", "6-7"};
  const char* experts[] = {"alpha", "beta", "gamma", "delta"};
  for (int g = 0; g < 4; ++g) {
    EXPECT_EQ(rows[g].group, std::to_string(g));
    EXPECT_EQ(rows[g].ranks, ranks[g]);
    EXPECT_EQ(rows[g].experts, experts[g]);
    EXPECT_EQ(rows[g].per_rank, "16");  // global batch 32 over 2 ranks
  }
}

TEST(Plan, UnevenGroupsShowTheBatchShare) {
  btm::Deck d = four_experts();
  d.experts.train.global_batch = 30;
  auto rows = group_rows(plan_for(d, 7));  // groups of 1, 2, 2, 2 ranks
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].ranks, "0");
  EXPECT_EQ(rows[0].per_rank, "30");
  EXPECT_EQ(rows[1].ranks, "1-2");
  EXPECT_EQ(rows[1].per_rank, "15");
  d.experts.train.global_batch = 31;
  rows = group_rows(plan_for(d, 7));
  EXPECT_EQ(rows[1].per_rank, "15-16");
}

TEST(Plan, ShowsPhasesDataModelBudgetsAndEnsembles) {
  btm::Deck d = btm::load_deck(btm::test::source_dir() / "inputs/quickstart.toml");
  std::string plan = plan_for(d, 2);
  EXPECT_TRUE(contains(plan, "prepare -> seed -> experts -> baseline -> average -> eval"));
  EXPECT_TRUE(contains(plan, "4: scripture, fortunes, python-docs, go-code"));
  EXPECT_TRUE(contains(plan, "2: perl-docs, tech-lexicon"));
  // 4096 x 128 embedding + 4 x (4 x 128^2 + 3 x 128 x 384 + 2 x 128) + 128 + 4096 x 128 lm_head.
  EXPECT_TRUE(contains(plan, "1,901,696"));
  EXPECT_TRUE(contains(plan, "intermediate_size     384 (derived"));
  std::regex seed_row(R"(seed\s+2,000,000\s+489\s+32\s+8\s+2\s+16\s+2\s+0\.003)");
  EXPECT_TRUE(std::regex_search(plan, seed_row)) << plan;
  std::regex experts_row(R"(experts\s+600,000\s+147\s+32\s+8\s+1\s+32\s+4\s+0\.003)");
  EXPECT_TRUE(std::regex_search(plan, experts_row)) << plan;
  std::regex baseline_row(R"(baseline\s+2,408,448\s+588\s)");  // 4 experts x 147 steps x 4096
  EXPECT_TRUE(std::regex_search(plan, baseline_row)) << plan;
  EXPECT_TRUE(contains(plan, "ensemble-uniform"));
  EXPECT_TRUE(contains(plan, "uniform"));
  EXPECT_TRUE(contains(plan, "posterior"));
}

TEST(Plan, VocabularyFromDataWhenTheModelLeavesItZero) {
  btm::Deck d = four_experts();
  d.data.vocab_size = 1000;
  d.model.tie_word_embeddings = true;
  std::string plan = plan_for(d, 1);
  EXPECT_TRUE(contains(plan, "1000 (model.vocab_size = 0: the tokenizer's, data.vocab_size)"));
  EXPECT_TRUE(contains(plan, "0 (tied to the embedding)"));
  d.model.vocab_size = 512;
  EXPECT_FALSE(contains(plan_for(d, 1), "model.vocab_size = 0"));
}

TEST(Plan, GroupedKvHeadsShrinkTheLayer) {
  btm::Deck d = four_experts();  // hidden 64, 4 heads, 2 layers, vocab 8192, intermediate 192
  std::string full = plan_for(d, 1);
  // per layer: 4 x 64^2 + 3 x 64 x 192 + 128 = 53,376
  EXPECT_TRUE(contains(full, "2 x 53,376"));
  d.model.num_key_value_heads = 1;  // k, v: 64 x 16 each instead of 64 x 64
  EXPECT_TRUE(contains(plan_for(d, 1), "2 x 47,232"));
}

TEST(Plan, UnknownExpertListIsExplained) {
  btm::Deck d = btm::parse_deck("[data]\ncorpus = \"c.jsonl\"\n", "t.toml");
  std::string plan = plan_for(d, 4);
  EXPECT_TRUE(contains(plan, "the list is known after prepare"));
}

TEST(Plan, DisabledBaselineAndSkippedPhases) {
  btm::Deck d = btm::parse_deck(kGoodDeck + "[baseline]\nenabled = false\n", "t.toml");
  d.run.phases = {"seed", "experts", "baseline"};
  std::string plan = plan_for(d, 2);
  EXPECT_TRUE(contains(plan, "seed -> experts -> baseline (disabled"));
  EXPECT_FALSE(contains(plan, "Averages"));
  EXPECT_FALSE(contains(plan, "Evaluation"));
}

TEST(Plan, ComputeTableCountsMoEActiveParametersAndSaysWhatMatchesBtx) {
  const btm::Deck deck = btm::parse_deck(kGoodDeck + R"(
[[mix.models]]
name = "btx"
[[mix.models]]
name = "upcycle"
source = "seed"
num_experts = 8
num_experts_per_tok = 1
[finetune]
tokens = 65536
)", "btx.toml", {"data.vocab_size=1000"});
  const std::string plan = plan_for(deck, 2);
  EXPECT_TRUE(contains(plan, "prepare -> seed -> experts -> baseline -> average -> mix -> finetune -> eval"));
  EXPECT_TRUE(contains(plan, "8 copies of the seed (sparse upcycling)"));
  // d = 64, f = 192 (8/3 x 64 rounded up to 64), 2 layers, vocab 1000 untied, context 64.
  const double attention = 4.0 * 64 * 64, ffn = 3.0 * 64 * 192, norms = 2.0 * 64;
  const double dense = 2 * (attention + ffn + norms) + 64 + 1000 * 64;  // no embedding lookup
  const double dense_fpt = 6 * dense + 12.0 * 2 * 64 * 64;
  const double btx_fpt = dense_fpt + 6 * 2 * (ffn + 4 * 64);    // top-2 of 4: one more expert + the router
  const double up_fpt = dense_fpt + 6 * 2 * (8 * 64);           // top-1 of 8: the router only
  auto shown = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  EXPECT_TRUE(contains(plan, "seed      dense"));
  EXPECT_TRUE(contains(plan, shown(dense_fpt)));
  EXPECT_TRUE(contains(plan, "btx (MoE 4 experts, top-2)"));
  EXPECT_TRUE(contains(plan, shown(btx_fpt)));
  EXPECT_TRUE(contains(plan, "upcycle (MoE 8 experts, top-1)"));
  EXPECT_TRUE(contains(plan, shown(up_fpt)));
  // Seed 1,001,472 tokens (489 steps of 2048), experts 4 x 501,760, finetune 65,536 each.
  const double seed = 1001472 * dense_fpt, experts = 4 * 501760 * dense_fpt;
  EXPECT_TRUE(contains(plan, "total BTM (seed + experts): " + shown(seed + experts)));
  EXPECT_TRUE(contains(plan, "total btx (seed + experts + finetune): " + shown(seed + experts + 65536 * btx_fpt)));
  EXPECT_TRUE(contains(plan, "total upcycle (seed + finetune): " + shown(seed + 65536 * up_fpt)));
  const auto match = static_cast<std::uint64_t>(std::ceil((experts + 65536 * btx_fpt) / dense_fpt));
  EXPECT_TRUE(contains(plan, "baseline.tokens = " + std::to_string(match) + " matches btx's total"));
  EXPECT_TRUE(contains(plan, "mix.models[1].finetune_tokens = "));
}
