#pragma once
// Small RAII layer over the HDF5 C API. Every call is checked; errors name the file and
// the object. Paths inside a file are absolute ("/params/model.norm.weight"); groups on
// the way are created as needed.
#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace btm::h5 {

// The layout version of every file btm writes, the root attribute "format_version"
// (integer). A file without it was written before versions were recorded: version 1.
//   1: the layouts before the attribute existed
//   2: the attribute itself; forest.h5 may hold /failed (experts whose training failed)
inline constexpr std::int64_t kFormatVersion = 2;

// Owns one hid_t (file, group, dataset, dataspace, type, property list, attribute).
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = -1;
};

template <class T>
hid_t native_type();  // H5T_NATIVE_* for float, double, int32/64, uint8/16/32/64, char

class File {
 public:
  enum class Mode { read, read_write, create };
  // `comm` != MPI_COMM_NULL opens the file with the MPI-IO driver (collective open).
  // A created file gets the root attribute format_version = kFormatVersion; an opened one
  // is refused when its format version is newer than kFormatVersion (format_version()).
  File(const std::filesystem::path& path, Mode mode, MPI_Comm comm = MPI_COMM_NULL);
  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;

  hid_t id() const { return handle_.get(); }
  // The file's format version: its root attribute format_version, 1 when it has none.
  std::int64_t format_version() const;
  const std::filesystem::path& path() const { return path_; }
  // Both throw "cannot write <path>: <reason>" when a write to the file failed (a full disk,
  // a file-size limit); the file itself still closes cleanly.
  void flush();
  void close();

  bool exists(const std::string& object_path) const;  // group or dataset
  std::vector<std::string> list(const std::string& group_path) const;  // child names, sorted
  std::vector<hsize_t> shape(const std::string& dataset_path) const;

  // Whole datasets (1-D unless `dims` is given; product(dims) == data.size()).
  template <class T>
  void write(const std::string& dataset_path, const std::vector<T>& data,
             std::vector<hsize_t> dims = {});
  template <class T>
  void write(const std::string& dataset_path, const T* data, std::vector<hsize_t> dims);
  template <class T>
  std::vector<T> read(const std::string& dataset_path) const;
  // Reads `count` elements starting at `offset` of a 1-D dataset into `out`.
  template <class T>
  void read_slab(const std::string& dataset_path, hsize_t offset, hsize_t count, T* out) const;
  // Reads the whole dataset into caller memory of the right size.
  template <class T>
  void read_into(const std::string& dataset_path, T* out, std::size_t n) const;

  void write_strings(const std::string& dataset_path, const std::vector<std::string>& values);
  std::vector<std::string> read_strings(const std::string& dataset_path) const;

  // Attributes on a group or dataset (created, or overwritten when present).
  template <class T>
  void set_attr(const std::string& object_path, const std::string& name, const T& value);
  void set_attr(const std::string& object_path, const std::string& name, const std::string& value);
  void set_attr(const std::string& object_path, const std::string& name, const char* value) {
    set_attr(object_path, name, std::string(value));
  }
  bool has_attr(const std::string& object_path, const std::string& name) const;
  template <class T>
  T attr(const std::string& object_path, const std::string& name) const;
  std::string string_attr(const std::string& object_path, const std::string& name) const;
  std::vector<std::string> attr_names(const std::string& object_path) const;

  void create_group(const std::string& group_path);  // with parents; no-op when present
  std::string where(const std::string& object_path) const;  // "file.h5:/a/b" for messages

 private:
  Handle open_object(const std::string& object_path) const;
  void throw_if_write_failed() const;
  Handle create_dataset(const std::string& dataset_path, hid_t type, const std::vector<hsize_t>& dims);

  std::filesystem::path path_;
  Handle handle_;
};

// Writes a file atomically: everything goes to "<path>.tmp.<host>.<pid>", and commit()
// closes it and renames it over `path`. A crash before commit() leaves `path` untouched;
// the next writer of `path` on that host removes the temporaries of writers that are gone.
class AtomicWrite {
 public:
  explicit AtomicWrite(const std::filesystem::path& path);
  ~AtomicWrite();  // removes the temporary file when commit() was not called
  File& file() { return *file_; }
  void commit();

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  std::unique_ptr<File> file_;
};

// fsync of a file or folder, so that data and renames survive a node crash, not only a
// process crash. Throws naming the path.
void sync_to_disk(const std::filesystem::path& path);

// Opens `path` for reading or throws "cannot open <path>: <what was expected>".
File open_for_read(const std::filesystem::path& path, const std::string& expected_what);

}  // namespace btm::h5
