#include "core/h5_write_driver.hpp"

#include <algorithm>
#include <map>

#include "btm/error.hpp"
#include "core/h5_error.hpp"

namespace btm::h5::detail {

namespace {

// Recorded failures by file name, until h5::File takes them.
std::map<std::string, std::string>& write_errors() {
  static std::map<std::string, std::string> errors;
  return errors;
}

#if H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10

// One open file: HDF5's public part first (HDF5 fills it in), then the sec2 file it wraps.
struct GuardedFile {
  H5FD_t pub;
  H5FD_t* inner;
  std::string name;
  bool failed;
};

GuardedFile* guarded(H5FD_t* f) { return reinterpret_cast<GuardedFile*>(f); }
const GuardedFile* guarded(const H5FD_t* f) { return reinterpret_cast<const GuardedFile*>(f); }

// Records the first failure of `f` with the system's reason from HDF5's error stack.
void record_failure(GuardedFile* f, const char* what) {
  std::string reason = take_h5_system_reason();
  if (reason.empty()) reason = std::string(what) + " failed";
  f->failed = true;
  write_errors().emplace(f->name, reason);
}

H5FD_t* guarded_open(const char* name, unsigned flags, hid_t, haddr_t maxaddr) {
  const hid_t sec2 = H5Pcreate(H5P_FILE_ACCESS);
  if (sec2 < 0) return nullptr;
  H5FD_t* inner = H5Pset_fapl_sec2(sec2) < 0 ? nullptr : H5FDopen(name, flags, sec2, maxaddr);
  write_errors().erase(name);
  // Taken before the next HDF5 call clears the error stack: a read-only folder, a full disk.
  if (!inner) write_errors().emplace(name, take_h5_system_reason());
  H5Pclose(sec2);
  if (!inner) return nullptr;
  return &(new GuardedFile{{}, inner, name, false})->pub;
}

herr_t guarded_close(H5FD_t* file) {
  GuardedFile* f = guarded(file);
  if (H5FDclose(f->inner) < 0) record_failure(f, "close");
  delete f;
  return 0;
}

int guarded_cmp(const H5FD_t* a, const H5FD_t* b) { return H5FDcmp(guarded(a)->inner, guarded(b)->inner); }

// sec2's features, asked before a file is open too (file = NULL).
herr_t guarded_query(const H5FD_t*, unsigned long* flags) {
  if (H5FDdriver_query(H5FD_SEC2, flags) < 0) return -1;
  *flags &= ~static_cast<unsigned long>(H5FD_FEAT_POSIX_COMPAT_HANDLE);  // the handle is not an fd
  return 0;
}

haddr_t guarded_get_eoa(const H5FD_t* file, H5FD_mem_t type) { return H5FDget_eoa(guarded(file)->inner, type); }

herr_t guarded_set_eoa(H5FD_t* file, H5FD_mem_t type, haddr_t addr) {
  return H5FDset_eoa(guarded(file)->inner, type, addr);
}

haddr_t guarded_get_eof(const H5FD_t* file, H5FD_mem_t type) { return H5FDget_eof(guarded(file)->inner, type); }

herr_t guarded_get_handle(H5FD_t* file, hid_t, void** handle) {
  *handle = file;
  return 0;
}

herr_t guarded_read(H5FD_t* file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, void* buf) {
  return H5FDread(guarded(file)->inner, type, dxpl, addr, size, buf);
}

herr_t guarded_write(H5FD_t* file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, const void* buf) {
  GuardedFile* f = guarded(file);
  if (!f->failed && H5FDwrite(f->inner, type, dxpl, addr, size, buf) < 0) record_failure(f, "write");
  return 0;
}

herr_t guarded_flush(H5FD_t* file, hid_t dxpl, hbool_t closing) {
  GuardedFile* f = guarded(file);
  if (!f->failed && H5FDflush(f->inner, dxpl, closing) < 0) record_failure(f, "flush");
  return 0;
}

herr_t guarded_truncate(H5FD_t* file, hid_t dxpl, hbool_t closing) {
  GuardedFile* f = guarded(file);
  if (!f->failed && H5FDtruncate(f->inner, dxpl, closing) < 0) record_failure(f, "truncate");
  return 0;
}

herr_t guarded_lock(H5FD_t* file, hbool_t rw) { return H5FDlock(guarded(file)->inner, rw); }
herr_t guarded_unlock(H5FD_t* file) { return H5FDunlock(guarded(file)->inner); }

H5FD_class_t guarded_class() {
  H5FD_class_t c{};
  c.name = "btm_guarded_sec2";
  c.maxaddr = (haddr_t(1) << 63) - 1;  // sec2's with a 64-bit off_t
  c.fc_degree = H5F_CLOSE_WEAK;
  c.open = guarded_open;
  c.close = guarded_close;
  c.cmp = guarded_cmp;
  c.query = guarded_query;
  c.get_eoa = guarded_get_eoa;
  c.set_eoa = guarded_set_eoa;
  c.get_eof = guarded_get_eof;
  c.get_handle = guarded_get_handle;
  c.read = guarded_read;
  c.write = guarded_write;
  c.flush = guarded_flush;
  c.truncate = guarded_truncate;
  c.lock = guarded_lock;
  c.unlock = guarded_unlock;
  const H5FD_mem_t map[H5FD_MEM_NTYPES] = H5FD_FLMAP_DICHOTOMY;
  std::copy(map, map + H5FD_MEM_NTYPES, c.fl_map);
  return c;
}

hid_t guarded_driver() {
  static const H5FD_class_t cls = guarded_class();
  static hid_t id = -1;
  if (id < 0 || H5Iis_valid(id) <= 0) id = H5FDregister(&cls);
  return id;
}

#endif

}  // namespace

hid_t write_driver_fapl() {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  BTM_H5(fapl);
#if H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10
  const hid_t driver = guarded_driver();
  if (driver < 0 || H5Pset_driver(fapl, driver, nullptr) < 0) {
    H5Pclose(fapl);
    BTM_H5(-1);
  }
#endif
  return fapl;
}

std::string take_write_error(const std::string& path) {
  auto& errors = write_errors();
  const auto it = errors.find(path);
  if (it == errors.end()) return "";
  std::string error = it->second;
  errors.erase(it);
  return error;
}

}  // namespace btm::h5::detail
