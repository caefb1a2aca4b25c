// Decks that must parse: the shipped inputs, defaults, per-phase [train] tables, --set
// overrides, and the to_toml round trip.
#include <gtest/gtest.h>
#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "btm/config.hpp"
#include "config/deck_test_util.hpp"
#include "support/test_paths.hpp"

using btm::Deck;
using btm::parse_deck;
using btm::test::contains;
using btm::test::kGoodDeck;

namespace {

void expect_same_model(const btm::ModelConfig& a, const btm::ModelConfig& b) {
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.initializer_range, b.initializer_range);
  EXPECT_EQ(a.num_local_experts, b.num_local_experts);
  EXPECT_EQ(a.num_experts_per_tok, b.num_experts_per_tok);
  EXPECT_EQ(a.router_aux_loss_coef, b.router_aux_loss_coef);
  EXPECT_EQ(a.moe_routing, b.moe_routing);
  EXPECT_EQ(a.moe_aux_loss, b.moe_aux_loss);
  EXPECT_EQ(a.moe_capacity_factor, b.moe_capacity_factor);
}

void expect_same_deck(const Deck& a, const Deck& b) {
  EXPECT_TRUE(a.run == b.run);
  EXPECT_TRUE(a.data == b.data);
  expect_same_model(a.model, b.model);
  EXPECT_TRUE(a.train == b.train);
  EXPECT_TRUE(a.seed == b.seed);
  EXPECT_TRUE(a.experts == b.experts);
  EXPECT_TRUE(a.baseline == b.baseline);
  EXPECT_TRUE(a.average == b.average);
  EXPECT_TRUE(a.eval == b.eval);
  EXPECT_TRUE(a.mix == b.mix);
  EXPECT_TRUE(a.finetune == b.finetune);
}

// Every value differs from its default, so a key the writer or reader forgot shows up.
Deck every_key_changed() {
  Deck d;
  d.run = {"every", "out/every key", 42, "cuda", {"seed", "experts", "eval"}, 3};
  d.data.corpus = "data/my corpus.jsonl.gz";
  d.data.format = "split_jsonl";
  d.data.train_domains = {"a", "b", "c"};
  d.data.heldout_domains = {"h"};
  d.data.tokenizer = "tok/sp.model";
  d.data.vocab_size = 1000;
  d.data.tokenizer_sample_mb = 0.25;
  d.data.valid_fraction = 0.1;
  d.data.test_fraction = 0.2;
  d.data.max_mb_per_domain = 1.5;
  d.model.hidden_size = 96;
  d.model.intermediate_size = 200;
  d.model.num_hidden_layers = 3;
  d.model.num_attention_heads = 6;
  d.model.num_key_value_heads = 2;
  d.model.vocab_size = 1000;
  d.model.max_position_embeddings = 77;
  d.model.rope_theta = 500000.0;
  d.model.rms_norm_eps = 1e-6;
  d.model.tie_word_embeddings = true;
  d.model.initializer_range = 0.01;
  d.model.num_local_experts = 4;
  d.model.num_experts_per_tok = 1;
  d.model.router_aux_loss_coef = 0.02;
  d.model.moe_routing = "switch";
  d.model.moe_aux_loss = "switch";
  d.model.moe_capacity_factor = 1.25;
  d.train = {4, 16, 1e-3, 0.2, 0.1, 0.01, 0.8, 0.99, 1e-6, 0.5, 7, 11, 3, 13};
  d.seed.tokens = 123457;
  d.seed.mixing = "proportional";
  d.seed.train = d.train;
  d.seed.train.lr = 2.5e-3;
  d.experts.tokens = 9999;
  d.experts.domains = {"b", "a"};
  d.experts.init = "posterior_average";
  d.experts.reset_optimizer = false;
  d.experts.posterior_sequences = 5;
  d.experts.train = d.train;
  d.experts.train.micro_batch = 2;
  d.experts.train.warmup_fraction = 0;
  d.baseline.enabled = false;
  d.baseline.tokens = 777;
  d.baseline.mixing = "proportional";
  d.baseline.train = d.train;
  d.baseline.train.grad_clip = 0;
  d.average.uniform = false;
  d.average.posterior = false;
  d.average.posterior_sequences = 9;
  d.average.posterior_rule = "exact";
  d.average.weighted = {{"ab", {{"a", 0.75}, {"b", 0.25}}}, {"b-only", {{"b", 1.0}}}};
  d.eval.split = "valid";
  d.eval.max_tokens_per_domain = 5000;
  d.eval.prior_sequences = 12;
  d.eval.prior_alpha = 0.1 + 0.2;  // not exactly 0.3: the writer must keep every bit
  d.eval.prior_rule = "exact";
  d.eval.batch = 2;
  d.mix.centroid_sequences = 7;
  d.mix.eval_mixed = false;
  d.mix.models = {{"mx", "forest", {"a", "b"}, 3, true, {{"a", 1.0}, {"seed", 0.5}}, "centroid", 3, "soft", "switch", 0.05, 2.0, false, 0},
                  {"up", "seed", {}, 4, false, {}, "random", 1, "sample_top1", "btx", 0.0, 1.25, true, 8888}};
  d.finetune.tokens = 4321;
  d.finetune.mixing = "proportional";
  d.finetune.freeze_experts = true;
  d.finetune.train = d.train;
  d.finetune.train.lr = 5e-5;
  d.eval.ensembles = {{"e1", "uniform", "previous_token", 2}, {"e2", "cached", "exact", 0}};
  return d;
}

}  // namespace

