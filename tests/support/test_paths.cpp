#include "support/gpu.hpp"
#include "support/test_paths.hpp"

#include <unistd.h>

#include <cstdlib>
#include <chrono>
#include <fstream>
#include <mpi.h>
#include <sstream>

#ifdef BTM_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace btm::test {

bool gpu_available() {
#ifdef BTM_HAVE_CUDA
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
#else
  return false;
#endif
}

bool suite_needs_gpu() {
  const char* v = std::getenv("BTM_TEST_NEEDS_GPU");
  return v && std::string(v) == "1";
}

std::filesystem::path source_dir() { return BTM_SOURCE_DIR; }
std::filesystem::path test_data_dir() { return BTM_TEST_DATA_DIR; }
std::filesystem::path btm_binary() { return BTM_BINARY; }

std::filesystem::path fresh_dir(const std::string& name) {
  // Same path on every rank: rank 0 picks the suffix and broadcasts it.
  long stamp = 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    stamp = static_cast<long>(::getpid()) * 1000 +
            std::chrono::steady_clock::now().time_since_epoch().count() % 1000;
  }
  MPI_Bcast(&stamp, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  auto dir = std::filesystem::temp_directory_path() / ("btm_test_" + name + "_" + std::to_string(stamp));
  if (rank == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return dir;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace btm::test
