#pragma once
// Helpers shared by the data tests.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "btm/config.hpp"

namespace btm::test {

struct SyntheticSplit {
  std::string domain;
  std::string split;
  std::uint64_t tokens;  // token i of the split has value (first + i) % 65536
  std::uint32_t first = 0;
};

// Writes a data.h5 with the ARCHITECTURE layout whose tokens are known (one document per split,
// the last token an EOS). Called by every rank; rank 0 writes, then all ranks wait.
void write_synthetic_data(const std::filesystem::path& path, const std::vector<SyntheticSplit>& splits);

// A deck for the prepare phase on a fixture corpus with a tiny tokenizer (fast to train).
Deck fixture_deck(const std::filesystem::path& out_dir, const std::string& fixture = "split_jsonl");

}  // namespace btm::test
