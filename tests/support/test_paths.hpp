#pragma once
// Paths and scratch files for tests.
#include <filesystem>
#include <string>

namespace btm::test {

std::filesystem::path source_dir();     // the repository root
std::filesystem::path test_data_dir();  // tests/data
std::filesystem::path btm_binary();     // the built btm executable
// An empty scratch folder, the same path on every rank of MPI_COMM_WORLD (collective).
std::filesystem::path fresh_dir(const std::string& name);
std::string read_text(const std::filesystem::path& path);
void write_text(const std::filesystem::path& path, const std::string& text);

}  // namespace btm::test
