#pragma once
// Every rank's entries of `v`, joined with '\n', on every rank (MPI tests' shared reports).
#include <sstream>
#include <string>
#include <vector>

#include "btm/comm.hpp"

namespace btm::test {

inline std::vector<std::string> gather_lines(const std::vector<std::string>& v) {
  std::string mine;
  for (const auto& s : v) mine += s + "\n";
  std::vector<std::string> out;
  for (const auto& chunk : btm::Comm::world().allgather(mine)) {
    std::istringstream in(chunk);
    for (std::string line; std::getline(in, line);) out.push_back(line);
  }
  return out;
}

}  // namespace btm::test
