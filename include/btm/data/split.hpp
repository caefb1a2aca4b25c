#pragma once
// Hash splits for corpora that give none. Stable on every platform and rank count:
//   u = (mix64(fnv1a64(id)) >> 11) / 2^53   in [0, 1)
// with FNV-1a 64 (offset 14695981039346656037, prime 1099511628211) over the id's UTF-8
// bytes and mix64 the splitmix64 finaliser (btm/data/loader.hpp), which spreads FNV's weak
// high bits. Training domains: valid if u < valid_fraction, test if u < valid + test,
// else train. Held-out domains: valid if u < 0.5, else test.
#include <cstdint>
#include <string>
#include <string_view>

namespace btm {

std::uint64_t fnv1a64(std::string_view bytes);
double id_unit_hash(std::string_view id);
std::string hash_split(std::string_view id, bool heldout, double valid_fraction, double test_fraction);

// The split names, in the order they are stored and reported.
inline constexpr const char* kSplits[] = {"train", "valid", "test"};
bool is_split_name(std::string_view name);

}  // namespace btm
