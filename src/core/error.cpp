#include "btm/error.hpp"

#include <hdf5.h>
#include <mpi.h>

#include <string>

namespace btm {

namespace {
std::string location(const SourceLocation& where) {
  std::string file = where.file_name();
  if (auto pos = file.rfind("/src/"); pos != std::string::npos) file = file.substr(pos + 1);
  return file + ":" + std::to_string(where.line());
}

// Collects the innermost HDF5 error description (the library's own message).
herr_t walk_h5_error(unsigned n, const H5E_error2_t* err, void* out) {
  if (n == 0 && err->desc) *static_cast<std::string*>(out) = err->desc;
  return 0;
}
}  // namespace

void fail_call(const std::string& what, SourceLocation where) {
  throw Error(what + " (" + location(where) + ")");
}

void check_mpi(int code, const char* call, SourceLocation where) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  fail_call(std::string("MPI call failed: ") + call + ": " + std::string(text, len), where);
}

void check_h5(long long status, const char* call, SourceLocation where) {
  if (status >= 0) return;
  std::string detail;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_h5_error, &detail);
  H5Eclear2(H5E_DEFAULT);
  fail_call(std::string("HDF5 call failed: ") + call + (detail.empty() ? "" : ": " + detail), where);
}

}  // namespace btm