TEST(DeckInputs, EveryShippedDeckParses) {
  int decks = 0;
  for (const auto& entry : std::filesystem::directory_iterator(btm::test::source_dir() / "inputs")) {
    if (entry.path().extension() != ".toml") continue;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(btm::load_deck(entry.path())) << entry.path();
    ++decks;
  }
  EXPECT_GE(decks, 3);
}

TEST(DeckInputs, QuickstartIsTheDefaultRun) {
  Deck d = btm::load_deck(btm::test::source_dir() / "inputs/quickstart.toml");
  EXPECT_EQ(d.run.out_dir, "runs/quickstart");
  EXPECT_EQ(d.data.corpus, "data/quickstart/corpus.jsonl");
  EXPECT_EQ(d.data.train_domains, (std::vector<std::string>{"scripture", "fortunes", "python-docs", "go-code"}));
  EXPECT_EQ(d.data.heldout_domains, (std::vector<std::string>{"perl-docs", "tech-lexicon"}));
  EXPECT_EQ(d.data.vocab_size, 4096);
  EXPECT_EQ(d.model.hidden_size, 128);
  EXPECT_EQ(d.model.num_hidden_layers, 4);
  EXPECT_EQ(d.model.num_attention_heads, 4);
  EXPECT_EQ(d.model.max_position_embeddings, 128);
  EXPECT_EQ(d.seed.tokens, 2'000'000u);
  EXPECT_EQ(d.experts.tokens, 600'000u);
  EXPECT_EQ(d.baseline.tokens, 0u);
  EXPECT_EQ(d.run.phases, btm::kAllPhases);
  ASSERT_EQ(d.eval.ensembles.size(), 2u);
  EXPECT_TRUE(d.eval.ensembles[0] == (btm::EnsembleConfig{"ensemble", "cached", "exact", 0}));
  EXPECT_TRUE(d.eval.ensembles[1] == (btm::EnsembleConfig{"ensemble-uniform", "uniform", "exact", 0}));
}

TEST(DeckInputs, Paper8UsesTheSplitCorpusAndTwelveDomains) {
  Deck d = btm::load_deck(btm::test::source_dir() / "inputs/paper8.toml");
  EXPECT_EQ(d.data.format, "split_jsonl");
  EXPECT_EQ(d.data.corpus, "corpora/paper8");
  EXPECT_EQ(d.data.train_domains.size(), 8u);
  EXPECT_EQ(d.data.heldout_domains, (std::vector<std::string>{"commentary", "tech-lexicon", "code-c", "reviews"}));
  EXPECT_EQ(d.run.backend, "cuda");
  // Every domain named in the deck exists in the shared corpus.
  const std::filesystem::path corpus = "/work/shared/corpora/paper8";
  if (std::filesystem::exists(corpus)) {
    for (const auto& domains : {d.data.train_domains, d.data.heldout_domains}) {
      for (const auto& domain : domains) EXPECT_TRUE(std::filesystem::is_directory(corpus / domain)) << domain;
    }
  }
}

TEST(DeckInputs, ReadmeDocumentsEverySectionAndKey) {
  const std::string readme = btm::test::read_text(btm::test::source_dir() / "inputs/README.md");
  Deck d = every_key_changed();
  toml::table all = toml::parse(btm::to_toml(d));
  std::function<void(const toml::table&, const std::string&)> walk = [&](const toml::table& t, const std::string& path) {
    for (auto&& [key, node] : t) {
      const std::string name(key.str());
      const std::string full = path.empty() ? name : path + "." + name;
      if (node.is_table() && path.empty()) {
        EXPECT_TRUE(contains(readme, "[" + full + "]")) << "section " << full;
        walk(*node.as_table(), full);
      } else if (node.is_array_of_tables()) {
        EXPECT_TRUE(contains(readme, "[[" + full + "]]")) << full;
        walk(*node.as_array()->get(0)->as_table(), full);
      } else if (node.is_table() && name == "train") {
        EXPECT_TRUE(contains(readme, "[" + full + "]")) << full;
      } else {
        EXPECT_TRUE(contains(readme, "| `" + name + "`")) << "key " << full;
      }
    }
  };
  walk(all, "");
}

TEST(DeckDefaults, KeysLeftOutKeepTheStructDefaults) {
  Deck d = parse_deck("[data]\ncorpus = \"c.jsonl\"\n", "min.toml");
  Deck defaults;
  defaults.data.corpus = "c.jsonl";
  expect_same_deck(d, defaults);
  EXPECT_EQ(d.source, "min.toml");
  EXPECT_EQ(d.eval.ensembles.size(), 1u);
  EXPECT_TRUE(d.expert_domains().empty());
}

TEST(DeckDefaults, IntegersAreAcceptedForFloatKeys) {
  Deck d = parse_deck(kGoodDeck + "[train]\nlr = 1\ngrad_clip = 2\n", "t.toml");
  EXPECT_EQ(d.train.lr, 1.0);
  EXPECT_EQ(d.train.grad_clip, 2.0);
}

TEST(DeckDefaults, CorpusMayBeLeftOutWhenPrepareDoesNotRun) {
  Deck d = parse_deck("[run]\nphases = [\"eval\"]\n", "t.toml");
  EXPECT_TRUE(d.data.corpus.empty());
}

TEST(DeckDefaults, ExpertDomainsFallBackToTrainDomains) {
  Deck d = parse_deck(kGoodDeck, "t.toml");
  EXPECT_EQ(d.expert_domains(), d.data.train_domains);
  Deck e = parse_deck(kGoodDeck + "[experts]\ndomains = [\"gamma\", \"alpha\"]\n", "t.toml");
  EXPECT_EQ(e.expert_domains(), (std::vector<std::string>{"gamma", "alpha"}));
}

TEST(DeckPhaseTrain, PhaseTablesOverrideOnlyTheirKeys) {
  Deck d = parse_deck(kGoodDeck + R"(
[train]
lr = 1e-3
micro_batch = 4

[experts.train]
lr = 1e-4

[seed]
tokens = 5000

[seed.train]
global_batch = 64
)",
                      "t.toml");
  EXPECT_EQ(d.train.lr, 1e-3);
  EXPECT_EQ(d.experts.train.lr, 1e-4);
  EXPECT_EQ(d.experts.train.micro_batch, 4);  // inherited from [train]
  EXPECT_EQ(d.seed.train.lr, 1e-3);
  EXPECT_EQ(d.seed.train.global_batch, 64);
  EXPECT_EQ(d.seed.train.micro_batch, 4);
  EXPECT_EQ(d.train.global_batch, btm::TrainConfig{}.global_batch);
  EXPECT_TRUE(d.baseline.train == d.train);
  EXPECT_EQ(d.seed.tokens, 5000u);
}

