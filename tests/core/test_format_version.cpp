// Every file btm writes carries the root attribute format_version; files from before it
// existed (none) read as version 1; a newer version is refused with the file and both
// versions named.
#include <gtest/gtest.h>

#include <hdf5.h>

#include <filesystem>

#include "btm/comm.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "support/error_of.hpp"
#include "support/test_paths.hpp"

using btm::h5::File;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  return btm::test::fresh_dir("format_version") / (name + std::to_string(btm::Comm::world().rank()) + ".h5");
}

// A file written by plain HDF5 calls, as an older btm (or another tool) would leave it.
void write_without_version(const fs::path& path) {
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hsize_t n = 2;
  const hid_t space = H5Screate_simple(1, &n, nullptr);
  const hid_t d = H5Dcreate2(f, "/x", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const float x[2] = {1, 2};
  ASSERT_GE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
  H5Dclose(d);
  H5Sclose(space);
  H5Fclose(f);
}

void set_version(const fs::path& path, std::int64_t version) {
  File(path, File::Mode::read_write).set_attr<std::int64_t>("/", "format_version", version);
}

}  // namespace

TEST(FormatVersion, EveryCreatedFileCarriesTheCurrentVersion) {
  const auto path = scratch("new");
  { File f(path, File::Mode::create); }
  const File f(path, File::Mode::read);
  EXPECT_EQ(f.attr<std::int64_t>("/", "format_version"), btm::h5::kFormatVersion);
  EXPECT_EQ(f.format_version(), 2);
}

TEST(FormatVersion, AnAtomicWriteCarriesItToo) {
  const auto path = scratch("atomic");
  {
    btm::h5::AtomicWrite w(path);
    w.file().write<float>("/x", std::vector<float>{1});
    w.commit();
  }
  EXPECT_EQ(File(path, File::Mode::read).format_version(), btm::h5::kFormatVersion);
}

TEST(FormatVersion, AFileWithoutTheAttributeReadsAsVersionOne) {
  const auto path = scratch("old");
  write_without_version(path);
  const File f(path, File::Mode::read);
  EXPECT_EQ(f.format_version(), 1);
  EXPECT_EQ(f.read<float>("/x"), (std::vector<float>{1, 2}));
}

TEST(FormatVersion, AnOlderVersionIsReadAsBefore) {
  const auto path = scratch("v1");
  write_without_version(path);
  set_version(path, 1);
  EXPECT_EQ(File(path, File::Mode::read).read<float>("/x"), (std::vector<float>{1, 2}));
}

TEST(FormatVersion, ANewerVersionIsRefusedNamingTheFileAndBothVersions) {
  const auto path = scratch("v99");
  write_without_version(path);
  set_version(path, 99);
  for (auto mode : {File::Mode::read, File::Mode::read_write}) {
    const std::string msg = btm::test::error_of([&] { File f(path, mode); });
    EXPECT_EQ(msg, path.string() + ": format version 99 is newer than this btm reads (format version 2); "
                                   "read it with a newer btm");
  }
  EXPECT_NE(btm::test::error_of([&] { btm::h5::open_for_read(path, "a model file"); }).find("format version 99"),
            std::string::npos);
}

TEST(FormatVersion, ANonIntegerOrNonPositiveVersionIsRefused) {
  const auto text = scratch("text");
  write_without_version(text);
  File(text, File::Mode::read_write).set_attr("/", "format_version", std::string("2"));
  EXPECT_EQ(btm::test::error_of([&] { File f(text, File::Mode::read); }),
            text.string() + ": the root attribute format_version is not one integer; not a btm file");
  const auto zero = scratch("zero");
  write_without_version(zero);
  set_version(zero, 0);
  EXPECT_EQ(btm::test::error_of([&] { File f(zero, File::Mode::read); }),
            zero.string() + ": format version 0 is not a btm format version (1 to 2)");
}
