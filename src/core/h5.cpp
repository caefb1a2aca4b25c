#include "btm/h5.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>

#include "btm/error.hpp"
#include "btm/fault_hook.hpp"
#include "core/h5_error.hpp"
#include "core/h5_write_driver.hpp"

namespace btm::h5 {

namespace {

// HDF5 prints its own error stack on every failure; btm reports errors itself.
struct SilenceHdf5 {
  SilenceHdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
} silence_hdf5;

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : path) {
    if (c == '/') {
      if (!cur.empty()) parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) parts.push_back(cur);
  return parts;
}

std::string parent_of(const std::string& path) {
  auto pos = path.rfind('/');
  return pos == 0 || pos == std::string::npos ? "/" : path.substr(0, pos);
}

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: break;
  }
  id_ = -1;
}

template <> hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> hid_t native_type<std::int8_t>() { return H5T_NATIVE_INT8; }
template <> hid_t native_type<std::int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t native_type<std::int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t native_type<std::uint8_t>() { return H5T_NATIVE_UINT8; }
template <> hid_t native_type<std::uint16_t>() { return H5T_NATIVE_UINT16; }
template <> hid_t native_type<std::uint32_t>() { return H5T_NATIVE_UINT32; }
template <> hid_t native_type<std::uint64_t>() { return H5T_NATIVE_UINT64; }
template <> hid_t native_type<bool>() { return H5T_NATIVE_HBOOL; }

File::File(const std::filesystem::path& path, Mode mode, MPI_Comm comm) : path_(path) {
  // Files written by one process go through the driver that survives a failed write.
  Handle fapl(comm == MPI_COMM_NULL && mode != Mode::read ? detail::write_driver_fapl() : H5Pcreate(H5P_FILE_ACCESS));
  BTM_H5(fapl.get());
  if (comm != MPI_COMM_NULL) BTM_H5(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL));
  hid_t id = -1;
  switch (mode) {
    case Mode::read: id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()); break;
    case Mode::read_write: id = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get()); break;
    case Mode::create: id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()); break;
  }
  if (id < 0) {
    std::string reason = take_h5_system_reason();
    if (reason.empty()) reason = detail::take_write_error(path.string());
    std::string why = "cannot create HDF5 file ";
    if (mode != Mode::create && !std::filesystem::exists(path)) {
      why = "no such file: ";
      reason.clear();
    } else if (mode != Mode::create) {
      why = "not a readable HDF5 file: ";
      reason = "truncated, damaged, or not an HDF5 file";
    }
    throw Error(why + path.string() + (reason.empty() ? "" : " (" + reason + ")"));
  }
  handle_ = Handle(id);
  if (mode == Mode::create) {
    set_attr<std::int64_t>("/", "format_version", kFormatVersion);
  } else if (const std::int64_t version = format_version(); version > kFormatVersion) {
    throw Error(path.string() + ": format version " + std::to_string(version) +
                " is newer than this btm reads (format version " + std::to_string(kFormatVersion) +
                "); read it with a newer btm");
  }
}

std::int64_t File::format_version() const {
  if (!has_attr("/", "format_version")) return 1;
  Handle root = open_object("/");
  Handle a(H5Aopen(root.get(), "format_version", H5P_DEFAULT));
  BTM_H5(a.get());
  Handle type(H5Aget_type(a.get()));
  BTM_H5(type.get());
  Handle space(H5Aget_space(a.get()));
  BTM_H5(space.get());
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (H5Tget_class(type.get()) != H5T_INTEGER || n != 1) {
    throw Error(path_.string() + ": the root attribute format_version is not one integer; not a btm file");
  }
  std::int64_t version = 0;
  BTM_H5(H5Aread(a.get(), H5T_NATIVE_INT64, &version));
  if (version < 1) {
    throw Error(path_.string() + ": format version " + std::to_string(version) + " is not a btm format version (1 to " +
                std::to_string(kFormatVersion) + ")");
  }
  return version;
}

void File::flush() {
  BTM_H5(H5Fflush(id(), H5F_SCOPE_LOCAL));
  throw_if_write_failed();
}

void File::close() {
  handle_.reset();
  throw_if_write_failed();
}

void File::throw_if_write_failed() const {
  if (const std::string reason = detail::take_write_error(path_.string()); !reason.empty()) {
    throw Error("cannot write " + path_.string() + ": " + reason);
  }
}

std::string File::where(const std::string& object_path) const {
  return path_.string() + ":" + object_path;
}

