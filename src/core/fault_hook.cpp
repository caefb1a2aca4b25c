#include "btm/fault_hook.hpp"

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>

#include "btm/error.hpp"

namespace btm::fault {

namespace {

struct WriteKill {
  bool armed = false;
  std::uint64_t at_byte = 0;
  std::string file_part;
  std::uint64_t written = 0;  // dataset bytes written so far to matching files
};

WriteKill from_environment() {
  WriteKill k;
  const char* at = std::getenv("BTM_FAULT_WRITE_KILL_AT_BYTE");
  if (!at || !*at) return k;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(at, &end, 10);
  if (*end != '\0' || n == 0 || at[0] == '-') {
    throw Error(std::string("BTM_FAULT_WRITE_KILL_AT_BYTE=") + at + ": expected a byte position >= 1");
  }
  k.armed = true;
  k.at_byte = n;
  if (const char* part = std::getenv("BTM_FAULT_WRITE_KILL_FILE")) k.file_part = part;
  return k;
}

// The one piece of mutable process state outside the runtime handles: a test hook's
// counter, read from the environment on first use.
WriteKill& write_kill() {
  static WriteKill k = from_environment();
  return k;
}

}  // namespace

void before_dataset_write(const h5::File& file, std::uint64_t bytes, bool flush_first) {
  WriteKill& k = write_kill();
  if (!k.armed || file.path().string().find(k.file_part) == std::string::npos) return;
  if (k.written + bytes < k.at_byte) {
    k.written += bytes;
    return;
  }
  if (flush_first) H5Fflush(file.id(), H5F_SCOPE_LOCAL);  // unchecked: the process dies next
  const std::string line = "fault=write_kill byte=" + std::to_string(k.at_byte) + " written=" +
                           std::to_string(k.written) + " file=" + file.path().string() + "\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  std::raise(SIGKILL);
}

}  // namespace btm::fault
