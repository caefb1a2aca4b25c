// Forest reader: any bytes as forest.h5 (and as a registration record next to it) yield
// a forest or a btm::Error, nothing else.
#include <cstdint>
#include <filesystem>

#include "btm/error.hpp"
#include "btm/forest.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = btm::fuzz::scratch_file("forest.h5", data, size);
  try {
    const btm::Forest forest = btm::Forest::load(path);
    for (const auto& e : forest.experts()) (void)forest.resolve(e);
  } catch (const btm::Error&) {
  }
  return 0;
}
