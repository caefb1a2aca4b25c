#include "btm/runtime.hpp"

#include <mpi.h>

#include <Kokkos_Core.hpp>

#include <cstdlib>

#include "btm/error.hpp"
#include "btm/log.hpp"

namespace btm {

Runtime::Runtime(int& argc, char**& argv) {
  int provided = 0;
  BTM_MPI(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided));
  // Errors on MPI calls come back as codes that btm checks, rather than aborting silently.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  // A Kokkos built with OpenMP would otherwise start one thread per core in every rank:
  // flat MPI (a rank per core) is the default, OMP_NUM_THREADS=T asks for T per rank.
  setenv("OMP_NUM_THREADS", "1", 0);
  Kokkos::initialize(argc, argv);
}

Runtime::~Runtime() {
  if (Kokkos::is_initialized()) Kokkos::finalize();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void abort_all(const std::string& message, int exit_code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  int rank = 0, size = 1;
  if (initialized && !finalized) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  }
  // One write(2) per message: the lines of ranks that fail together do not interleave.
  write_stderr("btm: error" + (size > 1 ? " [rank " + std::to_string(rank) + "]" : std::string()) + ": " + message +
               "\n");
  if (initialized && !finalized) {
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
    // A single rank has nobody to stop: shut down cleanly, without Open MPI's abort banner.
    if (Kokkos::is_initialized()) Kokkos::finalize();
    MPI_Finalize();
  }
  std::exit(exit_code);
}

}  // namespace btm
