#pragma once
// Errors. Every failure is a btm::Error carrying a complete, user-facing message; main()
// catches it, prints it once with the rank, and stops every rank with MPI_Abort.
#include <source_location>
#include <stdexcept>
#include <string>

namespace btm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws btm::Error("<what> (<file>:<line>)") for an internal call that failed.
[[noreturn]] void fail_call(const std::string& what,
                            std::source_location where = std::source_location::current());

// MPI, HDF5: a failing call throws with the call text, the library's message and file:line.
void check_mpi(int code, const char* call, std::source_location where = std::source_location::current());
void check_h5(long long status, const char* call,
              std::source_location where = std::source_location::current());

}  // namespace btm

#define BTM_MPI(call) ::btm::check_mpi((call), #call)
#define BTM_H5(call) ::btm::check_h5(static_cast<long long>(call), #call)
