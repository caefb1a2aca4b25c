// Bad decks: each error names the file, line:column of the offending value (or the --set),
// the key path, what was found, and what is allowed or the key that was probably meant.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "btm/config.hpp"
#include "config/deck_test_util.hpp"
#include "support/test_paths.hpp"

using btm::test::contains;
using btm::test::deck_error;
using btm::test::kGoodDeck;

// kGoodDeck has 14 lines; text appended to it starts on line 15.
constexpr int kFirstAppendedLine = 15;

namespace {
std::string at_line(int line, int column) {
  return "bad.toml:" + std::to_string(line) + ":" + std::to_string(column) + ": ";
}
}  // namespace

TEST(DeckErrors, GoodDeckHasTheLineCountTheTestsAssume) {
  EXPECT_EQ(std::count(kGoodDeck.begin(), kGoodDeck.end(), '\n'), kFirstAppendedLine - 1);
}

TEST(DeckErrors, UnknownKeySuggestsTheClosestKey) {
  auto msg = deck_error(kGoodDeck + "[train]\nlrr = 0.1\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 1) + "train.lrr: unknown key; did you mean 'lr'?"));
}

TEST(DeckErrors, UnknownKeyCaseInsensitiveSuggestion) {
  auto msg = deck_error(kGoodDeck + "[train]\nMicro_Batch = 4\n");
  EXPECT_TRUE(contains(msg, "train.Micro_Batch: unknown key; did you mean 'micro_batch'?"));
}

TEST(DeckErrors, UnknownKeyWithNothingCloseListsTheValidKeys) {
  auto msg = deck_error(kGoodDeck + "[train]\nschedule = \"cosine\"\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 1) + "train.schedule: unknown key; expected one of: "
                            "micro_batch, global_batch, lr,"));
  EXPECT_TRUE(contains(msg, "checkpoint_every"));
}

TEST(DeckErrors, UnknownSectionListsTheSections) {
  auto msg = deck_error(kGoodDeck + "[optimizer]\nlr = 0.1\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine, 2) + "optimizer: unknown section; expected one of: run, data, cluster, model, train, seed, "
                            "experts, baseline, average, mix, finetune, eval"));
}

TEST(DeckErrors, MisspelledSectionSuggestsTheSection) {
  auto msg = deck_error(kGoodDeck + "[trian]\nlr = 0.1\n");
  EXPECT_TRUE(contains(msg, "trian: unknown section; did you mean 'train'?"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[expert]\ntokens = 5\n"), "did you mean 'experts'?"));
}

TEST(DeckErrors, MisspelledPhaseSubTableSuggestsTrain) {
  auto msg = deck_error(kGoodDeck + "[experts.trian]\nlr = 0.1\n");
  EXPECT_TRUE(contains(msg, "experts.trian: unknown key; did you mean 'train'?"));
}

TEST(DeckErrors, UnknownKeyInPhaseTrainTable) {
  auto msg = deck_error(kGoodDeck + "[seed.train]\nglobal_bach = 8\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 1) + "seed.train.global_bach: unknown key; did you mean "
                                                                  "'global_batch'?"));
}

TEST(DeckErrors, TopLevelKeyOutsideASection) {
  auto msg = deck_error("lr = 0.1\n" + kGoodDeck);
  EXPECT_TRUE(contains(msg, "bad.toml:1:1: lr: unknown top-level key; expected one of: run, data"));
}

TEST(DeckErrors, StringForIntegerNamesTypeAndRange) {
  auto msg = deck_error(kGoodDeck + "[train]\nmicro_batch = \"eight\"\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 15) +
                                "train.micro_batch: found a string (\"eight\"); expected an integer in 1..65536"));
}

TEST(DeckErrors, FloatForIntegerIsNotCoerced) {
  auto msg = deck_error(kGoodDeck + "[train]\nglobal_batch = 32.0\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 16) +
                                "train.global_batch: found a float (32.0); expected an integer in 1..16777216"));
}

TEST(DeckErrors, BoolForString) {
  auto msg = deck_error(kGoodDeck + "[eval]\nsplit = true\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 9) +
                                "eval.split: found a boolean (true); expected one of: test, valid"));
}

TEST(DeckErrors, StringForBool) {
  auto msg = deck_error(kGoodDeck + "[baseline]\nenabled = \"yes\"\n");
  EXPECT_TRUE(contains(msg, "baseline.enabled: found a string (\"yes\"); expected true or false"));
}

