// BTX: mix (experts' FFNs -> MoE experts, the rest averaged, routers) and finetune, on the
// tiny deck at 1, 2 and 4 ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/error.hpp"
#include "btm/forest.hpp"
#include "btm/h5.hpp"
#include "btm/mixing.hpp"
#include "btm/model/llama.hpp"
#include "btm/model/model_file.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/trainer.hpp"
#include "support/error_of.hpp"
#include "tiny_deck.hpp"

using btm::test::error_of;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kDomains = {"scripture", "code-go", "dictionary"};

// A forest whose experts are all copies of the seed, one per training domain.
void forest_of_seed_copies(const btm::Deck& deck, const btm::Comm& world) {
  if (world.is_root()) {
    fs::create_directories(deck.expert_file("x").parent_path());
    const btm::h5::File seed = btm::h5::open_for_read(deck.seed_file(), "the seed");
    const std::string architecture = btm::read_model_config(seed).architecture_hash();
    btm::Forest::update(deck.forest_file(), [&](btm::Forest& f) {
      for (const auto& d : kDomains) {
        fs::copy_file(deck.seed_file(), deck.expert_file(d), fs::copy_options::overwrite_existing);
        f.add({d, d, "seed", "experts/" + d + ".h5", architecture, 0});
      }
    });
  }
  world.barrier();
}

// Per-token NLL of a model file on the first blocks of a domain's test split.
std::vector<float> token_nll(const fs::path& file, const btm::Dataset& data, const std::string& domain, int blocks) {
  auto backend = btm::make_backend("cpu");
  const btm::ModelFile m = btm::load_model(file);
  btm::Llama model(m.config, *backend);
  model.set_params(m.params);
  const int ctx = m.config.max_position_embeddings;
  std::vector<std::int32_t> tokens(std::size_t(blocks) * (ctx + 1));
  for (int b = 0; b < blocks; ++b) data.read_block(domain, "test", b, ctx, tokens.data() + std::size_t(b) * (ctx + 1));
  std::vector<float> nll(std::size_t(blocks) * ctx);
  model.token_nll(tokens.data(), blocks, ctx, nll.data());
  return nll;
}

std::vector<float> tensor(const fs::path& file, const std::string& name) {
  btm::h5::File f = btm::h5::open_for_read(file, "a model file");
  return f.read<float>("/params/" + name);
}

std::string mix_models(const std::string& entries) { return "mix.models=[" + entries + "]"; }

}  // namespace

// top_k and soft gates sum to 1; switch and sample_top1 scale the expert by its probability.
TEST(Btx, MixingCopiesOfTheSeedReproducesTheSeedForAnyTopKRouterInitAndSoftRouting) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("btx_seed_copies");
  const btm::Deck deck = btm::test::tiny_deck(
      dir, {mix_models("{name=\"k1-random\", num_experts_per_tok=1}, {name=\"k2-centroid\", router_init=\"centroid\"},"
                       "{name=\"k3-random\", num_experts_per_tok=3}, {name=\"soft\", routing=\"soft\"},"
                       "{name=\"with-seed\", include_seed=true, num_experts_per_tok=2, router_init=\"centroid\"},"
                       "{name=\"upcycle\", source=\"seed\", num_experts=2, num_experts_per_tok=1}")});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed"}, world));
  forest_of_seed_copies(deck, world);
  btm::run_mix(deck, world);
  if (!world.is_root()) return;
  btm::Dataset data(deck.data_file());
  const auto want = token_nll(deck.seed_file(), data, "scripture", 2);
  for (const auto& m : deck.mix.models) {
    const auto got = token_nll(deck.mixed_file(m.name), data, "scripture", 2);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::abs(got[i] - want[i])));
    EXPECT_LT(worst, 2e-5) << m.name;
  }
}

