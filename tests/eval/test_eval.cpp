// Distributed evaluation: the 2-D grid gives the same numbers at any rank count, runs only
// the experts a method needs, and the eval phase writes eval.h5 and the table.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "btm/comm.hpp"
#include "btm/error.hpp"
#include "btm/eval/domain_posterior.hpp"
#include "btm/eval/evaluate.hpp"
#include "btm/h5.hpp"
#include "btm/phases.hpp"
#include "eval_fixture.hpp"
#include "support/error_of.hpp"
#include "support/gather_lines.hpp"
#include "support/test_paths.hpp"

using btm::test::error_of;

namespace {

using btm::EnsembleConfig;
using btm::EvalPlan;
using btm::EvalResults;

std::filesystem::path expert_file(const std::filesystem::path& dir, const std::string& name) {
  return dir / "experts" / (name + ".h5");
}

// The fixture's three experts, in forest order.
std::vector<std::filesystem::path> fixture_expert_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const std::string e : {"alpha", "beta", "gamma"}) files.push_back(expert_file(dir, e));
  return files;
}

EvalPlan full_plan(const std::filesystem::path& dir) {
  EvalPlan plan;
  plan.train_domains = {"alpha", "beta", "gamma"};
  plan.heldout_domains = {"delta"};
  plan.prior_sequences = 10;
  plan.batch = 4;
  plan.models = {{"seed", dir / "seed.h5", {}}};
  for (const std::string name : {"alpha", "beta", "gamma"}) plan.experts.push_back({name, name, expert_file(dir, name)});
  plan.averages = {{"avg-uniform", dir / "averages" / "uniform.h5", {}},
                   {"avg-posterior", dir / "averages" / "posterior-alpha.h5", {"alpha"}}};
  plan.ensembles = {{"ens", "cached", "exact", 0},
                    {"ens-prev", "cached", "previous_token", 0},
                    {"ens-top1", "cached", "exact", 1},
                    {"ens-top2-prev", "cached", "previous_token", 2},
                    {"ens-uniform", "uniform", "exact", 0}};
  return plan;
}

void expect_same_results(const EvalResults& got, const EvalResults& want) {
  ASSERT_EQ(got.rows.size(), want.rows.size());
  for (std::size_t i = 0; i < got.rows.size(); ++i) {
    const auto& a = got.rows[i];
    const auto& b = want.rows[i];
    EXPECT_EQ(a.method, b.method);
    EXPECT_EQ(a.domain, b.domain);
    EXPECT_EQ(a.split, b.split);
    EXPECT_EQ(a.tokens, b.tokens) << a.method << "/" << a.domain;
    EXPECT_NEAR(a.nll, b.nll, 1e-6 * std::abs(b.nll)) << a.method << "/" << a.domain;
    EXPECT_NEAR(a.perplexity, b.perplexity, 1e-6 * b.perplexity) << a.method << "/" << a.domain;
  }
  EXPECT_EQ(got.selected, want.selected);
  ASSERT_EQ(got.priors.size(), want.priors.size());
  for (const auto& [ens, by_domain] : want.priors) {
    for (const auto& [d, prior] : by_domain) {
      const auto& g = got.priors.at(ens).at(d);
      ASSERT_EQ(g.size(), prior.size());
      for (std::size_t j = 0; j < prior.size(); ++j) EXPECT_NEAR(g[j], prior[j], 1e-6) << ens << "/" << d;
    }
  }
}

btm::Deck fixture_deck(const std::filesystem::path& dir) {
  btm::Deck deck;
  deck.run.out_dir = dir;
  deck.model = btm::test::eval_config();
  deck.data.heldout_domains = {"delta"};
  deck.eval.prior_sequences = 10;
  deck.eval.batch = 4;
  deck.eval.ensembles = {{"ensemble", "cached", "exact", 0}, {"top2", "cached", "previous_token", 2}};
  return deck;
}

std::string h5_type_of(const std::filesystem::path& file, const std::string& dataset) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  hid_t t = H5Dget_type(d);
  std::string out;
  switch (H5Tget_class(t)) {
    case H5T_STRING: out = "string"; break;
    case H5T_FLOAT: out = "float" + std::to_string(8 * H5Tget_size(t)); break;
    case H5T_INTEGER: out = (H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(8 * H5Tget_size(t)); break;
    default: out = "other";
  }
  H5Tclose(t);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

}  // namespace