TEST(DeckErrors, NegativeLearningRate) {
  auto msg = deck_error(kGoodDeck + "[train]\nlr = -0.001\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 6) + "train.lr: found -0.001; expected a number in (0, 10]"));
}

TEST(DeckErrors, NegativeLearningRateInPhaseTable) {
  auto msg = deck_error(kGoodDeck + "[experts.train]\nlr = 0\n");
  EXPECT_TRUE(contains(msg, "experts.train.lr: found 0; expected a number in (0, 10]"));
}

TEST(DeckErrors, FractionOutOfRange) {
  auto in_data = deck_error("[data]\ncorpus = \"c\"\nvalid_fraction = 1.5\n");
  EXPECT_TRUE(contains(in_data, "bad.toml:3:18: data.valid_fraction: found 1.5; expected a number in [0, 1)"));
}

TEST(DeckErrors, ValidPlusTestMustLeaveTrainingData) {
  auto msg = deck_error("[data]\ncorpus = \"c\"\nvalid_fraction = 0.5\ntest_fraction = 0.5\n");
  EXPECT_TRUE(contains(msg, "bad.toml:4:17: data.test_fraction: valid_fraction + test_fraction = 1.0"));
  EXPECT_TRUE(contains(msg, "expected valid_fraction + test_fraction < 1"));
}

TEST(DeckErrors, BetaMustBeBelowOne) {
  auto msg = deck_error(kGoodDeck + "[train]\nbeta2 = 1.0\n");
  EXPECT_TRUE(contains(msg, "train.beta2: found 1.0; expected a number in [0, 1)"));
}

TEST(DeckErrors, BadBackendListsTheBackends) {
  auto msg = deck_error("[run]\nbackend = \"gpu\"\n" + kGoodDeck.substr(kGoodDeck.find("[data]")));
  EXPECT_TRUE(contains(msg, "bad.toml:2:11: run.backend: found \"gpu\""));
  EXPECT_TRUE(contains(msg, "; expected one of: cpu, cuda"));
}

TEST(DeckErrors, BadMixingSuggestsTheValue) {
  auto msg = deck_error(kGoodDeck + "[seed]\nmixing = \"balance\"\n");
  EXPECT_TRUE(contains(msg, "seed.mixing: found \"balance\" (did you mean 'balanced'?); expected one of: balanced, "
                            "proportional"));
}

TEST(DeckErrors, BadDataFormat) {
  auto msg = deck_error("[data]\ncorpus = \"c\"\nformat = \"csv\"\n");
  EXPECT_TRUE(contains(msg, "bad.toml:3:10: data.format: found \"csv\"; expected one of: auto, jsonl, text_tree, split_jsonl"));
  auto set = deck_error(kGoodDeck, {"data.format=json"});
  EXPECT_TRUE(contains(set, "--set data.format=json: data.format: found \"json\""));
  EXPECT_TRUE(contains(set, "expected one of: auto, jsonl, text_tree, split_jsonl"));
}

TEST(DeckErrors, BadEnsemblePriorNamesTheEntry) {
  auto msg = deck_error(kGoodDeck + R"(
[[eval.ensembles]]
name = "a"

[[eval.ensembles]]
name = "b"
prior = "posterior"
)");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 6, 9) + "eval.ensembles[1].prior: found \"posterior\"; "
                                                                  "expected one of: uniform, cached"));
}

TEST(DeckErrors, BadEnsemblePosterior) {
  auto msg = deck_error(kGoodDeck + "[[eval.ensembles]]\nname = \"a\"\nposterior = \"previous-token\"\n");
  EXPECT_TRUE(contains(msg, "eval.ensembles[0].posterior: found \"previous-token\" (did you mean 'previous_token'?)"));
}

TEST(DeckErrors, BadPriorEstimationRulesNameTheKey) {
  auto msg = deck_error(kGoodDeck + "[average]\nposterior_rule = \"cumulative\"\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 18) + "average.posterior_rule: found \"cumulative\"; "
                                                                   "expected one of: previous_token, exact"))
      << msg;
  msg = deck_error(kGoodDeck + "[eval]\nprior_rule = \"previous-token\"\n");
  EXPECT_TRUE(contains(msg, "eval.prior_rule: found \"previous-token\" (did you mean 'previous_token'?)")) << msg;
  msg = deck_error(kGoodDeck + "[average]\nposterior_sequences = -1\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 23) + "average.posterior_sequences: found -1")) << msg;
  msg = deck_error(kGoodDeck + "[experts]\nposterior_sequences = 1.5\n");
  EXPECT_TRUE(contains(msg, "experts.posterior_sequences")) << msg;
}

