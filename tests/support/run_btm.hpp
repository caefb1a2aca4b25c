#pragma once
// Runs the built btm binary as a plain process (no mpirun) from the repository root.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "support/test_paths.hpp"

namespace btm::test {

struct BtmResult {
  int exit_code;
  std::string out, err;
};

// `env -u NAME ...` for the MPI variables this test's own singleton MPI_Init put into the
// environment (PMIX_*, OMPI_MCA_ess=singleton, ...): inherited, they would make btm try to
// join this process's job instead of starting as a singleton of its own.
inline std::string without_mpi_environment() {
  std::string prefix = "env";
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    std::string name = entry.substr(0, entry.find('='));
    bool mpi = name.rfind("PMIX_", 0) == 0 || name.rfind("OMPI_", 0) == 0;
    if (mpi && name.rfind("OMPI_ALLOW_RUN_AS_ROOT", 0) != 0) prefix += " -u " + name;
  }
  return prefix;
}

// Runs `btm <args>` from the repository root, stdout and stderr captured in files in `scratch`.
inline BtmResult run_btm(const std::string& args, const std::filesystem::path& scratch) {
  const auto out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  const std::string command = "cd '" + source_dir().string() + "' && " + without_mpi_environment() + " '" +
                              btm_binary().string() + "' " + args + " > '" + out.string() + "' 2> '" +
                              err.string() + "'";
  int status = std::system(command.c_str());
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return {code, read_text(out), read_text(err)};
}

}  // namespace btm::test
