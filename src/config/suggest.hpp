#pragma once
// "Did you mean ...?" for misspelled keys, sections and values.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace btm::deck {

// Optimal-string-alignment distance (a transposition counts as one edit), case-insensitive.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` when it is close enough to be a plausible misspelling
// (a few edits, scaled with the length), or that contains `word` (4+ characters).
std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates);

// "did you mean 'x'?" when a candidate is close, else "expected one of: a, b, c".
std::string suggestion(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace btm::deck
