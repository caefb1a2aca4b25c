#pragma once
// The words C-BTM's tf-idf vectorizer counts (Gururangan et al. 2023; the released
// clusterer is scikit-learn's TfidfVectorizer with a number-normalising tokenizer):
//   1. lowercase the text (str.lower()),
//   2. words = every match of the regex (?u)\b\w\w+\b (runs of two or more word
//      characters: letters, digits, '_'),
//   3. a word whose first character is a digit becomes the placeholder kNumberTerm,
//   4. stop words are dropped: scikit-learn's ENGLISH_STOP_WORDS and kNumberTerm itself
//      (the reference lists it), so numbers carry no weight.
// Text is UTF-8. Word characters and lowercasing follow Python's Unicode rules for ASCII,
// Latin-1, Latin Extended-A/B and Additional, Greek and Cyrillic; other scripts' letters
// are word characters, and the punctuation, symbol and emoji blocks are not (close to, not
// exactly, Python's tables). Invalid UTF-8 bytes are separators.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace btm::cluster {

inline constexpr std::string_view kNumberTerm = "#NUMBER";

// Steps 1-3: lowercased words in text order, numbers as kNumberTerm.
std::vector<std::string> word_tokens(std::string_view text);
// The same words passed to `emit` one by one (the view is valid during the call only).
void scan_words(std::string_view text, const std::function<void(std::string_view)>& emit);

// Step 4's rule.
bool is_stop_word(std::string_view term);

// Steps 1-4: the terms whose counts make a document's tf-idf vector, in text order.
std::vector<std::string> terms(std::string_view text);

// Calls `emit(term)` for each term of terms(text), in order, without building the vector:
// for embedders that count terms incrementally.
template <class Emit>
void for_each_term(std::string_view text, Emit&& emit) {
  scan_words(text, [&](std::string_view w) {
    if (!is_stop_word(w)) emit(w);
  });
}

}  // namespace btm::cluster
