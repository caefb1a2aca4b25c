#include <gtest/gtest.h>

#include <sstream>

#include "btm/comm.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "btm/inspect.hpp"
#include "data_helpers.hpp"
#include "support/test_paths.hpp"

namespace fs = std::filesystem;
using btm::h5::File;

namespace {

std::string inspect(const fs::path& path) {
  std::ostringstream out;
  btm::inspect_file(path, out);
  return out.str();
}

fs::path rank_file(const std::string& dir, const std::string& name) {
  return btm::test::fresh_dir(dir) / (std::to_string(btm::Comm::world().rank()) + "_" + name);
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << "missing \"" << (part) << "\" in:\n" << (text)

}  // namespace

TEST(Inspect, DataFileShowsTokenizerRolesAndTheDomainSplitTable) {
  auto path = btm::test::fresh_dir("inspect_data") / "data.h5";
  btm::test::write_synthetic_data(path, {{"a", "train", 1001, 0}, {"a", "valid", 51, 0}, {"b", "test", 31, 0}});
  if (btm::Comm::world().is_root()) {
    File f(path, File::Mode::read_write);
    f.set_attr("/domains", "train", std::string("a"));
    f.set_attr("/domains", "heldout", std::string("b"));
    f.set_attr("/domains/b", "role", std::string("heldout"));
  }
  btm::Comm::world().barrier();
  std::string text = inspect(path);
  EXPECT_HAS(text, "data file (prepare)");
  EXPECT_HAS(text, "vocab_size=65536 bos_id=1 eos_id=2");
  EXPECT_HAS(text, "train domains: a");
  EXPECT_HAS(text, "held-out domains: b");
  EXPECT_HAS(text, "1,001");
  EXPECT_HAS(text, "heldout  test");
  EXPECT_HAS(text, "uint16");
  EXPECT_HAS(text, "total");
}

TEST(Inspect, ModelFileShowsConfigParameterCountTrainingAndLastMetrics) {
  auto path = rank_file("inspect_model", "seed.h5");
  {
    File f(path, File::Mode::create);
    f.set_attr<std::int64_t>("/config", "hidden_size", 8);
    f.set_attr<double>("/config", "rope_theta", 10000.0);
    f.write<float>("/params/model.embed_tokens.weight", std::vector<float>(4 * 8, 0.f), {4, 8});
    f.write<float>("/params/model.norm.weight", std::vector<float>(8, 1.f));
    f.set_attr<std::int64_t>("/train", "step", 10);
    f.set_attr<std::uint64_t>("/train", "tokens", 5120);
    f.write<std::int64_t>("/metrics/step", std::vector<std::int64_t>{5, 10});
    f.write<double>("/metrics/loss", std::vector<double>{3.25, 2.5});
    f.write<double>("/metrics/lr", std::vector<double>{1e-3, 5e-4});
    f.write<double>("/metrics/valid/scripture", std::vector<double>{3.0, 2.75});
    f.set_attr("/meta", "phase", std::string("seed"));
    f.set_attr("/meta", "parent", std::string(""));
    f.set_attr("/meta", "deck", std::string("[run]\nname = \"x\"\n"));
  }
  std::string text = inspect(path);
  EXPECT_HAS(text, "model file (seed)");
  EXPECT_HAS(text, "hidden_size = 8");
  EXPECT_HAS(text, "parameters: 40 in 2 tensors");
  EXPECT_HAS(text, "step = 10");
  EXPECT_HAS(text, "tokens = 5120");
  EXPECT_HAS(text, "loss=2.5000");
  EXPECT_HAS(text, "lr=5.000e-04");
  EXPECT_HAS(text, "scripture");
  EXPECT_HAS(text, "2.7500");
}

TEST(Inspect, EvalFileShowsTheResultsTable) {
  auto path = rank_file("inspect_eval", "eval.h5");
  {
    File f(path, File::Mode::create);
    f.write_strings("/results/method", {"seed", "ensemble"});
    f.write_strings("/results/domain", {"scripture", "scripture"});
    f.write_strings("/results/split", {"test", "test"});
    f.write<std::uint64_t>("/results/tokens", std::vector<std::uint64_t>{4096, 4096});
    f.write<double>("/results/nll", std::vector<double>{3.5, 3.25});
    f.write<double>("/results/perplexity", std::vector<double>{33.115, 25.79});
    f.set_attr<std::int64_t>("/results", "context", 256);
    f.write_strings("/priors/experts", {"e1", "e2"});
    f.write<double>("/priors/ensemble/scripture", std::vector<double>{0.875, 0.125});
  }
  std::string text = inspect(path);
  EXPECT_HAS(text, "evaluation results");
  EXPECT_HAS(text, "context = 256");
  EXPECT_HAS(text, "method");
  EXPECT_HAS(text, "perplexity");
  EXPECT_HAS(text, "ensemble  scripture  test");
  EXPECT_HAS(text, "25.790");
  EXPECT_LT(text.find("method"), text.find("perplexity"));
  EXPECT_HAS(text, "cached priors");
  EXPECT_HAS(text, "ensemble  scripture  0.875  0.125");
}

TEST(Inspect, ForestManifestIsATable) {
  auto path = rank_file("inspect_forest", "forest.h5");
  {
    File f(path, File::Mode::create);
    f.write_strings("/experts/name", {"scripture", "code-go"});
    f.write_strings("/experts/domain", {"scripture", "code-go"});
    f.write_strings("/experts/parent", {"seed", "seed"});
    f.write<std::uint64_t>("/experts/tokens", std::vector<std::uint64_t>{500000, 500000});
    f.write_strings("/experts/file", {"experts/scripture.h5", "experts/code-go.h5"});
  }
  std::string text = inspect(path);
  EXPECT_HAS(text, "ELM forest manifest");
  EXPECT_HAS(text, "experts/code-go.h5");
  EXPECT_LT(text.find("name"), text.find("file"));
}

TEST(Inspect, UnknownFilesGetAGenericTreeAndMissingFilesAnError) {
  auto path = rank_file("inspect_generic", "other.h5");
  {
    File f(path, File::Mode::create);
    f.write<float>("/group/matrix", std::vector<float>(6, 0.f), {2, 3});
    f.write_strings("/names", {"x"});
    f.set_attr<double>("/group", "scale", 0.5);
    f.set_attr("/", "note", std::string("hello"));
  }
  std::string text = inspect(path);
  EXPECT_HAS(text, "not a btm layout");
  EXPECT_HAS(text, "group/");
  EXPECT_HAS(text, "matrix  float32 [2, 3]");
  EXPECT_HAS(text, "names  string [1]");
  EXPECT_HAS(text, "@scale = 0.5");
  EXPECT_HAS(text, "@note = \"hello\"");
  EXPECT_THROW(inspect(path.parent_path() / "missing.h5"), btm::Error);
}