TEST(Btx, MixTakesEachExpertsFfnByMixtralNameAndAveragesTheRestExactly) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("btx_mapping");
  const btm::Deck deck = btm::test::tiny_deck(
      dir, {"experts.domains=[\"scripture\", \"code-go\"]",
            mix_models("{name=\"btx\", include_seed=true, router_init=\"centroid\", weights={scripture=1, code-go=3}}")});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts", "mix"}, world));
  if (!world.is_root()) return;
  const fs::path moe = deck.mixed_file("btx");
  const std::vector<fs::path> sources = {deck.expert_file("scripture"), deck.expert_file("code-go"), deck.seed_file()};
  const btm::ModelFile mixed = btm::load_model(moe);
  EXPECT_EQ(mixed.config.num_local_experts, 3);
  EXPECT_EQ(mixed.config.num_experts_per_tok, 2);
  EXPECT_EQ(btm::mixed_expert_names(moe, 3), (std::vector<std::string>{"scripture", "code-go", "seed"}));
  const int L = mixed.config.num_hidden_layers, d = mixed.config.hidden_size;
  for (int l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (int e = 0; e < 3; ++e) {
      const std::string x = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      EXPECT_EQ(tensor(moe, x + "w1.weight"), tensor(sources[e], p + "mlp.gate_proj.weight")) << x;
      EXPECT_EQ(tensor(moe, x + "w3.weight"), tensor(sources[e], p + "mlp.up_proj.weight")) << x;
      EXPECT_EQ(tensor(moe, x + "w2.weight"), tensor(sources[e], p + "mlp.down_proj.weight")) << x;
    }
    // Centroid rows are unit vectors, one per expert, and differ between domains.
    const auto router = tensor(moe, p + "block_sparse_moe.gate.weight");
    ASSERT_EQ(router.size(), std::size_t(3) * d);
    for (int e = 0; e < 3; ++e) {
      double norm = 0;
      for (int k = 0; k < d; ++k) norm += double(router[e * d + k]) * router[e * d + k];
      EXPECT_NEAR(norm, 1.0, 1e-5);
    }
    EXPECT_NE(std::vector<float>(router.begin(), router.begin() + d), std::vector<float>(router.begin() + d, router.begin() + 2 * d));
  }
  // Every other tensor: (1 * scripture + 3 * code-go + 0 * seed) / 4, as averaging computes it.
  btm::ModelConfig dense = mixed.config;
  dense.num_local_experts = 0;
  const btm::ParamLayout dense_layout = btm::ParamLayout::llama(dense);
  int checked = 0;
  const btm::ParamLayout moe_layout = btm::ParamLayout::llama(mixed.config);
  for (const auto& info : moe_layout.params()) {
    if (!dense_layout.find(info.name)) continue;
    const auto a = tensor(sources[0], info.name), b = tensor(sources[1], info.name), c = tensor(sources[2], info.name);
    const auto got = tensor(moe, info.name);
    for (std::size_t i = 0; i < got.size(); ++i) {
      const double want = 0.25 * a[i] + 0.75 * b[i] + 0.0 * c[i];
      ASSERT_EQ(got[i], static_cast<float>(want)) << info.name << "[" << i << "]";
    }
    ++checked;
  }
  EXPECT_EQ(checked, 1 + 6 * L + 1 + 1);  // embedding; per layer 2 norms, q, k, v, o; final norm; lm_head
}

TEST(Btx, SparseUpcyclingIsCopiesOfTheSeedWithARandomRouter) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("btx_upcycle");
  const btm::Deck deck =
      btm::test::tiny_deck(dir, {mix_models("{name=\"upcycle\", source=\"seed\", num_experts=4, num_experts_per_tok=2}")});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "mix"}, world));
  if (!world.is_root()) return;
  const fs::path moe = deck.mixed_file("upcycle");
  const btm::ModelFile mixed = btm::load_model(moe);
  const btm::ModelFile seed = btm::load_model(deck.seed_file());
  ASSERT_EQ(mixed.config.num_local_experts, 4);
  EXPECT_EQ(btm::mixed_expert_names(moe, 4), (std::vector<std::string>{"seed.0", "seed.1", "seed.2", "seed.3"}));
  const btm::ParamLayout seed_layout = btm::ParamLayout::llama(seed.config);
  double sum2 = 0;
  std::size_t n = 0;
  const btm::ParamLayout moe_layout = btm::ParamLayout::llama(mixed.config);
  for (const auto& info : moe_layout.params()) {
    const float* got = mixed.params.data() + info.offset;
    std::string source = info.name;
    const auto at = info.name.find("block_sparse_moe.");
    if (at != std::string::npos) {
      const std::string rest = info.name.substr(at + 17);
      if (rest == "gate.weight") {
        for (std::size_t i = 0; i < info.numel; ++i) sum2 += double(got[i]) * got[i];
        n += info.numel;
        continue;
      }
      const std::string w = rest.substr(rest.rfind('.', rest.size() - 8) + 1);  // w1.weight, ...
      source = info.name.substr(0, at) + "mlp." + (w == "w1.weight" ? "gate_proj" : w == "w3.weight" ? "up_proj" : "down_proj") +
               ".weight";
    }
    const btm::ParamInfo& s = seed_layout.at(source);
    ASSERT_EQ(s.numel, info.numel) << info.name;
    for (std::size_t i = 0; i < info.numel; ++i) ASSERT_EQ(got[i], seed.params[s.offset + i]) << info.name;
  }
  // normal(0, initializer_range) routers
  EXPECT_NEAR(std::sqrt(sum2 / double(n)), mixed.config.initializer_range, 0.3 * mixed.config.initializer_range);
}

