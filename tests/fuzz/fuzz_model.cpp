// Model file reader: any bytes as a .h5 file yield a model or a btm::Error, nothing else.
#include <cstdint>

#include "btm/error.hpp"
#include "btm/model/model_file.hpp"
#include "btm/train/checkpoint.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = btm::fuzz::scratch_file("model.h5", data, size);
  try {
    (void)btm::model_is_complete(path);
  } catch (const btm::Error&) {
  }
  try {
    (void)btm::load_model(path);
  } catch (const btm::Error&) {
  }
  return 0;
}