bool File::exists(const std::string& object_path) const {
  if (object_path == "/" || object_path.empty()) return true;
  std::string prefix;
  for (const auto& part : split_path(object_path)) {
    prefix += "/" + part;
    htri_t e = H5Lexists(id(), prefix.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
  }
  return true;
}

Handle File::open_object(const std::string& object_path) const {
  if (!exists(object_path)) throw Error(where(object_path) + ": no such group or dataset");
  hid_t obj = H5Oopen(id(), object_path.c_str(), H5P_DEFAULT);
  BTM_H5(obj);
  return Handle(obj);
}

std::vector<std::string> File::list(const std::string& group_path) const {
  Handle g = open_object(group_path);
  std::vector<std::string> names;
  BTM_H5(H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names));
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<hsize_t> File::shape(const std::string& dataset_path) const {
  Handle d = open_object(dataset_path);
  Handle space(H5Dget_space(d.get()));
  BTM_H5(space.get());
  int rank = H5Sget_simple_extent_ndims(space.get());
  BTM_H5(rank);
  std::vector<hsize_t> dims(rank);
  BTM_H5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr));
  return dims;
}

void File::create_group(const std::string& group_path) {
  std::string prefix;
  for (const auto& part : split_path(group_path)) {
    prefix += "/" + part;
    if (!exists(prefix)) {
      Handle g(H5Gcreate2(id(), prefix.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
      BTM_H5(g.get());
    }
  }
}

Handle File::create_dataset(const std::string& dataset_path, hid_t type,
                            const std::vector<hsize_t>& dims) {
  create_group(parent_of(dataset_path));
  if (exists(dataset_path)) BTM_H5(H5Ldelete(id(), dataset_path.c_str(), H5P_DEFAULT));
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  BTM_H5(space.get());
  Handle d(H5Dcreate2(id(), dataset_path.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                      H5P_DEFAULT));
  if (d.get() < 0) throw Error(where(dataset_path) + ": cannot create dataset");
  return d;
}

template <class T>
void File::write(const std::string& dataset_path, const T* data, std::vector<hsize_t> dims) {
  Handle d = create_dataset(dataset_path, native_type<T>(), dims);
  hsize_t n = std::accumulate(dims.begin(), dims.end(), hsize_t(1), std::multiplies<>());
  fault::before_dataset_write(*this, n * sizeof(T));
  if (n > 0) BTM_H5(H5Dwrite(d.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
  throw_if_write_failed();
}

template <class T>
void File::write(const std::string& dataset_path, const std::vector<T>& data,
                 std::vector<hsize_t> dims) {
  if (dims.empty()) dims = {data.size()};
  hsize_t n = std::accumulate(dims.begin(), dims.end(), hsize_t(1), std::multiplies<>());
  if (n != data.size()) throw Error(where(dataset_path) + ": shape does not match data size");
  write(dataset_path, data.data(), dims);
}

template <class T>
void File::read_into(const std::string& dataset_path, T* out, std::size_t n) const {
  auto dims = shape(dataset_path);
  hsize_t total = std::accumulate(dims.begin(), dims.end(), hsize_t(1), std::multiplies<>());
  if (total != n) {
    throw Error(where(dataset_path) + ": expected " + std::to_string(n) + " elements, found " +
                std::to_string(total));
  }
  Handle d = open_object(dataset_path);
  // A damaged file may declare elements of any size, and HDF5 allocates its conversion
  // buffer from that size before it fails (4 GiB for one element, found by fuzz_model).
  Handle stored(H5Dget_type(d.get()));
  BTM_H5(stored.get());
  const std::size_t bytes = H5Tget_size(stored.get());
  if (bytes == 0 || bytes > 16) {
    throw Error(where(dataset_path) + ": elements of " + std::to_string(bytes) +
                " bytes; expected numbers (the file is damaged)");
  }
  if (n > 0) BTM_H5(H5Dread(d.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out));
}

template <class T>
std::vector<T> File::read(const std::string& dataset_path) const {
  auto dims = shape(dataset_path);
  hsize_t total = std::accumulate(dims.begin(), dims.end(), hsize_t(1), std::multiplies<>());
  std::vector<T> out(total);
  read_into(dataset_path, out.data(), out.size());
  return out;
}

template <class T>
void File::read_slab(const std::string& dataset_path, hsize_t offset, hsize_t count, T* out) const {
  Handle d = open_object(dataset_path);
  Handle space(H5Dget_space(d.get()));
  BTM_H5(space.get());
  hsize_t n = 0;
  BTM_H5(H5Sget_simple_extent_dims(space.get(), &n, nullptr));
  if (offset + count > n) {
    throw Error(where(dataset_path) + ": read of [" + std::to_string(offset) + ", " +
                std::to_string(offset + count) + ") is past its end (" + std::to_string(n) + ")");
  }
  BTM_H5(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &offset, nullptr, &count, nullptr));
  Handle mem(H5Screate_simple(1, &count, nullptr));
  BTM_H5(H5Dread(d.get(), native_type<T>(), mem.get(), space.get(), H5P_DEFAULT, out));
}

void File::write_strings(const std::string& dataset_path, const std::vector<std::string>& values) {
  Handle type(H5Tcopy(H5T_C_S1));
  BTM_H5(H5Tset_size(type.get(), H5T_VARIABLE));
  BTM_H5(H5Tset_cset(type.get(), H5T_CSET_UTF8));
  Handle d = create_dataset(dataset_path, type.get(), {values.size()});
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  std::uint64_t bytes = 0;
  for (const auto& v : values) {
    ptrs.push_back(v.c_str());
    bytes += v.size() + 1;
  }
  fault::before_dataset_write(*this, bytes);
  if (!values.empty()) BTM_H5(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()));
  throw_if_write_failed();
}

std::vector<std::string> File::read_strings(const std::string& dataset_path) const {
  Handle d = open_object(dataset_path);
  Handle file_type(H5Dget_type(d.get()));
  BTM_H5(file_type.get());
  if (H5Tget_class(file_type.get()) != H5T_STRING) throw Error(where(dataset_path) + ": expected strings");
  Handle space(H5Dget_space(d.get()));
  hsize_t n = 0;
  BTM_H5(H5Sget_simple_extent_dims(space.get(), &n, nullptr));
  std::vector<std::string> out(n);
  if (n == 0) return out;
  if (H5Tis_variable_str(file_type.get()) > 0) {
    Handle type(H5Tcopy(H5T_C_S1));
    BTM_H5(H5Tset_size(type.get(), H5T_VARIABLE));
    BTM_H5(H5Tset_cset(type.get(), H5Tget_cset(file_type.get())));
    std::vector<char*> ptrs(n, nullptr);
    BTM_H5(H5Dread(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()));
    for (hsize_t i = 0; i < n; ++i) out[i] = ptrs[i] ? ptrs[i] : "";
    BTM_H5(H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, ptrs.data()));
  } else {
    std::size_t len = H5Tget_size(file_type.get());
    std::vector<char> buf(n * len);
    BTM_H5(H5Dread(d.get(), file_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()));
    for (hsize_t i = 0; i < n; ++i) {
      const char* s = buf.data() + i * len;
      out[i] = std::string(s, strnlen(s, len));
    }
  }
  return out;
}

template <class T>
void File::set_attr(const std::string& object_path, const std::string& name, const T& value) {
  if (!exists(object_path)) create_group(object_path);
  Handle obj = open_object(object_path);
  if (H5Aexists(obj.get(), name.c_str()) > 0) BTM_H5(H5Adelete(obj.get(), name.c_str()));
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(H5Acreate2(obj.get(), name.c_str(), native_type<T>(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  BTM_H5(a.get());
  BTM_H5(H5Awrite(a.get(), native_type<T>(), &value));
}

void File::set_attr(const std::string& object_path, const std::string& name, const std::string& value) {
  if (!exists(object_path)) create_group(object_path);
  Handle obj = open_object(object_path);
  if (H5Aexists(obj.get(), name.c_str()) > 0) BTM_H5(H5Adelete(obj.get(), name.c_str()));
  Handle type(H5Tcopy(H5T_C_S1));
  BTM_H5(H5Tset_size(type.get(), H5T_VARIABLE));
  BTM_H5(H5Tset_cset(type.get(), H5T_CSET_UTF8));
  Handle space(H5Screate(H5S_SCALAR));
  Handle a(H5Acreate2(obj.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  BTM_H5(a.get());
  const char* p = value.c_str();
  BTM_H5(H5Awrite(a.get(), type.get(), &p));
}

bool File::has_attr(const std::string& object_path, const std::string& name) const {
  if (!exists(object_path)) return false;
  Handle obj = open_object(object_path);
  htri_t e = H5Aexists(obj.get(), name.c_str());
  BTM_H5(e);
  return e > 0;
}

template <class T>
T File::attr(const std::string& object_path, const std::string& name) const {
  if (!has_attr(object_path, name)) throw Error(where(object_path) + ": missing attribute '" + name + "'");
  Handle obj = open_object(object_path);
  Handle a(H5Aopen(obj.get(), name.c_str(), H5P_DEFAULT));
  BTM_H5(a.get());
  Handle type(H5Aget_type(a.get()));
  H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT && cls != H5T_ENUM) {
    throw Error(where(object_path) + ": attribute '" + name + "' is not a number");
  }
  T value{};
  BTM_H5(H5Aread(a.get(), native_type<T>(), &value));
  return value;
}

std::string File::string_attr(const std::string& object_path, const std::string& name) const {
  if (!has_attr(object_path, name)) throw Error(where(object_path) + ": missing attribute '" + name + "'");
  Handle obj = open_object(object_path);
  Handle a(H5Aopen(obj.get(), name.c_str(), H5P_DEFAULT));
  BTM_H5(a.get());
  Handle type(H5Aget_type(a.get()));
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw Error(where(object_path) + ": attribute '" + name + "' is not a string");
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    char* p = nullptr;
    BTM_H5(H5Aread(a.get(), type.get(), &p));
    std::string out = p ? p : "";
    H5free_memory(p);
    return out;
  }
  std::size_t len = H5Tget_size(type.get());
  std::string out(len, '\0');
  BTM_H5(H5Aread(a.get(), type.get(), out.data()));
  out.resize(strnlen(out.c_str(), len));
  return out;
}

std::vector<std::string> File::attr_names(const std::string& object_path) const {
  Handle obj = open_object(object_path);
  std::vector<std::string> names;
  BTM_H5(H5Aiterate2(obj.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attr, &names));
  return names;
}

#define BTM_H5_INSTANTIATE(T)                                                                  \
  template void File::write<T>(const std::string&, const std::vector<T>&, std::vector<hsize_t>); \
  template void File::write<T>(const std::string&, const T*, std::vector<hsize_t>);            \
  template std::vector<T> File::read<T>(const std::string&) const;                             \
  template void File::read_slab<T>(const std::string&, hsize_t, hsize_t, T*) const;            \
  template void File::read_into<T>(const std::string&, T*, std::size_t) const;                 \
  template void File::set_attr<T>(const std::string&, const std::string&, const T&);           \
  template T File::attr<T>(const std::string&, const std::string&) const;
BTM_H5_INSTANTIATE(float)
BTM_H5_INSTANTIATE(double)
BTM_H5_INSTANTIATE(std::int8_t)
BTM_H5_INSTANTIATE(std::int32_t)
BTM_H5_INSTANTIATE(std::int64_t)
BTM_H5_INSTANTIATE(std::uint8_t)
BTM_H5_INSTANTIATE(std::uint16_t)
BTM_H5_INSTANTIATE(std::uint32_t)
BTM_H5_INSTANTIATE(std::uint64_t)
#undef BTM_H5_INSTANTIATE

namespace {
std::string host_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return host;
}

// "<path>.tmp.<host>.": with the writer's process id, unique among the writers of a shared
// filesystem (process ids repeat across nodes).
std::string temporary_prefix(const std::filesystem::path& path) {
  return path.filename().string() + ".tmp." + host_name() + ".";
}

// Removes the temporaries of `path` left by killed writers on this host: those whose
// process no longer exists. Writers on other hosts cannot be checked and are left alone.
void remove_dead_writers_temporaries(const std::filesystem::path& path) {
  const std::string prefix = temporary_prefix(path);
  const auto is_pid = [](const std::string& t) {
    return !t.empty() && t.size() <= 9 && std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (!is_pid(pid_text)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    std::filesystem::remove(it->path(), ignored);
  }
}
}  // namespace

AtomicWrite::AtomicWrite(const std::filesystem::path& path)
    : path_(path), tmp_(path.parent_path() / (temporary_prefix(path) + std::to_string(::getpid()))) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  remove_dead_writers_temporaries(path);
  file_ = std::make_unique<File>(tmp_, File::Mode::create);
}

AtomicWrite::~AtomicWrite() {
  if (!file_) return;
  file_.reset();
  std::error_code ec;
  std::filesystem::remove(tmp_, ec);
}

void sync_to_disk(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error("cannot open " + path.string() + " to sync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync a folder (EINVAL); the file itself is synced.
  if (rc != 0 && err != EINVAL) throw Error("cannot sync " + path.string() + " to disk: " + std::strerror(err));
}

void AtomicWrite::commit() {
  file_->flush();
  file_->close();
  file_.reset();
  sync_to_disk(tmp_);
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) throw Error("cannot move " + tmp_.string() + " to " + path_.string() + ": " + ec.message());
  sync_to_disk(path_.has_parent_path() ? path_.parent_path() : std::filesystem::path("."));
}

File open_for_read(const std::filesystem::path& path, const std::string& expected_what) {
  if (!std::filesystem::exists(path)) {
    throw Error("no such file: " + path.string() + " (expected " + expected_what + ")");
  }
  return File(path, File::Mode::read);
}

}  // namespace btm::h5
