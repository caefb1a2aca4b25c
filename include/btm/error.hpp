#pragma once
// Errors. Every failure is a btm::Error carrying a complete, user-facing message; main()
// catches it, prints it once with the rank, and stops every rank with MPI_Abort.
#include <stdexcept>
#include <string>

namespace btm {

// The caller's file and line, as std::source_location gives them; spelled with the
// builtins that GCC and Clang share because Clang 14 (the fuzzing and sanitizer builds)
// cannot compile libstdc++'s <source_location>.
struct SourceLocation {
  static constexpr SourceLocation current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
    return SourceLocation{file, line};
  }
  constexpr const char* file_name() const { return file_; }
  constexpr unsigned line() const { return line_; }
  const char* file_ = "";
  unsigned line_ = 0;
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws btm::Error("<what> (<file>:<line>)") for an internal call that failed.
[[noreturn]] void fail_call(const std::string& what,
                            SourceLocation where = SourceLocation::current());

// MPI, HDF5: a failing call throws with the call text, the library's message and file:line.
void check_mpi(int code, const char* call, SourceLocation where = SourceLocation::current());
void check_h5(long long status, const char* call,
              SourceLocation where = SourceLocation::current());

}  // namespace btm

#define BTM_MPI(call) ::btm::check_mpi((call), #call)
#define BTM_H5(call) ::btm::check_h5(static_cast<long long>(call), #call)