TEST(DeckErrors, EnsembleWithoutNameIsMissingTheName) {
  auto msg = deck_error(kGoodDeck + "[[eval.ensembles]]\nprior = \"uniform\"\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine, 1) + "eval.ensembles[0].name: missing; expected a string of"));
}

TEST(DeckErrors, DuplicateEnsembleName) {
  auto msg = deck_error(kGoodDeck + "[[eval.ensembles]]\nname = \"e\"\n[[eval.ensembles]]\nname = \"e\"\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 3, 8) + "eval.ensembles[1].name: \"e\" is used twice"));
}

TEST(DeckErrors, EnsembleTopKBeyondTheExperts) {
  auto msg = deck_error(kGoodDeck + "[[eval.ensembles]]\nname = \"e\"\ntop_k = 5\n");
  EXPECT_TRUE(contains(msg, "eval.ensembles[0].top_k: found 5 but there are only 4 experts"));
}

TEST(DeckErrors, DuplicateDomain) {
  auto msg = deck_error("[data]\ncorpus = \"c\"\ntrain_domains = [\"a\", \"b\", \"a\"]\n");
  EXPECT_TRUE(contains(msg, "bad.toml:3:28: data.train_domains[2]: \"a\" is listed twice; expected distinct values"));
}

TEST(DeckErrors, OverlappingTrainAndHeldout) {
  auto msg = deck_error("[data]\ncorpus = \"c\"\ntrain_domains = [\"a\", \"b\"]\nheldout_domains = [\"c\", \"b\"]\n");
  EXPECT_TRUE(contains(msg, "bad.toml:4:25: data.heldout_domains[1]: \"b\" is also in data.train_domains"));
}

TEST(DeckErrors, DomainNameThatCannotBeAFileName) {
  auto msg = deck_error("[data]\ncorpus = \"c\"\ntrain_domains = [\"a/b\"]\n");
  EXPECT_TRUE(contains(msg, "bad.toml:3:18: data.train_domains[0]: found \"a/b\"; expected a string of letters"));
}

TEST(DeckErrors, ExpertDomainMustBeATrainDomain) {
  auto msg = deck_error(kGoodDeck + "[experts]\ndomains = [\"alpha\", \"omega\"]\n");
  EXPECT_TRUE(contains(msg, "experts.domains[1]: \"omega\" is a held-out domain"));
  auto typo = deck_error(kGoodDeck + "[experts]\ndomains = [\"alpah\"]\n");
  EXPECT_TRUE(contains(typo, "experts.domains[0]: \"alpah\" is not in data.train_domains (did you mean 'alpha'?)"));
}

TEST(DeckErrors, HeadsNotDividingHidden) {
  std::string deck = kGoodDeck;
  deck.replace(deck.find("num_attention_heads = 4"), 23, "num_attention_heads = 5");
  auto bad = deck_error(deck);
  // [model] starts on line 10; hidden_size is line 11.
  EXPECT_TRUE(contains(bad, "bad.toml:11:15: model.hidden_size: must be divisible by num_attention_heads (64 % 5 != 0)"));
}

TEST(DeckErrors, KvHeadsNotDividingHeads) {
  auto msg = deck_error(kGoodDeck + "num_key_value_heads = 3\n");  // appended inside [model]
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine, 23) + "model.num_key_value_heads: must divide "
                                                             "num_attention_heads (4)"));
}

TEST(DeckErrors, VocabularyOutOfRange) {
  auto msg = deck_error(kGoodDeck + "vocab_size = 100\n");
  EXPECT_TRUE(contains(msg, "model.vocab_size: found 100; expected 0 or an integer in 256..4194304"));
}

TEST(DeckErrors, UnknownPhase) {
  auto msg = deck_error("[run]\nphases = [\"prepare\", \"experst\"]\n" + kGoodDeck.substr(kGoodDeck.find("[data]")));
  EXPECT_TRUE(contains(msg, "bad.toml:2:22: run.phases[1]: found \"experst\" (did you mean 'experts'?); expected one "
                            "of: prepare, cluster, seed, experts, baseline, average, mix, finetune, eval"));
}

