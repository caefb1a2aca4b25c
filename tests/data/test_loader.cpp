#include <gtest/gtest.h>

#include <map>
#include <set>

#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/data/loader.hpp"
#include "btm/error.hpp"
#include "data_helpers.hpp"
#include "support/test_paths.hpp"

namespace fs = std::filesystem;
using btm::BatchLoader;
using btm::Dataset;

namespace {

constexpr int kContext = 8;

// Domain "a": 8 * 60 + 1 tokens = 60 blocks; "b": 20 blocks; "c": 180 blocks.
fs::path synthetic(const std::string& name) {
  auto path = btm::test::fresh_dir(name) / "data.h5";
  btm::test::write_synthetic_data(path, {{"a", "train", 8 * 60 + 1, 0},
                                         {"b", "train", 8 * 20 + 1, 10000},
                                         {"c", "train", 8 * 180 + 1, 20000},
                                         {"a", "valid", 8 * 5 + 1, 30000}});
  return path;
}

// Block index of a row of the synthetic file: its first token says where it starts.
std::pair<std::string, std::uint64_t> block_of(const std::int32_t* row) {
  int first = row[0];
  if (first >= 20000 && first < 30000) return {"c", static_cast<std::uint64_t>(first - 20000) / kContext};
  if (first >= 10000) return {"b", static_cast<std::uint64_t>(first - 10000) / kContext};
  return {"a", static_cast<std::uint64_t>(first) / kContext};
}

// Every row read by every rank in `batches` steps, in stream order (rank-major per batch).
std::vector<std::pair<std::string, std::uint64_t>> all_rows(BatchLoader& loader, int batches, int global_batch,
                                                            const btm::Comm& world) {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  std::vector<std::int32_t> tokens;
  for (int b = 0; b < batches; ++b) {
    int n = loader.next(global_batch, tokens);
    EXPECT_EQ(tokens.size(), static_cast<std::size_t>(n) * (kContext + 1));
    std::string mine;
    for (int i = 0; i < n; ++i) {
      const std::int32_t* row = tokens.data() + i * (kContext + 1);
      for (int k = 1; k <= kContext; ++k) EXPECT_EQ(row[k], row[0] + k);  // one contiguous block
      auto [d, blk] = block_of(row);
      mine += d + ":" + std::to_string(blk) + ";";
    }
    for (const auto& part : world.allgather(mine)) {
      std::size_t pos = 0;
      while (pos < part.size()) {
        auto colon = part.find(':', pos), semi = part.find(';', pos);
        out.emplace_back(part.substr(pos, colon - pos), std::stoull(part.substr(colon + 1, semi - colon - 1)));
        pos = semi + 1;
      }
    }
  }
  return out;
}

}  // namespace

TEST(Mix64, IsSplitMix64) {
  EXPECT_EQ(btm::mix64(0), 0xe220a8397b1dcdafull);
  EXPECT_EQ(btm::mix64(1), 0x910a2dec89025cc1ull);
  EXPECT_NE(btm::mix64(2), btm::mix64(3));
}

