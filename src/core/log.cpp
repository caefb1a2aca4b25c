#include "btm/log.hpp"

#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

namespace btm {

namespace {
int world_rank() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  int rank = 0;
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}
}  // namespace

void log_root(const std::string& line) {
  if (world_rank() != 0) return;
  std::cout << line << '\n' << std::flush;
}

void log_line(const std::string& line) { std::cout << line + '\n' << std::flush; }

void log_all(const std::string& line) {
  std::cout << "[rank " << world_rank() << "] " << line << '\n' << std::flush;
}

void warn_root(const std::string& line) {
  if (world_rank() != 0) return;
  write_stderr("warning: " + line + '\n');
}

void write_stderr(const std::string& text) {
  std::cout.flush();
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
}

std::string format_seconds(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%lds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  return buf;
}

}  // namespace btm