TEST(DeckErrors, DuplicatePhase) {
  auto msg = deck_error("[run]\nphases = [\"seed\", \"seed\"]\n");
  EXPECT_TRUE(contains(msg, "run.phases[1]: \"seed\" is listed twice"));
}

TEST(DeckErrors, MissingCorpusWhenPrepareRuns) {
  auto msg = deck_error("[run]\nname = \"x\"\n");
  EXPECT_TRUE(contains(msg, "bad.toml: data.corpus: missing (the prepare phase reads the corpus)"));
}

TEST(DeckErrors, InitTypoIsNotTakenAsAnExpertName) {
  auto msg = deck_error(kGoodDeck + "[experts]\ninit = \"sed\"\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 8) + "experts.init: found \"sed\" (did you mean 'seed'?)"));
  // Another name is an expert to branch from.
  EXPECT_NO_THROW(btm::parse_deck(kGoodDeck + "[experts]\ninit = \"beta\"\n", "ok.toml"));
}

TEST(DeckErrors, WeightsNamingAnUnknownExpert) {
  auto msg = deck_error(kGoodDeck + "[[average.weighted]]\nname = \"w\"\nweights = { alpha = 1, gamam = 2 }\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 2, 32) + "average.weighted[0].weights.gamam: \"gamam\" is not "
                                                                  "an expert; did you mean 'gamma'?"));
}

TEST(DeckErrors, WeightsMustBeNonNegativeWithPositiveSum) {
  auto neg = deck_error(kGoodDeck + "[[average.weighted]]\nname = \"w\"\nweights = { alpha = -1 }\n");
  EXPECT_TRUE(contains(neg, "average.weighted[0].weights.alpha: found -1; expected a weight"));
  auto zero = deck_error(kGoodDeck + "[[average.weighted]]\nname = \"w\"\nweights = { alpha = 0, beta = 0.0 }\n");
  EXPECT_TRUE(contains(zero, "average.weighted[0].weights: the weights sum to 0.0; expected a positive sum"));
}

TEST(DeckErrors, WeightedAverageMustBeAnArrayOfTables) {
  auto msg = deck_error(kGoodDeck + "[average.weighted]\nname = \"w\"\n");
  EXPECT_TRUE(contains(msg, "average.weighted: found a table; expected an array of tables ([[average.weighted]])"));
}

TEST(DeckErrors, TomlSyntaxError) {
  auto msg = deck_error("[run]\nname = \"x\"\nout_dir = runs/x\n");
  EXPECT_TRUE(contains(msg, "bad.toml:3:11: TOML syntax error: ")) << msg;
}

TEST(DeckErrors, MissingDeckFile) {
  try {
    btm::load_deck("no/such/deck.toml");
    ADD_FAILURE() << "no error";
  } catch (const btm::Error& e) {
    EXPECT_TRUE(contains(e.what(), "no/such/deck.toml: deck file not found"));
  }
}

TEST(DeckErrors, DeckPathIsAFolder) {
  try {
    btm::load_deck(btm::test::source_dir() / "inputs");
    ADD_FAILURE() << "no error";
  } catch (const btm::Error& e) {
    EXPECT_TRUE(contains(e.what(), "inputs: is a folder; expected a deck file"));
  }
}

TEST(DeckErrors, ErrorsNameTheLoadedFile) {
  auto dir = btm::test::fresh_dir("deck_errors");
  btm::test::write_text(dir / "mine.toml", "[train]\nlr = \"fast\"\n");
  try {
    btm::load_deck(dir / "mine.toml");
    ADD_FAILURE() << "no error";
  } catch (const btm::Error& e) {
    EXPECT_TRUE(contains(e.what(), (dir / "mine.toml").string() + ":2:6: train.lr: found a string (\"fast\")"));
  }
  std::filesystem::remove_all(dir);
}

TEST(DeckErrors, SetWithUnknownKeySuggests) {
  auto msg = deck_error(kGoodDeck, {"train.lrr=1e-3"});
  EXPECT_TRUE(contains(msg, "--set train.lrr=1e-3: train.lrr: unknown key; did you mean 'lr'?"));
  auto section = deck_error(kGoodDeck, {"expert.train.lr=1e-3"});
  EXPECT_TRUE(contains(section, "--set expert.train.lr=1e-3: expert: unknown section; did you mean 'experts'?"));
  auto nested = deck_error(kGoodDeck, {"experts.train.lrr=1e-3"});
  EXPECT_TRUE(contains(nested, "--set experts.train.lrr=1e-3: experts.train.lrr: unknown key; did you mean 'lr'?"));
}