TEST(Btx, FinetuneIsTheSameAtAnyRankCountAndFrozenExpertsStayExactlyAsMixed) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("btx_finetune_ranks");
  const std::vector<std::string> settings = {"experts.domains=[\"scripture\", \"code-go\"]", "experts.tokens=1024",
                                             mix_models("{name=\"btx\"}"), "finetune.tokens=2048",
                                             "finetune.train.lr=1e-3",
                                             // Micro-batches of 2 sequences at 1, 2 and 4 ranks: the load-balancing
                                             // loss is a function of each micro-batch, so its partition must not change.
                                             "finetune.train.global_batch=8", "finetune.train.micro_batch=2"};
  const btm::Deck deck = btm::test::tiny_deck(dir / "world", settings);
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts", "mix", "finetune"}, world));
  // The same finetune on rank 0 alone, from a copy of everything before it.
  if (world.is_root()) {
    fs::copy(dir / "world", dir / "alone", fs::copy_options::recursive);
    fs::remove(dir / "alone" / "btx.h5");
    auto alone_settings = settings;
    const btm::Deck alone = btm::test::tiny_deck(dir / "alone", alone_settings);
    btm::run_finetune(alone, btm::Comm(MPI_COMM_SELF));
    const auto a = btm::load_checkpoint(deck.finetuned_file("btx"));
    const auto b = btm::load_checkpoint(alone.finetuned_file("btx"));
    ASSERT_EQ(a.state.metrics.loss.size(), 8u);
    ASSERT_EQ(b.state.metrics.loss.size(), 8u);
    for (std::size_t i = 0; i < 8; ++i) EXPECT_NEAR(a.state.metrics.loss[i], b.state.metrics.loss[i], 1e-5 * b.state.metrics.loss[i]) << i;
    ASSERT_EQ(a.model.params.size(), b.model.params.size());
    double worst = 0;
    for (std::size_t i = 0; i < a.model.params.size(); ++i) worst = std::max(worst, double(std::abs(a.model.params[i] - b.model.params[i])));
    EXPECT_LT(worst, 1e-5);
    EXPECT_EQ(a.model.meta.phase, "finetune");
    EXPECT_EQ(a.model.meta.parent, "mix:btx");
    EXPECT_EQ(a.state.cursor_domains, (std::vector<std::string>{"scripture", "code-go"}));
  }
  world.barrier();
  // freeze_experts: the experts are bit for bit the mixed ones, the router moved.
  auto frozen_settings = settings;
  frozen_settings.push_back("finetune.freeze_experts=true");
  const btm::Deck frozen = btm::test::tiny_deck(dir / "world", frozen_settings);
  if (world.is_root()) fs::remove(frozen.finetuned_file("btx"));
  world.barrier();
  ASSERT_EQ(btm::run_finetune(frozen, world), btm::PhaseStatus::done);
  if (!world.is_root()) return;
  const fs::path mixed = frozen.mixed_file("btx"), tuned = frozen.finetuned_file("btx");
  EXPECT_EQ(tensor(tuned, "model.layers.1.block_sparse_moe.experts.1.w2.weight"),
            tensor(mixed, "model.layers.1.block_sparse_moe.experts.1.w2.weight"));
  EXPECT_EQ(tensor(tuned, "model.layers.0.block_sparse_moe.experts.0.w1.weight"),
            tensor(mixed, "model.layers.0.block_sparse_moe.experts.0.w1.weight"));
  EXPECT_NE(tensor(tuned, "model.layers.0.block_sparse_moe.gate.weight"),
            tensor(mixed, "model.layers.0.block_sparse_moe.gate.weight"));
  EXPECT_NE(tensor(tuned, "model.layers.0.self_attn.q_proj.weight"), tensor(mixed, "model.layers.0.self_attn.q_proj.weight"));
}

TEST(Btx, InterruptedFinetuneResumesBitwise) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("btx_resume");
  const std::vector<std::string> settings = {"experts.domains=[\"scripture\", \"code-go\"]", "experts.tokens=1024",
                                             mix_models("{name=\"btx\", routing=\"sample_top1\"}"),
                                             "finetune.tokens=1280", "finetune.train.lr=1e-3"};
  const btm::Deck deck = btm::test::tiny_deck(dir, settings);
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "seed", "experts", "mix", "finetune"}, world));
  const auto straight = btm::load_checkpoint(deck.finetuned_file("btx"));
  world.barrier();
  if (world.is_root()) fs::rename(deck.finetuned_file("btx"), dir / "straight.h5");
  world.barrier();
  btm::TrainControl stop;
  stop.stop_after_step = 4;
  EXPECT_EQ(btm::run_finetune(deck, world, stop), btm::PhaseStatus::interrupted);
  world.barrier();
  EXPECT_EQ(btm::read_train_state(deck.finetuned_file("btx")).step, 4);
  EXPECT_EQ(btm::run_finetune(deck, world), btm::PhaseStatus::done);
  world.barrier();
  const auto resumed = btm::load_checkpoint(deck.finetuned_file("btx"));
  ASSERT_EQ(resumed.state.metrics.loss.size(), 10u);
  EXPECT_EQ(resumed.state.metrics.loss, straight.state.metrics.loss);
  EXPECT_EQ(resumed.model.params, straight.model.params);
  EXPECT_EQ(resumed.m, straight.m);
}

