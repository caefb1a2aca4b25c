#pragma once
// A data.h5 written directly in the ARCHITECTURE layout, with learnable token streams, so that
// trainer tests need neither a corpus nor a tokenizer run.
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "btm/h5.hpp"

namespace btm::test {

// Domain d's stream repeats a domain-specific cycle with noise: a model can learn it.
inline void write_synthetic_data(const std::filesystem::path& path, const std::vector<std::string>& domains,
                                 int vocab, std::size_t tokens_per_split, std::uint64_t seed,
                                 const std::string& tokenizer_bytes = "test") {
  h5::File f(path, h5::File::Mode::create);
  std::vector<std::uint8_t> model_bytes(tokenizer_bytes.begin(), tokenizer_bytes.end());
  f.write<std::uint8_t>("/tokenizer/model", model_bytes);
  f.set_attr<std::int64_t>("/tokenizer/model", "vocab_size", vocab);
  f.set_attr<std::int64_t>("/tokenizer/model", "bos_id", 1);
  f.set_attr<std::int64_t>("/tokenizer/model", "eos_id", 2);
  std::mt19937_64 rng(seed);
  for (std::size_t d = 0; d < domains.size(); ++d) {
    for (const char* split : {"train", "valid", "test"}) {
      std::vector<std::uint16_t> tokens(tokens_per_split);
      const int period = 3 + static_cast<int>(d);
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        tokens[i] = rng() % 8 == 0 ? static_cast<std::uint16_t>(3 + rng() % (vocab - 3))
                                   : static_cast<std::uint16_t>(3 + (i * (d + 1)) % period + 5 * d);
      }
      const std::string g = "/domains/" + domains[d] + "/" + split;
      f.write<std::uint16_t>(g + "/tokens", tokens);
      f.write<std::uint64_t>(g + "/doc_offsets", std::vector<std::uint64_t>{0, tokens.size()});
      f.write_strings(g + "/doc_ids", {domains[d] + "/0"});
    }
  }
}

}  // namespace btm::test