TEST(SpacedBlocks, AreEvenlySpacedDistinctAndBounded) {
  EXPECT_EQ(btm::spaced_blocks(5, 0), (std::vector<std::uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(btm::spaced_blocks(5, 9), (std::vector<std::uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(btm::spaced_blocks(10, 4), (std::vector<std::uint64_t>{0, 2, 5, 7}));
  EXPECT_TRUE(btm::spaced_blocks(0, 3).empty());
  auto big = btm::spaced_blocks(1ull << 62, 1000);
  ASSERT_EQ(big.size(), 1000u);
  for (std::size_t i = 1; i < big.size(); ++i) EXPECT_GT(big[i], big[i - 1]);
  EXPECT_LT(big.back(), 1ull << 62);
}

TEST(Dataset, ReadsBlocksAsInt32WithBoundsChecks) {
  Dataset data(synthetic("dataset_blocks"));
  EXPECT_EQ(data.vocab_size(), 65536);
  EXPECT_EQ(data.eos_id(), 2);
  EXPECT_EQ(data.domains(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(data.has("a", "valid"));
  EXPECT_FALSE(data.has("b", "valid"));
  EXPECT_EQ(data.num_tokens("b", "train"), 161u);
  EXPECT_EQ(data.num_docs("b", "train"), 1u);
  EXPECT_EQ(data.num_blocks("b", "train", kContext), 20u);
  EXPECT_EQ(data.num_blocks("b", "train", 7), 160u / 7);
  std::vector<std::int32_t> row(kContext + 1);
  data.read_block("b", "train", 19, kContext, row.data());
  EXPECT_EQ(row.front(), 10000 + 19 * kContext);
  EXPECT_EQ(row.back(), 10000 + 20 * kContext);  // the target of the last input: context + 1 tokens
  EXPECT_THROW(data.read_block("b", "train", 20, kContext, row.data()), btm::Error);
  EXPECT_THROW(data.read_block("b", "valid", 0, kContext, row.data()), btm::Error);
  EXPECT_EQ(data.tokenizer_model(), std::string("\x01\x02\x03"));
}

TEST(Dataset, ReadsWideTokensOfLargeVocabularies) {
  auto path = btm::test::fresh_dir("dataset_wide") / "data.h5";
  if (btm::Comm::world().is_root()) {
    btm::h5::File f(path, btm::h5::File::Mode::create);
    f.write<std::uint8_t>("/tokenizer/model", std::vector<std::uint8_t>{1});
    f.set_attr<std::int64_t>("/tokenizer/model", "vocab_size", 100000);
    f.set_attr<std::int64_t>("/tokenizer/model", "bos_id", 1);
    f.set_attr<std::int64_t>("/tokenizer/model", "eos_id", 2);
    std::vector<std::uint32_t> tokens(33);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = 70000 + static_cast<std::uint32_t>(i);
    f.write<std::uint32_t>("/domains/w/train/tokens", tokens);
    f.write<std::uint64_t>("/domains/w/train/doc_offsets", std::vector<std::uint64_t>{0, 33});
  }
  btm::Comm::world().barrier();
  Dataset data(path);
  std::vector<std::int32_t> row(kContext + 1);
  data.read_block("w", "train", 3, kContext, row.data());
  EXPECT_EQ(row.front(), 70000 + 3 * kContext);
  EXPECT_EQ(row.back(), 70000 + 4 * kContext);
  data.read_block("w", "train", 0, 4, row.data());  // another context on the same split
  EXPECT_EQ(row[4], 70004);
}

TEST(Dataset, RequireNamesTheMissingDomainsAndTheFile) {
  auto path = synthetic("dataset_require");
  Dataset data(path);
  EXPECT_NO_THROW(data.require({"a", "b"}, "train"));
  try {
    data.require({"a", "b", "zz"}, "valid");
    FAIL();
  } catch (const btm::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(path.string()), std::string::npos) << m;
    EXPECT_NE(m.find("b, zz"), std::string::npos) << m;
    EXPECT_NE(m.find("domains in the file: a, b, c"), std::string::npos) << m;
  }
}

TEST(Dataset, RejectsMissingAndForeignFiles) {
  auto dir = btm::test::fresh_dir("dataset_foreign");
  EXPECT_THROW(Dataset(dir / "missing.h5"), btm::Error);
  auto other = dir / ("other" + std::to_string(btm::Comm::world().rank()) + ".h5");
  {
    btm::h5::File f(other, btm::h5::File::Mode::create);
    f.write<float>("/params/x", std::vector<float>{1});
  }
  try {
    Dataset d(other);
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a btm data file"), std::string::npos) << e.what();
  }
}

TEST(Loader, SameSeedGivesTheSameStreamAndAnotherSeedAnother) {
  btm::Comm world = btm::Comm::world();
  Dataset data(synthetic("loader_determinism"));
  BatchLoader a(data, {"a", "b", "c"}, "train", kContext, "balanced", 42, world.rank(), world.size());
  BatchLoader b(data, {"a", "b", "c"}, "train", kContext, "balanced", 42, world.rank(), world.size());
  BatchLoader c(data, {"a", "b", "c"}, "train", kContext, "balanced", 43, world.rank(), world.size());
  auto ra = all_rows(a, 10, 12, world), rb = all_rows(b, 10, 12, world), rc = all_rows(c, 10, 12, world);
  EXPECT_EQ(ra, rb);
  EXPECT_NE(ra, rc);
  EXPECT_EQ(a.cursor().sample, 120u);
  EXPECT_EQ(a.cursor().consumed, b.cursor().consumed);
}

TEST(Loader, StreamDoesNotDependOnTheRankCount) {
  btm::Comm world = btm::Comm::world();
  Dataset data(synthetic("loader_rankfree"));
  BatchLoader sharded(data, {"a", "b", "c"}, "train", kContext, "proportional", 5, world.rank(), world.size());
  auto rows = all_rows(sharded, 7, 10, world);
  // The same stream read by one rank alone.
  BatchLoader alone(data, {"a", "b", "c"}, "train", kContext, "proportional", 5, 0, 1);
  std::vector<std::int32_t> tokens;
  std::vector<std::pair<std::string, std::uint64_t>> expect;
  for (int b = 0; b < 7; ++b) {
    int n = alone.next(10, tokens);
    for (int i = 0; i < n; ++i) expect.push_back(block_of(tokens.data() + i * (kContext + 1)));
  }
  EXPECT_EQ(rows, expect);
}

TEST(Loader, EveryBlockIsReadOnceAcrossRanksPerEpoch) {
  btm::Comm world = btm::Comm::world();
  Dataset data(synthetic("loader_epoch"));
  // One domain of 60 blocks: 5 batches of 12 are exactly one epoch, then a second epoch.
  BatchLoader loader(data, {"a"}, "train", kContext, "balanced", 9, world.rank(), world.size());
  auto epoch1 = all_rows(loader, 5, 12, world);
  auto epoch2 = all_rows(loader, 5, 12, world);
  std::set<std::uint64_t> seen1, seen2;
  for (auto& [d, b] : epoch1) seen1.insert(b);
  for (auto& [d, b] : epoch2) seen2.insert(b);
  EXPECT_EQ(seen1.size(), 60u);
  EXPECT_EQ(seen2.size(), 60u);
  EXPECT_EQ(*seen1.rbegin(), 59u);
  EXPECT_NE(epoch1, epoch2);  // a new permutation each epoch

  // Several domains: within each domain's first epoch no block repeats.
  BatchLoader mixed(data, {"a", "b", "c"}, "train", kContext, "balanced", 3, world.rank(), world.size());
  auto rows = all_rows(mixed, 6, 10, world);
  std::map<std::string, std::vector<std::uint64_t>> per_domain;
  for (auto& [d, b] : rows) per_domain[d].push_back(b);
  const std::map<std::string, std::size_t> blocks = {{"a", 60}, {"b", 20}, {"c", 180}};
  for (auto& [d, list] : per_domain) {
    std::size_t first_epoch = std::min(list.size(), blocks.at(d));
    std::set<std::uint64_t> distinct(list.begin(), list.begin() + first_epoch);
    EXPECT_EQ(distinct.size(), first_epoch) << d;
    EXPECT_EQ(mixed.cursor().consumed[d == "a" ? 0 : d == "b" ? 1 : 2], list.size());
  }
}

TEST(Loader, ResumeFromACursorGivesTheIdenticalContinuation) {
  btm::Comm world = btm::Comm::world();
  Dataset data(synthetic("loader_resume"));
  BatchLoader run(data, {"a", "b", "c"}, "train", kContext, "balanced", 11, world.rank(), world.size());
  all_rows(run, 9, 8, world);  // past the epoch of "b" (20 blocks)
  btm::LoaderCursor saved = run.cursor();
  auto expected = all_rows(run, 12, 8, world);

  BatchLoader resumed(data, {"a", "b", "c"}, "train", kContext, "balanced", 11, world.rank(), world.size());
  resumed.restore(saved);
  EXPECT_EQ(all_rows(resumed, 12, 8, world), expected);

  btm::LoaderCursor wrong;
  wrong.consumed = {1, 2};
  EXPECT_THROW(resumed.restore(wrong), btm::Error);
}

TEST(Loader, BalancedMixingIsUniformAndProportionalFollowsBlockCounts) {
  btm::Comm world = btm::Comm::world();
  Dataset data(synthetic("loader_mixing"));
  const int batches = 100, g = 40;
  std::vector<std::int32_t> tokens;
  BatchLoader balanced(data, {"b", "c"}, "train", kContext, "balanced", 1, world.rank(), world.size());
  BatchLoader proportional(data, {"b", "c"}, "train", kContext, "proportional", 1, world.rank(), world.size());
  for (int i = 0; i < batches; ++i) {
    balanced.next(g, tokens);
    proportional.next(g, tokens);
  }
  const double n = batches * g;
  EXPECT_NEAR(balanced.cursor().consumed[0] / n, 0.5, 0.03);
  EXPECT_NEAR(proportional.cursor().consumed[0] / n, 20.0 / 200.0, 0.02);  // b: 20 of 200 blocks
  EXPECT_EQ(balanced.cursor().consumed[0] + balanced.cursor().consumed[1], n);
}

TEST(Loader, ShareOfEachGlobalBatchFollowsTheRankRange) {
  btm::Comm world = btm::Comm::world();
  Dataset data(synthetic("loader_share"));
  BatchLoader loader(data, {"a"}, "train", kContext, "balanced", 2, world.rank(), world.size());
  std::vector<std::int32_t> tokens;
  const int g = 7;  // not divisible by 2 or 4
  int n = loader.next(g, tokens);
  int expected = (world.rank() + 1) * g / world.size() - world.rank() * g / world.size();
  EXPECT_EQ(n, expected);
  EXPECT_EQ(static_cast<int>(world.allreduce_sum(static_cast<std::uint64_t>(n))), g);
}

TEST(Loader, BadArgumentsAreClearErrors) {
  btm::Comm world = btm::Comm::world();
  Dataset data(synthetic("loader_bad"));
  EXPECT_THROW(BatchLoader(data, {"a"}, "train", kContext, "uniform", 1, 0, 1), btm::Error);
  EXPECT_THROW(BatchLoader(data, {"a", "zz"}, "train", kContext, "balanced", 1, 0, 1), btm::Error);
  EXPECT_THROW(BatchLoader(data, {}, "train", kContext, "balanced", 1, 0, 1), btm::Error);
  try {
    BatchLoader(data, {"a"}, "valid", 100, "balanced", 1, 0, 1);  // 41 tokens < 101
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than one block"), std::string::npos) << e.what();
  }
}
