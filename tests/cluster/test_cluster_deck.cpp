// The [cluster] deck section: off without it (the resolved deck has no [cluster] then),
// clusters as the experts' domains with it, and bad values named with their place.
#include <gtest/gtest.h>

#include "btm/config.hpp"
#include "config/deck_test_util.hpp"

using btm::test::contains;
using btm::test::deck_error;
using btm::test::kGoodDeck;

TEST(ClusterDeck, WithoutTheSectionNothingIsClusteredAndTheResolvedDeckHasNoClusterTable) {
  const btm::Deck d = btm::parse_deck(kGoodDeck, "good.toml");
  EXPECT_FALSE(d.clustering());
  EXPECT_EQ(d.train_data_file(), d.data_file());
  EXPECT_TRUE(d.cluster_domains().empty());
  EXPECT_EQ(d.expert_domains(), d.data.train_domains);
  EXPECT_EQ(btm::to_toml(d).find("[cluster]"), std::string::npos);
}

TEST(ClusterDeck, WithTheSectionTheClustersAreTheTrainingDomains) {
  const btm::Deck d = btm::parse_deck(kGoodDeck + "[cluster]\nk = 3\nmethod = \"unbalanced\"\ntemperature = 0.5\n", "good.toml");
  EXPECT_TRUE(d.clustering());
  EXPECT_EQ(d.cluster.k, 3);
  EXPECT_EQ(d.cluster.svd_dims, 100);
  EXPECT_EQ(d.train_data_file(), d.clustered_file());
  EXPECT_EQ(d.expert_domains(), (std::vector<std::string>{"cluster-0", "cluster-1", "cluster-2"}));
  // The resolved deck reads back as the same deck.
  EXPECT_EQ(btm::parse_deck(btm::to_toml(d), "resolved.toml").cluster, d.cluster);
  // enabled = false keeps the section but trains on the corpus domains.
  const btm::Deck off = btm::parse_deck(kGoodDeck + "[cluster]\nenabled = false\n", "good.toml");
  EXPECT_FALSE(off.clustering());
  EXPECT_EQ(off.train_data_file(), off.data_file());
  // --set turns it on too.
  EXPECT_TRUE(btm::parse_deck(kGoodDeck, "good.toml", {"cluster.k=4"}).clustering());
}

TEST(ClusterDeck, BadValuesNameTheKeyTheirPlaceAndWhatIsAllowed) {
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[cluster]\nk = 0\n"), "bad.toml:16:5: cluster.k: found 0; expected an integer in 1..65536"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[cluster]\ntemperature = 0\n"), "bad.toml:16:15: cluster.temperature: found 0; expected a number > 0"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[cluster]\ntemperature = -1.5\n"), "cluster.temperature: found -1.5"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[cluster]\nsvd_dims = 0\n"), "cluster.svd_dims: found 0; expected an integer in 1..100000"));
  auto msg = deck_error(kGoodDeck + "[cluster]\nmethod = \"balance\"\n");
  EXPECT_TRUE(contains(msg, "cluster.method: found \"balance\" (did you mean 'balanced'?)"));
  EXPECT_TRUE(contains(msg, "one of: balanced, unbalanced, random"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[cluster]\nkk = 3\n"), "cluster.kk: unknown key; did you mean 'k'?"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[cluster]\nk = 2.5\n"), "cluster.k: found a float (2.5)"));
  EXPECT_TRUE(contains(deck_error(kGoodDeck + "[clusters]\nk = 2\n"), "did you mean 'cluster'?"));
}

TEST(ClusterDeck, ExpertsOfAClusteredRunAreClusters) {
  auto msg = deck_error(kGoodDeck + "[cluster]\nk = 2\n[experts]\ndomains = [\"alpha\"]\n");
  EXPECT_TRUE(contains(msg, "experts.domains[0]: \"alpha\" is not a cluster"));
  EXPECT_TRUE(contains(msg, "cluster-0 ... cluster-1 (cluster.k = 2)"));
  msg = deck_error(kGoodDeck + "[cluster]\nk = 2\n[experts]\ndomains = [\"cluster-2\"]\n");
  EXPECT_TRUE(contains(msg, "\"cluster-2\" is not a cluster"));
  const auto d = btm::parse_deck(kGoodDeck + "[cluster]\nk = 2\n[experts]\ndomains = [\"cluster-1\"]\n", "good.toml");
  EXPECT_EQ(d.expert_domains(), std::vector<std::string>{"cluster-1"});
}
