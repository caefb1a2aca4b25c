#pragma once
// The message of the btm::Error that `fn` throws, or "" when it throws none.
#include <string>

#include "btm/error.hpp"

namespace btm::test {

template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const btm::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace btm::test
