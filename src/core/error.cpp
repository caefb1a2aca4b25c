#include "btm/error.hpp"

#include <hdf5.h>
#include <mpi.h>

#include <string>

#include "core/h5_error.hpp"

namespace btm {

namespace {
std::string location(const SourceLocation& where) {
  std::string file = where.file_name();
  if (auto pos = file.rfind("/src/"); pos != std::string::npos) file = file.substr(pos + 1);
  return file + ":" + std::to_string(where.line());
}

struct H5ErrorText {
  std::string api;     // the description at the API call, e.g. "unable to flush file's cached information"
  std::string file;    // the file a driver names
  std::string reason;  // the system's reason from the file driver, when a system call failed
};

// The text between `opening` (which ends in a quote) and the next "'" of an error description.
std::string quoted_after(const std::string& desc, const std::string& opening) {
  const auto start = desc.find(opening);
  if (start == std::string::npos) return "";
  const auto from = start + opening.size();
  const auto end = desc.find('\'', from);
  return end == std::string::npos ? "" : desc.substr(from, end - from);
}

// Collects the API-level HDF5 error description and, from the file drivers deeper down, the
// file and the system's reason (a full disk, a read-only file system): the POSIX driver
// says "filename = '…', … error message = '…'", the MPI-IO one "MPI error string is '…'"
// below an open's "name = '…'".
herr_t walk_h5_error(unsigned n, const H5E_error2_t* err, void* out) {
  auto* text = static_cast<H5ErrorText*>(out);
  if (!err->desc) return 0;
  if (n == 0) text->api = err->desc;
  if (const std::string name = quoted_after(err->desc, "name = '"); !name.empty()) text->file = name;
  std::string reason = quoted_after(err->desc, "error message = '");
  if (reason.empty()) reason = quoted_after(err->desc, "MPI error string is '");
  if (!reason.empty()) text->reason = reason;
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

std::string take_h5_system_reason() {
  H5ErrorText text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_h5_error, &text);
  H5Eclear2(H5E_DEFAULT);
  return text.reason;
}

void check_h5(long long status, const char* call, SourceLocation where) {
  if (status >= 0) return;
  H5ErrorText text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_h5_error, &text);
  H5Eclear2(H5E_DEFAULT);
  fail_call(std::string("HDF5 call failed: ") + call + (text.api.empty() ? "" : ": " + text.api) +
                (text.reason.empty() ? "" : ": " + (text.file.empty() ? "" : text.file + ": ") + text.reason),
            where);
}

}  // namespace btm