TEST(EvalGrid, ResultsAreTheSameAtEveryRankCount) {
  const auto dir = btm::test::fresh_dir("eval_ranks");
  btm::test::make_eval_fixture(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  const EvalPlan plan = full_plan(dir);
  const EvalResults world = btm::evaluate(plan, data, *backend, btm::Comm::world());
  const EvalResults alone = btm::evaluate(plan, data, *backend, btm::Comm(MPI_COMM_SELF));
  expect_same_results(world, alone);

  // 49 blocks of 8 targets per domain; every cell present except avg-posterior off alpha.
  EXPECT_EQ(world.tokens.at("delta"), 49u * 8);
  EXPECT_EQ(world.rows.size(), 10u * 4 + 1);  // seed, 3 experts, avg-uniform, 5 ensembles
  EXPECT_EQ(world.find("avg-posterior", "beta"), nullptr);
  ASSERT_NE(world.find("avg-posterior", "alpha"), nullptr);
  // Ensembles use their cached prior's top-k; the numbers are sane and the rules differ.
  for (const std::string d : {"alpha", "beta", "gamma", "delta"}) {
    EXPECT_EQ(world.selected.at("ens-top1").at(d).size(), 1u);
    EXPECT_EQ(world.selected.at("ens-top2-prev").at(d).size(), 2u);
    EXPECT_EQ(world.selected.at("ens").at(d).size(), 3u);
    const double ens = world.find("ens", d)->nll;
    EXPECT_TRUE(std::isfinite(ens));
    EXPECT_GT(std::abs(ens - world.find("ens-prev", d)->nll), 1e-6);
    // A Bayesian mixture never loses more than log(1/prior_j) per block to its expert j.
    double best = 1e9;
    for (const std::string e : {"alpha", "beta", "gamma"}) best = std::min(best, world.find(e, d)->nll);
    EXPECT_LT(world.find("ens-uniform", d)->nll, best + std::log(3.0) / 8 + 1e-9);
  }
  // Domains in separate passes of the grid change nothing.
  EvalPlan small = plan;
  small.grid_floats = 1;
  expect_same_results(btm::evaluate(small, data, *backend, btm::Comm::world()), alone);
}

TEST(EvalGrid, ExpertRowsEqualDenseScoringOfTheSameFile) {
  const auto dir = btm::test::fresh_dir("eval_dense_expert");
  btm::test::make_eval_fixture(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  EvalPlan plan = full_plan(dir);
  plan.ensembles.clear();
  plan.models = {{"beta-as-dense", expert_file(dir, "beta"), {}}};
  const EvalResults r = btm::evaluate(plan, data, *backend, btm::Comm::world());
  for (const std::string d : {"alpha", "beta", "gamma", "delta"}) {
    EXPECT_NEAR(r.find("beta", d)->nll, r.find("beta-as-dense", d)->nll, 1e-6 * r.find("beta", d)->nll) << d;
  }
}

TEST(EvalGrid, ASingleExpertEnsembleEqualsThatExpert) {
  const auto dir = btm::test::fresh_dir("eval_single");
  btm::test::make_eval_fixture(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  EvalPlan plan;
  plan.train_domains = {"alpha", "beta"};
  plan.prior_sequences = 5;
  plan.experts = {{"gamma", "gamma", expert_file(dir, "gamma")}};
  plan.ensembles = {{"ens", "cached", "exact", 0}, {"prev", "cached", "previous_token", 1}};
  const EvalResults r = btm::evaluate(plan, data, *backend, btm::Comm::world());
  for (const std::string d : {"alpha", "beta"}) {
    EXPECT_NEAR(r.find("ens", d)->nll, r.find("gamma", d)->nll, 1e-9 * r.find("gamma", d)->nll);
    EXPECT_NEAR(r.find("prev", d)->nll, r.find("gamma", d)->nll, 1e-9 * r.find("gamma", d)->nll);
    EXPECT_EQ(r.priors.at("ens").at(d), std::vector<double>{1.0});
  }
}

TEST(EvalGrid, UnselectedExpertsAreNeverRun) {
  const auto dir = btm::test::fresh_dir("eval_topk_spy");
  btm::test::make_eval_fixture(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  EvalPlan plan = full_plan(dir);
  plan.models.clear();
  plan.averages.clear();
  plan.single_experts = btm::SingleExperts::none;
  plan.ensembles = {{"top1", "cached", "exact", 1}};
  btm::ModelPool pool(*backend, data.vocab_size(), btm::test::kContext);
  const EvalResults r = btm::evaluate(plan, data, pool, btm::Comm::world());
  EXPECT_EQ(r.rows.size(), 4u);  // only the ensemble's rows
  std::map<std::string, std::set<std::string>> test_runs, valid_runs;  // domain -> expert files
  for (const auto& line : btm::test::gather_lines(pool.runs())) {
    std::vector<std::string> f;
    std::istringstream in(line);
    for (std::string s; std::getline(in, s, '|');) f.push_back(s);
    ASSERT_EQ(f.size(), 4u) << line;
    (f[2] == "test" ? test_runs : valid_runs)[f[1]].insert(f[0]);
  }
  for (const std::string d : {"alpha", "beta", "gamma", "delta"}) {
    const int chosen = r.selected.at("top1").at(d).at(0);
    EXPECT_EQ(test_runs[d], (std::set<std::string>{plan.experts[chosen].file.string()})) << d;
    EXPECT_EQ(valid_runs[d].size(), 3u) << d;  // the cached prior needs every expert
  }
  // The chosen expert is the one with the largest cached prior.
  for (const auto& [d, prior] : r.priors.at("top1")) {
    const int chosen = r.selected.at("top1").at(d).at(0);
    EXPECT_EQ(chosen, std::max_element(prior.begin(), prior.end()) - prior.begin());
  }
}

TEST(EvalGrid, OwnSingleExpertsRunOnlyOnTheirDomainAndModelsLoadOnce) {
  const auto dir = btm::test::fresh_dir("eval_own");
  btm::test::make_eval_fixture(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  EvalPlan plan = full_plan(dir);
  plan.ensembles.clear();
  plan.single_experts = btm::SingleExperts::own;
  btm::ModelPool pool(*backend, data.vocab_size(), btm::test::kContext);
  const EvalResults r = btm::evaluate(plan, data, pool, btm::Comm::world());
  for (const std::string e : {"alpha", "beta", "gamma"}) {
    for (const std::string d : {"alpha", "beta", "gamma", "delta"}) {
      EXPECT_EQ(r.find(e, d) != nullptr, e == d) << e << " on " << d;
    }
  }
  for (const auto& line : btm::test::gather_lines(pool.runs())) {
    for (const std::string e : {"alpha", "beta", "gamma"}) {
      if (line.rfind(expert_file(dir, e).string() + "|", 0) == 0) {
        EXPECT_EQ(line.substr(0, line.find('|', line.find('|') + 1)), expert_file(dir, e).string() + "|" + e);
      }
    }
  }
  // Dense models are loaded once per process, not once per domain.
  EXPECT_EQ(std::count(pool.loads().begin(), pool.loads().end(), (dir / "seed.h5").string()), 1);
  EXPECT_EQ(std::count(pool.loads().begin(), pool.loads().end(), (dir / "averages" / "uniform.h5").string()), 1);
}

TEST(EvalPhase, WritesEvalFileAndTable) {
  const auto dir = btm::test::fresh_dir("eval_phase");
  btm::test::make_eval_fixture(dir);
  const btm::Deck deck = fixture_deck(dir);
  btm::run_eval(deck, btm::Comm::world());
  const auto file = deck.eval_file();
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_EQ(h5_type_of(file, "/results/method"), "string");
  EXPECT_EQ(h5_type_of(file, "/results/domain"), "string");
  EXPECT_EQ(h5_type_of(file, "/results/split"), "string");
  EXPECT_EQ(h5_type_of(file, "/results/tokens"), "uint64");
  EXPECT_EQ(h5_type_of(file, "/results/nll"), "float64");
  EXPECT_EQ(h5_type_of(file, "/results/perplexity"), "float64");
  EXPECT_EQ(h5_type_of(file, "/priors/ensemble/alpha"), "float64");

  btm::h5::File f(file, btm::h5::File::Mode::read);
  const auto methods = f.read_strings("/results/method");
  const auto domains = f.read_strings("/results/domain");
  const auto splits = f.read_strings("/results/split");
  const auto tokens = f.read<std::uint64_t>("/results/tokens");
  const auto nll = f.read<double>("/results/nll");
  const auto ppl = f.read<double>("/results/perplexity");
  // seed, 3 experts, avg-uniform, 2 ensembles on 4 domains; avg-posterior on alpha only.
  ASSERT_EQ(methods.size(), 7u * 4 + 1);
  ASSERT_EQ(domains.size(), methods.size());
  ASSERT_EQ(tokens.size(), methods.size());
  EXPECT_EQ(methods.front(), "seed");
  EXPECT_EQ(domains.front(), "alpha");
  EXPECT_EQ(methods.back(), "top2");
  EXPECT_EQ(domains.back(), "delta");
  std::set<std::string> names(methods.begin(), methods.end());
  EXPECT_EQ(names, (std::set<std::string>{"seed", "alpha", "beta", "gamma", "avg-uniform", "avg-posterior", "ensemble", "top2"}));
  for (std::size_t i = 0; i < methods.size(); ++i) {
    EXPECT_EQ(splits[i], "test");
    EXPECT_EQ(tokens[i], 49u * 8);
    EXPECT_NEAR(ppl[i], std::exp(nll[i]), 1e-9 * ppl[i]);
  }
  EXPECT_EQ(f.string_attr("/results", "train_domains"), "alpha,beta,gamma");
  EXPECT_EQ(f.string_attr("/results", "heldout_domains"), "delta");
  EXPECT_EQ(f.string_attr("/results", "split"), "test");
  EXPECT_EQ(f.attr<std::uint64_t>("/results", "max_tokens_per_domain"), 0u);
  EXPECT_EQ(f.attr<std::int64_t>("/results", "prior_sequences"), 10);
  EXPECT_DOUBLE_EQ(f.attr<double>("/results", "prior_alpha"), 0.3);
  EXPECT_NE(f.string_attr("/results", "deck").find("[eval]"), std::string::npos);
  EXPECT_EQ(f.read_strings("/priors/experts"), (std::vector<std::string>{"alpha", "beta", "gamma"}));
  const auto prior = f.read<double>("/priors/top2/beta");
  ASSERT_EQ(prior.size(), 3u);
  EXPECT_NEAR(prior[0] + prior[1] + prior[2], 1.0, 1e-9);
  const std::string kept = f.string_attr("/priors/top2/beta", "top_k_experts");
  EXPECT_EQ(std::count(kept.begin(), kept.end(), ','), 1) << kept;
}

TEST(EvalPhase, MaxTokensCapsTheBlocks) {
  const auto dir = btm::test::fresh_dir("eval_cap");
  btm::test::make_eval_fixture(dir);
  btm::Deck deck = fixture_deck(dir);
  deck.eval.max_tokens_per_domain = 100;  // 12 blocks of 8
  deck.eval.split = "valid";
  btm::run_eval(deck, btm::Comm::world());
  btm::h5::File f(deck.eval_file(), btm::h5::File::Mode::read);
  for (auto t : f.read<std::uint64_t>("/results/tokens")) EXPECT_EQ(t, 96u);
  for (const auto& s : f.read_strings("/results/split")) EXPECT_EQ(s, "valid");
}

TEST(EvalTable, RowsAreDomainsThenMeansAndColumnsAreMethodsInOrder) {
  EvalPlan plan;
  plan.train_domains = {"alpha", "beta"};
  plan.heldout_domains = {"delta"};
  plan.models = {{"seed", "seed.h5", {}}};
  plan.experts = {{"alpha", "alpha", "a.h5"}};
  plan.averages = {{"avg-posterior", "p.h5", {"alpha"}}};
  plan.ensembles = {{"ensemble", "cached", "exact", 0}};
  EvalResults r;
  r.context = 8;
  r.tokens = {{"alpha", 80}, {"beta", 80}, {"delta", 40}};
  auto row = [&](const std::string& m, const std::string& d, double ppl) {
    r.rows.push_back({m, d, "test", r.tokens[d], std::log(ppl), ppl});
  };
  row("seed", "alpha", 10);
  row("seed", "beta", 20);
  row("seed", "delta", 30);
  row("alpha", "alpha", 5);
  row("avg-posterior", "alpha", 7);
  row("ensemble", "alpha", 4);
  row("ensemble", "beta", 6);
  row("ensemble", "delta", 50.125);
  const std::string table = btm::format_table(plan, r);
  std::vector<std::string> lines;
  std::istringstream in(table);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_GE(lines.size(), 9u) << table;
  EXPECT_NE(lines[0].find("test split"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("200 tokens"), std::string::npos) << lines[0];
  // Header: domain, tokens, then the methods in column order.
  std::istringstream h(lines[1]);
  std::vector<std::string> cols;
  for (std::string c; h >> c;) cols.push_back(c);
  EXPECT_EQ(cols, (std::vector<std::string>{"domain", "tokens", "seed", "alpha", "avg-posterior", "ensemble"}));
  auto cells = [&](const std::string& label) {
    for (const auto& l : lines) {
      if (l.rfind(label, 0) == 0) {
        std::istringstream s(l.substr(label.size()));
        std::vector<std::string> out;
        for (std::string c; s >> c;) out.push_back(c);
        return out;
      }
    }
    return std::vector<std::string>{"missing " + label};
  };
  EXPECT_EQ(cells("alpha"), (std::vector<std::string>{"80", "10.00", "5.00", "7.00", "4.00"}));
  EXPECT_EQ(cells("beta"), (std::vector<std::string>{"80", "20.00", "-", "-", "6.00"}));
  EXPECT_EQ(cells("delta"), (std::vector<std::string>{"40", "30.00", "-", "-", "50.12"}));
  EXPECT_EQ(cells("in-domain mean"), (std::vector<std::string>{"15.00", "-", "-", "5.00"}));
  EXPECT_EQ(cells("held-out mean"), (std::vector<std::string>{"30.00", "-", "-", "50.12"}));
  // Domain rows come before the means, train before held-out.
  auto index = [&](const std::string& label) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].rfind(label, 0) == 0) return i;
    }
    return lines.size();
  };
  EXPECT_LT(index("alpha"), index("beta"));
  EXPECT_LT(index("beta"), index("delta"));
  EXPECT_LT(index("delta"), index("in-domain mean"));
  EXPECT_LT(index("in-domain mean"), index("held-out mean"));
}

TEST(EvalErrors, TopKWithAUniformPriorIsRefusedBeforeAnyWork) {
  const auto dir = btm::test::fresh_dir("eval_topk_uniform");  // empty: no data, no models
  btm::Deck deck = fixture_deck(dir);
  deck.eval.ensembles = {{"ok", "cached", "exact", 2}, {"flat", "uniform", "exact", 2}};
  const std::string msg = error_of([&] { btm::run_eval(deck, btm::Comm::world()); });
  EXPECT_NE(msg.find("eval.ensembles[1].top_k"), std::string::npos) << msg;
  EXPECT_NE(msg.find("uniform"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"flat\""), std::string::npos) << msg;
  deck.eval.ensembles = {{"neg", "cached", "exact", -1}};
  EXPECT_NE(error_of([&] { btm::run_eval(deck, btm::Comm::world()); }).find("eval.ensembles[0].top_k = -1"),
            std::string::npos);
  deck.eval.ensembles = {{"odd", "cached", "cumulative", 0}};
  EXPECT_NE(error_of([&] { btm::run_eval(deck, btm::Comm::world()); }).find("eval.ensembles[0].posterior"),
            std::string::npos);
  deck.eval.ensembles = {{"odd", "learned", "exact", 0}};
  EXPECT_NE(error_of([&] { btm::run_eval(deck, btm::Comm::world()); }).find("eval.ensembles[0].prior"),
            std::string::npos);
}

TEST(EvalErrors, NoModelAtAllIsAnError) {
  const auto dir = btm::test::fresh_dir("eval_nothing");
  if (btm::Comm::world().is_root()) {
    btm::test::write_synthetic_data(dir / "data.h5", {"alpha", "beta"}, btm::test::kVocab, 200, 3);
  }
  btm::Comm::world().barrier();
  const std::string msg = error_of([&] { btm::run_eval(fixture_deck(dir), btm::Comm::world()); });
  EXPECT_NE(msg.find("nothing to evaluate"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
  EXPECT_NE(error_of([] { btm::validate_plan(EvalPlan{{"a"}, {}}); }).find("no model to evaluate"), std::string::npos);
}

TEST(EvalErrors, BadPlansAndModelsAreNamed) {
  const auto dir = btm::test::fresh_dir("eval_bad");
  btm::test::make_eval_fixture(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  EvalPlan plan = full_plan(dir);
  plan.ensembles.push_back({"alpha", "cached", "exact", 0});
  EXPECT_NE(error_of([&] { btm::validate_plan(plan); }).find("two methods are named \"alpha\""), std::string::npos);
  plan = full_plan(dir);
  plan.experts.clear();
  EXPECT_NE(error_of([&] { btm::validate_plan(plan); }).find("ensembles need experts"), std::string::npos);
  plan = full_plan(dir);
  plan.heldout_domains = {"alpha"};
  EXPECT_NE(error_of([&] { btm::validate_plan(plan); }).find("listed twice"), std::string::npos);
  EXPECT_NE(error_of([] { btm::parse_single_experts("some"); }).find("eval.single_experts = \"some\""), std::string::npos);
  // A model for another tokenizer.
  if (btm::Comm::world().is_root()) {
    btm::ModelFile m = btm::test::random_model("odd", "", 5);
    m.config.vocab_size = 50;
    m.params = [&] {
      auto be = btm::make_backend("cpu");
      btm::Llama l(m.config, *be);
      l.init_weights(5);
      return l.get_params();
    }();
    btm::save_model(dir / "odd.h5", m);
  }
  btm::Comm::world().barrier();
  plan = full_plan(dir);
  plan.models = {{"odd", dir / "odd.h5", {}}};
  const std::string msg = error_of([&] { btm::evaluate(plan, data, *backend, btm::Comm::world()); });
  EXPECT_NE(msg.find("odd.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocabulary of 50"), std::string::npos) << msg;
  plan.models = {{"gone", dir / "missing.h5", {}}};
  EXPECT_NE(error_of([&] { btm::evaluate(plan, data, *backend, btm::Comm::world()); }).find("missing.h5"),
            std::string::npos);
  plan = full_plan(dir);
  plan.split = "train2";
  EXPECT_NE(error_of([&] { btm::evaluate(plan, data, *backend, btm::Comm::world()); }).find("train2"),
            std::string::npos);
}

TEST(DomainPosterior, SameOnAnyCommunicatorAndEqualToTheEnsemblePrior) {
  const auto dir = btm::test::fresh_dir("eval_domain_posterior");
  btm::test::make_eval_fixture(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  const std::vector<std::filesystem::path> files = fixture_expert_files(dir);
  btm::DomainPosteriorOptions o;
  o.sequences = 10;
  o.batch = 4;
  const auto world = btm::domain_posterior(files, data, "beta", *backend, btm::Comm::world(), o);
  const auto alone = btm::domain_posterior(files, data, "beta", *backend, btm::Comm(MPI_COMM_SELF), o);
  // Inside expert groups, as the experts phase calls it.
  const btm::Comm w = btm::Comm::world();
  btm::OwnedComm group(w, w.rank() % 2, w.rank());
  const auto grouped = btm::domain_posterior(files, data, "beta", *backend, group.view(), o);
  ASSERT_EQ(world.size(), 3u);
  double total = 0;
  for (std::size_t j = 0; j < 3; ++j) {
    EXPECT_NEAR(world[j], alone[j], 1e-6);
    EXPECT_NEAR(grouped[j], alone[j], 1e-6);
    total += world[j];
  }
  EXPECT_NEAR(total, 1.0, 1e-9);
  // The same numbers as the eval phase's cached prior with the same settings.
  EvalPlan plan = full_plan(dir);
  plan.models.clear();
  plan.averages.clear();
  plan.ensembles = {{"ens", "cached", "exact", 0}};
  const EvalResults r = btm::evaluate(plan, data, *backend, btm::Comm::world());
  for (std::size_t j = 0; j < 3; ++j) EXPECT_NEAR(r.priors.at("ens").at("beta")[j], world[j], 1e-6);
  // The deck overload: eval settings, `sequences` from the caller.
  btm::Deck deck = fixture_deck(dir);
  deck.eval.batch = 3;
  const auto from_deck = btm::domain_posterior(deck, data, *backend, files, "beta", btm::Comm::world(), 10);
  for (std::size_t j = 0; j < 3; ++j) EXPECT_NEAR(from_deck[j], world[j], 1e-6);
}

// The posterior-weighted averages read their weights from [average] and [eval] alone: the
// order (and posterior rules) of [[eval.ensembles]] cannot change a merged model.
TEST(DomainPosterior, ReorderingTheEnsemblesDoesNotChangeThePosteriorAverages) {
  const auto dir = btm::test::fresh_dir("eval_average_ensemble_order");
  btm::test::make_eval_fixture(dir);
  const btm::Comm world = btm::Comm::world();
  btm::Deck deck = fixture_deck(dir);
  deck.average.uniform = false;
  auto averaged = [&](const btm::Deck& d) {
    btm::run_average(d, world);
    world.barrier();
    return btm::load_model(d.average_file("posterior-beta")).params;
  };
  deck.eval.ensembles = {{"ensemble", "cached", "exact", 0}, {"top2", "cached", "previous_token", 2}};
  const auto first = averaged(deck);
  deck.eval.ensembles = {{"top2", "cached", "previous_token", 2}, {"ensemble", "cached", "exact", 0}};
  const auto reordered = averaged(deck);
  deck.eval.ensembles.clear();
  const auto without = averaged(deck);
  ASSERT_EQ(first.size(), reordered.size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    ASSERT_EQ(first[i], reordered[i]) << i;
    ASSERT_EQ(first[i], without[i]) << i;
  }
  // average.posterior_rule does change it (the key is read), and the weights are those of
  // domain_posterior with the [average] settings: eval.prior_sequences blocks by default.
  deck.average.posterior_rule = "exact";
  const auto exact = averaged(deck);
  bool differs = false;
  for (std::size_t i = 0; i < first.size(); ++i) differs = differs || exact[i] != first[i];
  EXPECT_TRUE(differs);
  auto backend = btm::make_backend("cpu");
  btm::Dataset data(dir / "data.h5");
  const std::vector<std::filesystem::path> files = fixture_expert_files(dir);
  btm::DomainPosteriorOptions o;
  o.sequences = deck.eval.prior_sequences;
  o.batch = deck.eval.batch;
  o.rule = btm::PosteriorRule::exact;
  const auto w = btm::domain_posterior(files, data, "beta", *backend, world, o);
  EXPECT_EQ(btm::domain_posterior(deck, data, *backend, files, "beta", world), w);
  o.rule = btm::PosteriorRule::previous_token;
  deck.average.posterior_rule = "previous_token";
  EXPECT_EQ(btm::domain_posterior(deck, data, *backend, files, "beta", world),
            btm::domain_posterior(files, data, "beta", *backend, world, o));
  // average.posterior_sequences, when set, overrides eval.prior_sequences.
  deck.average.posterior_sequences = 3;
  o.sequences = 3;
  EXPECT_EQ(btm::domain_posterior(deck, data, *backend, files, "beta", world),
            btm::domain_posterior(files, data, "beta", *backend, world, o));
  EXPECT_EQ(deck.average_posterior_sequences(), 3);
  EXPECT_EQ(deck.branch_posterior_sequences(), 3);
  deck.experts.posterior_sequences = 7;
  EXPECT_EQ(deck.branch_posterior_sequences(), 7);
}

// The cached prior of every ensemble is estimated with eval.prior_rule (default: the released
// code's previous-token posterior), not with the ensemble's own posterior rule.
TEST(DomainPosterior, TheCachedPriorFollowsThePriorRuleNotTheEnsemblesPosterior) {
  const auto dir = btm::test::fresh_dir("eval_prior_rule");
  btm::test::make_eval_fixture(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  const std::vector<std::filesystem::path> files = fixture_expert_files(dir);
  btm::DomainPosteriorOptions o;
  o.sequences = 10;
  o.batch = 4;
  EvalPlan plan = full_plan(dir);
  plan.models.clear();
  plan.averages.clear();
  plan.ensembles = {{"exact", "cached", "exact", 0}, {"prev", "cached", "previous_token", 0}};
  for (const std::string rule : {"previous_token", "exact"}) {
    if (rule == "exact") plan.prior_rule = "exact";
    o.rule = btm::parse_posterior_rule(rule, "rule");
    const auto want = btm::domain_posterior(files, data, "beta", *backend, btm::Comm::world(), o);
    const EvalResults r = btm::evaluate(plan, data, *backend, btm::Comm::world());
    for (const std::string ens : {"exact", "prev"}) {
      for (std::size_t j = 0; j < 3; ++j) EXPECT_NEAR(r.priors.at(ens).at("beta")[j], want[j], 1e-12) << rule << " " << ens;
    }
  }
  plan.prior_rule = "cumulative";
  EXPECT_NE(error_of([&] { btm::validate_plan(plan); }).find("eval.prior_rule = \"cumulative\""), std::string::npos);
}
