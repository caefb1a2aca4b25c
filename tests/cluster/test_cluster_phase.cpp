// The cluster phase end to end on the tiny deck's corpus, at 1, 2 and 4 ranks: clusters.h5
// and clustered.h5 are identical to the ones rank 0 makes alone, every document's cluster
// is the nearest centroid of its from-scratch embedding, re-runs are skipped, changed
// settings and impossible sizes are clear errors, and the pipeline trains one expert per
// cluster.
#include <gtest/gtest.h>

#include <filesystem>

#include "btm/cluster/balanced_assignment.hpp"
#include "btm/cluster/clustering.hpp"
#include "btm/cluster/piece_decoder.hpp"
#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/forest.hpp"
#include "btm/h5.hpp"
#include "btm/model/model_file.hpp"
#include "btm/phases.hpp"
#include "btm/train/checkpoint.hpp"
#include "phases/tiny_deck.hpp"
#include "support/error_of.hpp"

namespace fs = std::filesystem;
using btm::h5::File;
using btm::test::error_of;

namespace {

const std::vector<std::string> kClusterKeys = {"cluster.k=3", "cluster.svd_dims=8"};

btm::Deck cluster_deck(const fs::path& dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> keys = kClusterKeys;
  keys.insert(keys.end(), extra.begin(), extra.end());
  return btm::test::tiny_deck(dir, keys);
}

template <class T>
void expect_same(const File& a, const File& b, const std::string& path) {
  EXPECT_EQ(a.read<T>(path), b.read<T>(path)) << path;
}

// Every dataset the two phases write, compared exactly.
void expect_same_files(const btm::Deck& a, const btm::Deck& b) {
  File ca(a.clusters_file(), File::Mode::read), cb(b.clusters_file(), File::Mode::read);
  EXPECT_EQ(ca.read_strings("/vectorizer/vocabulary"), cb.read_strings("/vectorizer/vocabulary"));
  for (const char* p : {"/vectorizer/idf", "/svd/components", "/svd/singular_values", "/centroids"}) {
    expect_same<double>(ca, cb, p);
  }
  expect_same<std::uint64_t>(ca, cb, "/sizes");
  expect_same<std::uint64_t>(ca, cb, "/fit/sizes");
  for (const auto& domain : ca.list("/assignments")) {
    for (const auto& split : ca.list("/assignments/" + domain)) {
      expect_same<std::int32_t>(ca, cb, "/assignments/" + domain + "/" + split);
    }
  }
  EXPECT_EQ(ca.attr<double>("/", "inertia"), cb.attr<double>("/", "inertia"));
  File da(a.clustered_file(), File::Mode::read), db(b.clustered_file(), File::Mode::read);
  ASSERT_EQ(da.list("/domains"), db.list("/domains"));
  for (const auto& domain : da.list("/domains")) {
    for (const auto& split : da.list("/domains/" + domain)) {
      const std::string g = "/domains/" + domain + "/" + split;
      expect_same<std::uint32_t>(da, db, g + "/tokens");
      expect_same<std::uint64_t>(da, db, g + "/doc_offsets");
      EXPECT_EQ(da.read_strings(g + "/doc_ids"), db.read_strings(g + "/doc_ids"));
    }
  }
}

}  // namespace

TEST(ClusterPhase, FilesAreIdenticalAtAnyRankCountAndAssignmentsFollowTheEmbedding) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("cluster_phase");
  const btm::Deck deck = cluster_deck(dir / "all", {"cluster.sample_docs=30"});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "cluster"}, world));

  // Rank 0 alone, from the same data.h5.
  const btm::Deck alone = cluster_deck(dir / "alone", {"cluster.sample_docs=30"});
  if (world.is_root()) {
    fs::create_directories(alone.run.out_dir);
    fs::copy_file(deck.data_file(), alone.data_file());
    btm::run_cluster(alone, btm::Comm(MPI_COMM_SELF));
    expect_same_files(deck, alone);
  }
  world.barrier();

  // Layout and sizes: the 36 training documents in 3 clusters; held-out domain kept.
  const btm::Dataset clustered(deck.clustered_file());
  EXPECT_EQ(clustered.domains(), (std::vector<std::string>{"cluster-0", "cluster-1", "cluster-2", "tech-lexicon"}));
  const btm::Dataset data(deck.data_file());
  for (const char* split : {"train", "valid", "test"}) {
    std::uint64_t docs = 0, tokens = 0, want_docs = 0, want_tokens = 0;
    for (int c = 0; c < 3; ++c) {
      docs += clustered.num_docs(btm::cluster::cluster_domain(c), split);
      tokens += clustered.num_tokens(btm::cluster::cluster_domain(c), split);
    }
    for (const char* d : {"scripture", "code-go", "dictionary"}) {
      want_docs += data.num_docs(d, split);
      want_tokens += data.num_tokens(d, split);
    }
    EXPECT_EQ(docs, want_docs) << split;
    EXPECT_EQ(tokens, want_tokens) << split;
  }
  EXPECT_EQ(clustered.num_tokens("tech-lexicon", "test"), data.num_tokens("tech-lexicon", "test"));
  File cf(deck.clusters_file(), File::Mode::read);
  const auto sizes = cf.read<std::uint64_t>("/sizes");
  EXPECT_EQ(sizes[0] + sizes[1] + sizes[2], 36u);
  EXPECT_EQ(cf.read<std::uint64_t>("/fit/sizes"), btm::cluster::balanced_capacities(30, 3));
  EXPECT_GT(cf.attr<double>("/", "purity"), 0.6);
  EXPECT_EQ(cf.string_attr("/", "method"), "balanced");

  // The from-scratch embedding of each decoded document picks the cluster it was given.
  const auto c = btm::cluster::Clustering::load(deck.clusters_file());
  EXPECT_EQ(c.k, 3);
  EXPECT_EQ(c.dims, 8);
  EXPECT_DOUBLE_EQ(c.temperature, 0.1);
  const btm::Tokenizer tok(data.tokenizer_model());
  const btm::cluster::PieceDecoder decoder(tok);
  File df(deck.data_file(), File::Mode::read);
  for (const char* domain : {"scripture", "code-go", "tech-lexicon"}) {
    for (const char* split : {"train", "test"}) {
      const std::string g = std::string("/domains/") + domain + "/" + split;
      if (!df.exists(g)) continue;
      const auto tokens = df.read<std::int32_t>(g + "/tokens");
      const auto offsets = df.read<std::uint64_t>(g + "/doc_offsets");
      const auto labels = cf.read<std::int32_t>(std::string("/assignments/") + domain + "/" + split);
      ASSERT_EQ(labels.size() + 1, offsets.size());
      for (std::size_t i = 0; i < labels.size(); ++i) {
        const std::vector<std::int32_t> ids(tokens.begin() + offsets[i], tokens.begin() + offsets[i + 1] - 1);
        // The phase's table decoder gives SentencePiece's text.
        EXPECT_EQ(decoder.decode(std::vector<std::uint32_t>(ids.begin(), ids.end())), tok.decode(ids)) << g << " " << i;
        const auto e = c.embed(tok.decode(ids));
        double norm = 0;
        for (double v : e) norm += v * v;
        EXPECT_NEAR(norm, 1.0, 1e-12);
        EXPECT_EQ(c.nearest(e), labels[i]) << g << " document " << i;
      }
    }
  }
}

