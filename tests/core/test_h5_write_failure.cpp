// A write that fails under the file (a full disk, a file-size limit) is an error that names
// the file and the system's reason, and leaves HDF5 able to close the file and go on: the
// experts phase survives a full disk in one expert's checkpoint this way.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "support/test_paths.hpp"

namespace fs = std::filesystem;

namespace {

// Lowers the file-size limit (ulimit -f) for its lifetime; writes past it fail with EFBIG.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lowered);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = SIG_DFL;
};

std::vector<float> megabyte() { return std::vector<float>(1 << 18, 0.5f); }

}  // namespace

TEST(H5WriteFailure, AFailedCheckpointWriteNamesTheFileAndKeepsTheOldOne) {
  const fs::path dir = btm::test::fresh_dir("h5_write_failure");
  const fs::path path = dir / "expert.h5";
  {
    btm::h5::AtomicWrite w(path);
    w.file().write<float>("/v", std::vector<float>{1});
    w.commit();
  }
  std::string message;
  {
    FileSizeLimit limit(64 * 1024);
    try {
      btm::h5::AtomicWrite w(path);
      w.file().write<float>("/params/big", megabyte());
      w.commit();
    } catch (const btm::Error& e) {
      message = e.what();
    }
  }
  EXPECT_NE(message.find("cannot write " + path.string() + ".tmp."), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  btm::h5::File old(path, btm::h5::File::Mode::read);
  EXPECT_EQ(old.read<float>("/v"), std::vector<float>{1});
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename(), "expert.h5") << "left behind: " << e.path();
  }
}

TEST(H5WriteFailure, TheSameFileIsWrittenAgainOnceThereIsRoom) {
  const fs::path path = btm::test::fresh_dir("h5_write_again") / "expert.h5";
  for (int attempt = 0; attempt < 2; ++attempt) {
    FileSizeLimit limit(64 * 1024);
    btm::h5::AtomicWrite w(path);
    w.file().write<float>("/small", std::vector<float>{2});
    EXPECT_THROW(w.file().write<float>("/params/big", megabyte()), btm::Error);
  }
  {
    btm::h5::AtomicWrite w(path);
    w.file().write<float>("/params/big", megabyte());
    w.commit();
  }
  btm::h5::File f(path, btm::h5::File::Mode::read);
  EXPECT_EQ(f.read<float>("/params/big"), megabyte());
}