TEST(DeckErrors, SetWithoutEquals) {
  auto msg = deck_error(kGoodDeck, {"train.lr"});
  EXPECT_TRUE(contains(msg, "--set train.lr: no '=' in the override; expected section.key=value"));
}

TEST(DeckErrors, SetWithoutSection) {
  auto msg = deck_error(kGoodDeck, {"lr=1e-3"});
  EXPECT_TRUE(contains(msg, "--set lr=1e-3: 'lr' is not a key path; expected section.key=value"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck, {"train..lr=1"}), "is not a key path"));
}

TEST(DeckErrors, SetWithWrongTypeNamesTheSet) {
  auto msg = deck_error(kGoodDeck, {"train.lr=fast"});
  EXPECT_TRUE(contains(msg, "--set train.lr=fast: train.lr: found a string (\"fast\"); expected a number in (0, 10]"));
}

TEST(DeckErrors, SetThroughAValueThatIsNotATable) {
  auto msg = deck_error(kGoodDeck + "[train]\nlr = 0.1\n", {"train.lr.x=1"});
  EXPECT_TRUE(contains(msg, "--set train.lr.x=1: train.lr is a float (0.1), not a table"));
}

TEST(DeckErrors, AverageAndEnsembleNamesMustNotClashWithOtherModels) {
  auto avg = deck_error(kGoodDeck + "[[average.weighted]]\nname = \"uniform\"\nweights = { alpha = 1 }\n");
  EXPECT_TRUE(contains(avg, at_line(kFirstAppendedLine + 1, 8) + "average.weighted[0].name: \"uniform\" is already "
                                                                 "the name of a model"));
  auto posterior = deck_error(kGoodDeck + "[[average.weighted]]\nname = \"posterior-alpha\"\nweights = { alpha = 1 }\n");
  EXPECT_TRUE(contains(posterior, "is the name of a posterior-weighted average"));
  auto expert = deck_error(kGoodDeck + "[[eval.ensembles]]\nname = \"beta\"\n");
  EXPECT_TRUE(contains(expert, "eval.ensembles[0].name: \"beta\" is already the name of a model"));
  auto both = deck_error(kGoodDeck + "[[average.weighted]]\nname = \"mix\"\nweights = { alpha = 1 }\n"
                                     "[[eval.ensembles]]\nname = \"mix\"\n");
  EXPECT_TRUE(contains(both, "eval.ensembles[0].name: \"mix\" is also a weighted average"));
}

TEST(DeckErrors, MixModelsNameTheKeyThatIsWrong) {
  const std::string m = kGoodDeck + "[[mix.models]]\nname = \"btx\"\n";  // line 15 and 16
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[[mix.models]]\nsource = \"seed\"\n"), "mix.models[0].name: missing"));
  EXPECT_TRUE(contains(deck_error(m + "num_experts_per_tok = 5\n"),
                       at_line(kFirstAppendedLine + 2, 23) + "mix.models[0].num_experts_per_tok: found 5 but the model has 4 experts"));
  EXPECT_TRUE(contains(deck_error(m + "include_seed = true\nnum_experts_per_tok = 6\n"), "found 6 but the model has 5 experts"));
  EXPECT_TRUE(contains(deck_error(m + "router_init = \"centroids\"\n"),
                       "mix.models[0].router_init: found \"centroids\" (did you mean 'centroid'?); expected one of: random, centroid"));
  EXPECT_TRUE(contains(deck_error(m + "routing = \"expert_choice\"\n"), "mix.models[0].routing: found \"expert_choice\""));
  EXPECT_TRUE(contains(deck_error(m + "num_experts = -1\n"),
                       "mix.models[0].num_experts: found -1; expected 0 or an integer in 1..4096"));
  EXPECT_TRUE(contains(deck_error(m + "num_experts = 3\n"), "mix.models[0].num_experts: found 3 but the model mixes 4 experts"));
  EXPECT_TRUE(contains(deck_error(m + "experts = [\"alpah\"]\n"),
                       "mix.models[0].experts[0]: \"alpah\" is not an expert of the deck; did you mean 'alpha'?"));
  EXPECT_TRUE(contains(deck_error(m + "weights = { seed = 1 }\n"), "mix.models[0].weights.seed: \"seed\" is not one of this model's experts"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[[mix.models]]\nname = \"up\"\nsource = \"seed\"\n"),
                       "mix.models[0].num_experts: missing; expected the number of copies of the seed (>= 1)"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[[mix.models]]\nname = \"up\"\nsource = \"seed\"\nnum_experts = 2\nrouter_init = \"centroid\"\n"),
                       "mix.models[0].router_init: \"centroid\" with source = \"seed\""));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[[mix.models]]\nname = \"seed\"\n"),
                       "mix.models[0].name: \"seed\" is already the name of a model that eval reports"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[[mix.models]]\nname = \"eval\"\n"), "is the name of a run file (eval.h5)"));
  EXPECT_TRUE(contains(deck_error(m + "[[mix.models]]\nname = \"btx\"\n"), "mix.models[1].name: \"btx\" is used twice"));
  EXPECT_TRUE(contains(deck_error(m + "[finetune]\ntokens = 0\n"), "finetune.tokens: found 0"));
  EXPECT_TRUE(contains(deck_error(m + "[finetune.train]\nlrr = 1\n"), "finetune.train.lrr: unknown key; did you mean 'lr'?"));
}

