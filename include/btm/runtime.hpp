#pragma once
// MPI + Kokkos lifetime, and the one error path: report and stop every rank.
#include <string>

namespace btm {

class Runtime {
 public:
  Runtime(int& argc, char**& argv);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
};

// Prints "btm: error: <message>" (with "[rank r]" when more than one rank) to stderr and
// calls MPI_Abort on MPI_COMM_WORLD. Never returns; never hangs.
[[noreturn]] void abort_all(const std::string& message, int exit_code = 1);

}  // namespace btm
