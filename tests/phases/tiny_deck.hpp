#pragma once
// inputs/tiny.toml with its corpus and output folder made absolute, for in-process runs.
#include <filesystem>
#include <string>

#include "btm/config.hpp"
#include "support/test_paths.hpp"

namespace btm::test {

inline Deck tiny_deck(const std::filesystem::path& out_dir, std::vector<std::string> overrides = {}) {
  overrides.push_back("run.out_dir=\"" + out_dir.string() + "\"");
  overrides.push_back("data.corpus=\"" + (source_dir() / "tests/data/fixtures/split_jsonl").string() + "\"");
  return load_deck(source_dir() / "inputs/tiny.toml", overrides);
}

}  // namespace btm::test