TEST(ClusterPhase, ReRunIsSkippedChangedSettingsAreRefusedTemperatureIsUpdated) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("cluster_rerun");
  const btm::Deck deck = cluster_deck(dir);
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "cluster"}, world));
  world.barrier();
  const auto stamp = fs::last_write_time(deck.clusters_file());
  world.barrier();
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "cluster"}, world));
  EXPECT_EQ(fs::last_write_time(deck.clusters_file()), stamp);
  world.barrier();  // every rank has looked before rank 0 changes the file below

  const auto msg = error_of([&] { btm::run_cluster(cluster_deck(dir, {"cluster.k=2"}), world); });
  EXPECT_NE(msg.find("was made with different cluster settings"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cluster.k: the file has 3, the deck has 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("delete " + deck.clusters_file().string()), std::string::npos) << msg;

  btm::run_cluster(cluster_deck(dir, {"cluster.temperature=0.25"}), world);
  world.barrier();
  EXPECT_DOUBLE_EQ(btm::cluster::Clustering::load(deck.clusters_file()).temperature, 0.25);
}

TEST(ClusterPhase, MoreClustersThanDocumentsOrDimensionsThanTermsAreClearErrors) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("cluster_errors");
  ASSERT_TRUE(btm::run_phases(cluster_deck(dir), {"prepare"}, world));
  auto msg = error_of([&] { btm::run_cluster(cluster_deck(dir, {"cluster.k=100"}), world); });
  EXPECT_NE(msg.find("cluster.k: found 100 but the training domains' train splits have only 36 documents"),
            std::string::npos) << msg;
  msg = error_of([&] { btm::run_cluster(cluster_deck(dir, {"cluster.svd_dims=50000"}), world); });
  EXPECT_NE(msg.find("cluster.svd_dims: found 50000 but the vocabulary"), std::string::npos) << msg;
  msg = error_of([&] { btm::run_cluster(cluster_deck(dir, {"cluster.sample_docs=2"}), world); });
  EXPECT_NE(msg.find("cluster.sample_docs: found 2 but cluster.k = 3"), std::string::npos) << msg;
  const btm::Deck deck = cluster_deck(dir);
  EXPECT_FALSE(fs::exists(deck.clusters_file()));
  // Without data.h5 the phase says what to run first.
  msg = error_of([&] { btm::run_cluster(cluster_deck(dir / "empty"), world); });
  EXPECT_NE(msg.find("run prepare before cluster"), std::string::npos) << msg;
}

TEST(ClusterPhase, RandomSplitsEverySplitEvenly) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("cluster_random");
  const btm::Deck deck = cluster_deck(dir, {"cluster.method=\"random\""});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "cluster"}, world));
  const btm::Dataset clustered(deck.clustered_file());
  for (const char* split : {"train", "valid", "test"}) {
    std::vector<std::uint64_t> n;
    for (int c = 0; c < 3; ++c) n.push_back(clustered.num_docs(btm::cluster::cluster_domain(c), split));
    EXPECT_LE(*std::max_element(n.begin(), n.end()) - *std::min_element(n.begin(), n.end()), 1u) << split;
  }
}

TEST(ClusterPipeline, PrepareClusterSeedExpertsTrainsOneExpertPerCluster) {
  const btm::Comm world = btm::Comm::world();
  const auto dir = btm::test::fresh_dir("cluster_pipeline");
  const btm::Deck deck = btm::test::tiny_deck(dir, {"cluster.k=2", "cluster.svd_dims=8", "seed.tokens=1024",
                                                    "experts.tokens=512"});
  ASSERT_TRUE(btm::run_phases(deck, {"prepare", "cluster", "seed", "experts"}, world));
  const btm::Forest forest = btm::Forest::load(deck.forest_file());
  ASSERT_EQ(forest.experts().size(), 2u);
  for (const auto& e : forest.experts()) {
    EXPECT_EQ(e.name, e.domain);
    EXPECT_EQ(e.name.rfind("cluster-", 0), 0u) << e.name;
    EXPECT_TRUE(btm::model_is_complete(forest.resolve(e))) << e.name;
  }
}