TEST(DeckPhaseTrain, FinetuneStartsFromTrainButAtTheFinetuningRate) {
  Deck d = parse_deck(kGoodDeck + "[train]\nlr = 1e-3\nmicro_batch = 4\n", "t.toml");
  EXPECT_EQ(d.finetune.train.lr, btm::kFinetuneLr);
  EXPECT_EQ(d.finetune.train.micro_batch, 4);
  EXPECT_EQ(d.finetune.train.min_lr_ratio, 0.1);  // cosine to 10% of the peak
  Deck e = parse_deck(kGoodDeck + "[finetune.train]\nlr = 3e-4\n", "t.toml");
  EXPECT_EQ(e.finetune.train.lr, 3e-4);
}

TEST(DeckMix, BtxAndSparseUpcyclingFitInOneDeck) {
  Deck d = parse_deck(kGoodDeck + R"(
[[mix.models]]
name = "btx"
router_init = "centroid"

[[mix.models]]
name = "upcycle"
source = "seed"
num_experts = 4

[finetune]
tokens = 2000
)",
                      "t.toml");
  ASSERT_EQ(d.mix.models.size(), 2u);
  EXPECT_EQ(d.mix.models[0].source, "forest");
  EXPECT_EQ(d.mix.models[0].num_experts_per_tok, 2);
  EXPECT_EQ(d.mix.models[1].num_experts, 4);
  EXPECT_EQ(d.finetune.tokens, 2000u);
  EXPECT_EQ(d.finetuned_file("btx"), d.run.out_dir / "btx.h5");
  EXPECT_EQ(d.mixed_file("upcycle"), d.run.out_dir / "mixed" / "upcycle.h5");
}

