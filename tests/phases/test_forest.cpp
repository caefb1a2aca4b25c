#include <gtest/gtest.h>

#include <filesystem>

#include "btm/comm.hpp"
#include "btm/error.hpp"
#include "btm/forest.hpp"
#include "support/test_paths.hpp"

namespace {
btm::ForestEntry entry(const std::string& name, const std::string& arch = "aaaa") {
  return {name, name, "seed", "experts/" + name + ".h5", arch, 1000};
}
}  // namespace

TEST(Forest, RoundTripsAddsReplacesAndRemoves) {
  const auto dir = btm::test::fresh_dir("forest") / std::to_string(btm::Comm::world().rank());
  const auto path = dir / "forest.h5";
  EXPECT_TRUE(btm::Forest::load(path).experts().empty());  // no file yet: empty forest
  btm::Forest::update(path, [](btm::Forest& f) {
    f.add(entry("legal"));
    f.add(entry("medical"));
  });
  btm::Forest::update(path, [](btm::Forest& f) {
    auto e = entry("legal");
    e.tokens = 5;
    f.add(e);  // same name: replaced, not duplicated
  });
  auto f = btm::Forest::load(path);
  ASSERT_EQ(f.experts().size(), 2u);
  EXPECT_EQ(f.find("legal")->tokens, 5u);
  EXPECT_EQ(f.resolve(*f.find("medical")), dir / "experts/medical.h5");
  btm::Forest::update(path, [](btm::Forest& f) { f.remove("legal"); });
  EXPECT_EQ(btm::Forest::load(path).experts().size(), 1u);
}

TEST(Forest, RefusesAnExpertOfAnotherArchitecture) {
  btm::Forest f;
  f.add(entry("legal", "aaaa"));
  try {
    f.add(entry("medical", "bbbb"));
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("architecture"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("legal"), std::string::npos) << e.what();
  }
}

TEST(Forest, RemovingAnUnknownExpertNamesTheKnownOnes) {
  btm::Forest f;
  f.add(entry("legal"));
  try {
    f.remove("legl");
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("legal"), std::string::npos) << e.what();
  }
}

TEST(Forest, OrderAsPutsTheNamedExpertsLastInThatOrder) {
  btm::Forest f;
  for (const char* n : {"c", "old", "a", "b"}) f.add(entry(n));
  f.order_as({"a", "b", "c", "missing"});
  std::vector<std::string> names;
  for (const auto& e : f.experts()) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"old", "a", "b", "c"}));
}

TEST(Forest, RegisteredExpertsNeedNoLockAndLoadWithTheManifest) {
  const auto dir = btm::test::fresh_dir("forest_records") / std::to_string(btm::Comm::world().rank());
  const auto path = dir / "forest.h5";
  EXPECT_FALSE(btm::Forest::exists(path));
  // Finish order: dictionary, then scripture (separate jobs, each writing its own record).
  btm::Forest::register_entry(path, entry("dictionary"));
  EXPECT_TRUE(btm::Forest::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".lock"));
  btm::Forest::register_entry(path, entry("scripture"));
  auto f = btm::Forest::load(path);
  ASSERT_EQ(f.experts().size(), 2u);
  f.order_as({"scripture", "code-go", "dictionary"});
  f.save(path);
  // The records stay (a concurrent writer may not have seen them); loading merges them once.
  auto again = btm::Forest::load(path);
  ASSERT_EQ(again.experts().size(), 2u);
  EXPECT_EQ(again.experts()[0].name, "scripture");
  EXPECT_EQ(again.experts()[1].name, "dictionary");
  // A removal by hand also drops the record, which would otherwise bring the expert back.
  btm::Forest::update(path, [](btm::Forest& forest) { forest.remove("dictionary"); });
  const auto left = btm::Forest::load(path);
  ASSERT_EQ(left.experts().size(), 1u);
  EXPECT_EQ(left.experts()[0].name, "scripture");
}

TEST(Forest, ARegistrationReplacesTheManifestRowOfItsName) {
  const auto dir = btm::test::fresh_dir("forest_reregister") / std::to_string(btm::Comm::world().rank());
  const auto path = dir / "forest.h5";
  btm::Forest::update(path, [](btm::Forest& f) { f.add(entry("legal")); });
  auto retrained = entry("legal");
  retrained.tokens = 7;
  btm::Forest::register_entry(path, retrained);
  const auto f = btm::Forest::load(path);
  ASSERT_EQ(f.experts().size(), 1u);
  EXPECT_EQ(f.find("legal")->tokens, 7u);
}
