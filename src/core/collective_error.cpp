#include "btm/collective_error.hpp"

#include <exception>

namespace btm {

void agree_on_failure(const Comm& comm, const std::function<void()>& work) {
  std::string mine;
  try {
    work();
  } catch (const std::exception& e) {
    mine = e.what();
    if (mine.empty()) mine = "unknown error";
  }
  for (const auto& message : comm.allgather(mine)) {
    if (!message.empty()) throw CollectiveError(message);
  }
}

}  // namespace btm