TEST(DeckOverrides, SetReplacesAndAddsKeys) {
  Deck d = parse_deck(kGoodDeck + "[train]\nlr = 1e-3\n", "t.toml",
                      {"run.name=foo", "train.lr=2e-3", "experts.train.lr=1e-4", "data.train_domains=[\"a\",\"b\"]",
                       "data.heldout_domains=[]", "data.corpus=/scratch/my corpus/x.jsonl", "model.tie_word_embeddings=true",
                       " seed.tokens = 1_000 "});
  EXPECT_EQ(d.run.name, "foo");  // not TOML: taken as a bare string
  EXPECT_EQ(d.train.lr, 2e-3);   // --set wins over the file
  EXPECT_EQ(d.seed.train.lr, 2e-3);
  EXPECT_EQ(d.experts.train.lr, 1e-4);  // creates [experts.train]
  EXPECT_EQ(d.data.train_domains, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(d.data.heldout_domains.empty());
  EXPECT_EQ(d.data.corpus, "/scratch/my corpus/x.jsonl");
  EXPECT_TRUE(d.model.tie_word_embeddings);
  EXPECT_EQ(d.seed.tokens, 1000u);
}

TEST(DeckOverrides, LaterSetWinsAndQuotedStringsStayStrings) {
  Deck d = parse_deck(kGoodDeck, "t.toml", {"run.name=one", "run.name=\"123\"", "eval.split=valid"});
  EXPECT_EQ(d.run.name, "123");
  EXPECT_EQ(d.eval.split, "valid");
}

TEST(DeckOverrides, ArraysOfTablesCanBeSetInline) {
  Deck d = parse_deck(kGoodDeck, "t.toml",
                      {R"(eval.ensembles=[{name="only", prior="uniform"}])",
                       R"(average.weighted=[{name="w", weights={alpha=1, beta=3}}])"});
  ASSERT_EQ(d.eval.ensembles.size(), 1u);
  EXPECT_EQ(d.eval.ensembles[0].name, "only");
  EXPECT_EQ(d.eval.ensembles[0].prior, "uniform");
  EXPECT_EQ(d.eval.ensembles[0].posterior, "exact");
  ASSERT_EQ(d.average.weighted.size(), 1u);
  EXPECT_EQ(d.average.weighted[0].weights.at("beta"), 3.0);
}

TEST(DeckRoundTrip, ToTomlReproducesEveryKey) {
  Deck d = every_key_changed();
  const std::string text = btm::to_toml(d);
  Deck back = parse_deck(text, "resolved.toml");
  expect_same_deck(back, d);
  EXPECT_EQ(btm::to_toml(back), text);  // stable
}

TEST(DeckRoundTrip, ToTomlOfEveryShippedDeckReadsBackTheSame) {
  for (const char* name : {"quickstart.toml", "paper8.toml", "tiny.toml"}) {
    SCOPED_TRACE(name);
    Deck d = btm::load_deck(btm::test::source_dir() / "inputs" / name);
    Deck back = parse_deck(btm::to_toml(d), name);
    expect_same_deck(back, d);
  }
}

TEST(DeckRoundTrip, ToTomlWritesEveryPhaseTrainTableInFull) {
  Deck d = parse_deck(kGoodDeck + "[experts.train]\nlr = 1e-4\n", "t.toml");
  toml::table t = toml::parse(btm::to_toml(d));
  for (const char* phase : {"seed", "experts", "baseline"}) {
    const toml::table* train = t[phase]["train"].as_table();
    ASSERT_NE(train, nullptr) << phase;
    EXPECT_EQ(train->size(), t["train"].as_table()->size()) << phase;
  }
  EXPECT_EQ(t["experts"]["train"]["lr"].value<double>(), 1e-4);
  EXPECT_EQ(t["seed"]["train"]["lr"].value<double>(), btm::TrainConfig{}.lr);
  EXPECT_EQ(t["model"]["context"].value<int>(), 64);
}

TEST(DeckRoundTrip, EmptyListsAreWrittenAsEmptyArrays) {
  Deck d = parse_deck(kGoodDeck + "[eval]\nensembles = []\n", "t.toml");
  EXPECT_TRUE(d.eval.ensembles.empty());
  Deck back = parse_deck(btm::to_toml(d), "t.toml");
  EXPECT_TRUE(back.eval.ensembles.empty());
  EXPECT_TRUE(back.average.weighted.empty());
}

TEST(DeckMoe, MixtralKeysConfigureAnMoeModel) {
  Deck d = parse_deck(kGoodDeck + "num_local_experts = 4\nnum_experts_per_tok = 2\nrouter_aux_loss_coef = 0.02\n"
                                  "moe_routing = \"top_k\"\nmoe_aux_loss = \"switch\"\n",
                      "t.toml");
  EXPECT_TRUE(d.model.is_moe());
  EXPECT_EQ(d.model.num_local_experts, 4);
  EXPECT_EQ(d.model.experts_per_token(), 2);
  EXPECT_EQ(d.model.router_aux_loss_coef, 0.02);
  EXPECT_EQ(d.model.moe_aux_loss, "switch");
  const std::string text = btm::to_toml(d);
  EXPECT_TRUE(contains(text, "num_local_experts = 4\nnum_experts_per_tok = 2\nrouter_aux_loss_coef = 0.02\n"
                             "moe_routing = \"top_k\"\nmoe_aux_loss = \"switch\"\nmoe_capacity_factor = 1.5\n"));
}

TEST(DeckMoe, DenseDecksEchoNoMoeKeys) {
  const std::string text = btm::to_toml(parse_deck(kGoodDeck, "t.toml"));
  for (const char* key : {"num_local_experts", "num_experts_per_tok", "router_aux_loss_coef", "moe_"}) {
    EXPECT_EQ(text.find(key), std::string::npos) << key;
  }
  EXPECT_TRUE(contains(text, "initializer_range = 0.02\n\n[train]"));
}

TEST(DeckDefaults, RoutedEnsemblesTakeTopKAndTemperatureFromTheClusterSection) {
  Deck d = parse_deck(kGoodDeck + R"([cluster]
k = 4
top_k = 2
temperature = 0.25
[[eval.ensembles]]
name = "routed"
router = "cluster"
[[eval.ensembles]]
name = "routed-own"
router = "cluster"
top_k = 0
temperature = 2
distance_power = 4
[[eval.ensembles]]
name = "btm"
)",
                      "t.toml");
  ASSERT_EQ(d.eval.ensembles.size(), 3u);
  EXPECT_EQ(d.eval.ensembles[0].top_k, 2);
  EXPECT_EQ(d.eval.ensembles[0].temperature, 0.25);
  EXPECT_EQ(d.eval.ensembles[0].distance_power, 2);
  EXPECT_EQ(d.eval.ensembles[1].top_k, 0);
  EXPECT_EQ(d.eval.ensembles[1].temperature, 2.0);
  EXPECT_EQ(d.eval.ensembles[1].distance_power, 4);
  EXPECT_EQ(d.eval.ensembles[2].router, "posterior");
  EXPECT_EQ(d.eval.ensembles[2].top_k, 0);  // the posterior router keeps its own default
  // --set on [cluster] reaches the routed ensembles that leave the keys out; the resolved
  // deck reads back the same.
  Deck s = parse_deck(kGoodDeck + "[cluster]\nk = 4\n[[eval.ensembles]]\nname = \"r\"\nrouter = \"cluster\"\n", "t.toml",
                      {"cluster.temperature=0.5", "cluster.top_k=3"});
  EXPECT_EQ(s.eval.ensembles[0].temperature, 0.5);
  EXPECT_EQ(s.eval.ensembles[0].top_k, 3);
  EXPECT_TRUE(parse_deck(btm::to_toml(d), "resolved.toml").eval == d.eval);
}