TEST(DeckErrors, MoeExpertsPerTokenBeyondTheExpertsNamesBothKeys) {
  auto msg = deck_error(kGoodDeck + "num_local_experts = 2\nnum_experts_per_tok = 3\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 23) +
                                "model.num_experts_per_tok: 3 exceeds num_local_experts (2)"));
}

TEST(DeckErrors, UnknownMoeRoutingListsTheModes) {
  auto msg = deck_error(kGoodDeck + "num_local_experts = 2\nmoe_routing = \"top2\"\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 1, 15) + "model.moe_routing:"));
  EXPECT_TRUE(contains(msg, "top_k, switch, soft, sample_top1"));
}

TEST(DeckErrors, RoutedEnsembleWithoutAClusteringNamesTheRouter) {
  auto msg = deck_error(kGoodDeck + "[[eval.ensembles]]\nname = \"c\"\nrouter = \"cluster\"\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 2, 10) + "eval.ensembles[0].router: \"cluster\" but the deck has no "
                                                                   "clustering"))
      << msg;
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[cluster]\nenabled = false\n[[eval.ensembles]]\nname = \"c\"\nrouter = \"cluster\"\n"),
                       "eval.ensembles[0].router"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[[eval.ensembles]]\nname = \"c\"\nrouter = \"clusters\"\n"),
                       "eval.ensembles[0].router: found \"clusters\" (did you mean 'cluster'?)"));
}

TEST(DeckErrors, RoutedTopKBeyondTheClusters) {
  auto msg = deck_error(kGoodDeck + "[cluster]\nk = 3\n[[eval.ensembles]]\nname = \"c\"\nrouter = \"cluster\"\ntop_k = 4\n");
  EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 5, 9) + "eval.ensembles[0].top_k: found 4 but there are only 3 "
                                                                  "clusters (cluster.k)"))
      << msg;
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[cluster]\nk = 3\ntop_k = 4\n"), "cluster.top_k: found 4 but cluster.k = 3"));
}

TEST(DeckErrors, RoutedTemperatureMustBePositive) {
  for (const std::string t : {"0", "-0.5"}) {
    auto msg = deck_error(kGoodDeck + "[cluster]\nk = 3\n[[eval.ensembles]]\nname = \"c\"\nrouter = \"cluster\"\ntemperature = " + t + "\n");
    EXPECT_TRUE(contains(msg, at_line(kFirstAppendedLine + 5, 15) + "eval.ensembles[0].temperature: found " + t)) << msg;
    EXPECT_TRUE(contains(msg, "expected a number in (0, 1000000]")) << msg;
  }
}

TEST(DeckErrors, RoutedDistancePowerIsTwoOrFour) {
  auto msg = deck_error(kGoodDeck + "[cluster]\nk = 3\n[[eval.ensembles]]\nname = \"c\"\nrouter = \"cluster\"\ndistance_power = 3\n");
  EXPECT_TRUE(contains(msg, "eval.ensembles[0].distance_power: found 3; expected 2 (exp(-d²/T)) or 4")) << msg;
}
