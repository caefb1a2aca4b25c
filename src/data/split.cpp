#include "btm/data/split.hpp"

#include "btm/data/loader.hpp"

namespace btm {

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

double id_unit_hash(std::string_view id) {
  return static_cast<double>(mix64(fnv1a64(id)) >> 11) * 0x1.0p-53;
}

std::string hash_split(std::string_view id, bool heldout, double valid_fraction, double test_fraction) {
  double u = id_unit_hash(id);
  if (heldout) return u < 0.5 ? "valid" : "test";
  if (u < valid_fraction) return "valid";
  if (u < valid_fraction + test_fraction) return "test";
  return "train";
}

bool is_split_name(std::string_view name) {
  for (const char* s : kSplits) {
    if (name == s) return true;
  }
  return false;
}

}  // namespace btm
