#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "btm/comm.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "support/test_paths.hpp"

using btm::h5::File;
namespace fs = std::filesystem;

TEST(H5, RoundTripsDatasetsStringsAndAttributes) {
  auto dir = btm::test::fresh_dir("h5");
  auto path = dir / ("f" + std::to_string(btm::Comm::world().rank()) + ".h5");
  {
    File f(path, File::Mode::create);
    f.write<float>("/a/b/x", std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
    f.write<std::uint16_t>("/tokens", std::vector<std::uint16_t>{7, 8, 9});
    f.write_strings("/ids", {"doc/1", "", "ünïcode"});
    f.set_attr<std::int64_t>("/a", "count", 42);
    f.set_attr("/meta", "phase", std::string("seed"));
  }
  File f(path, File::Mode::read);
  EXPECT_EQ(f.shape("/a/b/x"), (std::vector<hsize_t>{2, 3}));
  EXPECT_EQ(f.read<float>("/a/b/x")[5], 6.0f);
  std::uint16_t slab[2];
  f.read_slab<std::uint16_t>("/tokens", 1, 2, slab);
  EXPECT_EQ(slab[0], 8);
  EXPECT_EQ(slab[1], 9);
  EXPECT_THROW(f.read_slab<std::uint16_t>("/tokens", 2, 2, slab), btm::Error);
  EXPECT_EQ(f.read_strings("/ids"), (std::vector<std::string>{"doc/1", "", "ünïcode"}));
  EXPECT_EQ(f.attr<std::int64_t>("/a", "count"), 42);
  EXPECT_EQ(f.string_attr("/meta", "phase"), "seed");
  EXPECT_EQ(f.list("/"), (std::vector<std::string>{"a", "ids", "meta", "tokens"}));
  EXPECT_FALSE(f.exists("/a/missing"));
}

TEST(H5, MissingFileErrorNamesThePath) {
  try {
    btm::h5::open_for_read("/nonexistent/model.h5", "a model file");
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.h5"), std::string::npos);
  }
}

TEST(H5, AtomicWriteLeavesTheOldFileUntilCommit) {
  auto dir = btm::test::fresh_dir("atomic") / std::to_string(btm::Comm::world().rank());
  auto path = dir / "m.h5";
  {
    btm::h5::AtomicWrite w(path);
    w.file().write<float>("/v", std::vector<float>{1});
    w.commit();
  }
  {
    btm::h5::AtomicWrite w(path);
    w.file().write<float>("/v", std::vector<float>{2});
    // destroyed without commit: a crash in the middle of a checkpoint
  }
  File f(path, File::Mode::read);
  EXPECT_EQ(f.read<float>("/v")[0], 1.0f);
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  }
}

TEST(H5, AtomicWriteRemovesTemporariesOfDeadWritersOnThisHost) {
  auto dir = btm::test::fresh_dir("atomic_stale") / std::to_string(btm::Comm::world().rank());
  fs::create_directories(dir);
  auto path = dir / "m.h5";
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  // A process id no process has now: the writer that left it was killed.
  pid_t dead = 4194303;
  while (::kill(dead, 0) == 0 || errno != ESRCH) --dead;
  const std::string tmp = "m.h5.tmp." + std::string(host) + ".";
  const fs::path of_dead = dir / (tmp + std::to_string(dead));
  const fs::path of_live = dir / (tmp + std::to_string(::getppid()));  // still writing
  const fs::path of_other_host = dir / ("m.h5.tmp.another-node." + std::to_string(dead));
  const fs::path of_other_file = dir / ("n.h5.tmp." + std::string(host) + "." + std::to_string(dead));
  for (const auto& p : {of_dead, of_live, of_other_host, of_other_file}) std::ofstream(p) << "partial";
  {
    btm::h5::AtomicWrite w(path);
    w.file().write<float>("/v", std::vector<float>{1});
    w.commit();
  }
  EXPECT_FALSE(fs::exists(of_dead));
  EXPECT_TRUE(fs::exists(of_live));
  EXPECT_TRUE(fs::exists(of_other_host));
  EXPECT_TRUE(fs::exists(of_other_file));
  EXPECT_EQ(File(path, File::Mode::read).read<float>("/v")[0], 1.0f);
}