TEST(Btx, MissingInputsAreNamed) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("btx_missing");
  const btm::Deck deck = btm::test::tiny_deck(dir, {mix_models("{name=\"btx\"}, {name=\"up\", source=\"seed\", num_experts=2}")});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare"}, world));
  std::string e = error_of([&] { btm::run_mix(deck, world); });
  EXPECT_NE(e.find("mix.models[0] (\"btx\"): source = \"forest\" needs experts in " + deck.forest_file().string() +
                   "; run the experts phase first"),
            std::string::npos)
      << e;
  const btm::Deck upcycle_only = btm::test::tiny_deck(dir, {mix_models("{name=\"up\", source=\"seed\", num_experts=2}")});
  e = error_of([&] { btm::run_mix(upcycle_only, world); });
  EXPECT_NE(e.find("mix.models[0] (\"up\"), source = \"seed\", needs a finished seed model at"), std::string::npos) << e;
  e = error_of([&] { btm::run_finetune(deck, world); });
  EXPECT_NE(e.find("finetune: mix.models[0] (\"btx\") has no mixed model at " + deck.mixed_file("btx").string() +
                   "; run the mix phase first"),
            std::string::npos)
      << e;
  // An expert the deck lists but the forest lacks (only scripture was trained).
  const btm::Deck first = btm::test::tiny_deck(dir, {"experts.domains=[\"scripture\"]"});
  ASSERT_TRUE(btm::run_phases(first, {"seed", "experts"}, world));
  const btm::Deck listed = btm::test::tiny_deck(dir, {mix_models("{name=\"btx\", experts=[\"scripture\", \"code-go\"]}")});
  e = error_of([&] { btm::run_mix(listed, world); });
  EXPECT_NE(e.find("mix.models[0].experts: \"code-go\" is not an expert of"), std::string::npos) << e;
}

TEST(Btx, PipelineEvaluatesTheMoEModelsAndRecordsTheirRouting) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("btx_pipeline");
  const btm::Deck deck = btm::test::tiny_deck(
      dir, {"experts.tokens=1024", "average.posterior=false",
            mix_models("{name=\"btx\", router_init=\"centroid\"}, {name=\"upcycle\", source=\"seed\", num_experts=3}"),
            "finetune.tokens=1024", "finetune.train.lr=1e-3"});
  ASSERT_TRUE(btm::run_phases(deck, btm::kAllPhases, world));
  if (!world.is_root()) return;
  btm::h5::File eval(deck.eval_file(), btm::h5::File::Mode::read);
  const auto methods = eval.read_strings("/results/method");
  for (const std::string m : {"btx", "btx-mixed", "upcycle", "upcycle-mixed"}) {
    EXPECT_EQ(std::count(methods.begin(), methods.end(), m), 4) << m;
    EXPECT_EQ(eval.read_strings("/routing/" + m + "/experts").size(), 3u) << m;
  }
  EXPECT_EQ(eval.read_strings("/routing/btx/experts"), kDomains);
  const auto tokens = eval.read<double>("/routing/btx/scripture/tokens");
  EXPECT_EQ(eval.shape("/routing/btx/scripture/tokens"), (std::vector<hsize_t>{2, 3}));
  const auto routed = eval.attr<std::uint64_t>("/routing/btx/scripture", "routed_tokens");
  EXPECT_GT(routed, 0u);
  for (int l = 0; l < 2; ++l) EXPECT_DOUBLE_EQ(tokens[l * 3] + tokens[l * 3 + 1] + tokens[l * 3 + 2], 2.0 * routed) << l;
  // The heatmap script reads what eval wrote.
  const std::string cmd = "/usr/bin/python3 " + (btm::test::source_dir() / "analysis/routing_heatmap.py").string() + " " +
                          deck.eval_file().string() + " --method btx --out " + (dir / "routing.png").string() + " > " +
                          (dir / "heatmap.log").string() + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << btm::test::read_text(dir / "heatmap.log");
  EXPECT_GT(fs::file_size(dir / "routing.png"), 5000u);
}
