// The reference vectorizer's word tokenisation (scikit-learn's (?u)\b\w\w+\b on lowercased
// text, numbers as #NUMBER, English stop words and #NUMBER dropped).
#include <gtest/gtest.h>

#include "btm/cluster/terms.hpp"

using btm::cluster::terms;
using btm::cluster::word_tokens;
using V = std::vector<std::string>;

TEST(ClusterTerms, WordsAreLowercasedRunsOfTwoOrMoreWordCharacters) {
  EXPECT_EQ(word_tokens("Hello, World! a_b x I'm fine-tuned"), (V{"hello", "world", "a_b", "fine", "tuned"}));
}

TEST(ClusterTerms, WordsStartingWithADigitBecomeTheNumberTerm) {
  EXPECT_EQ(word_tokens("in 1984 and 3rd x86 v2"), (V{"in", "#NUMBER", "and", "#NUMBER", "x86", "v2"}));
}

TEST(ClusterTerms, StopWordsAndNumbersAreDropped) {
  EXPECT_EQ(terms("The quick brown fox jumps over the lazy dog in 1984"), (V{"quick", "brown", "fox", "jumps", "lazy", "dog"}));
  EXPECT_TRUE(btm::cluster::is_stop_word("the"));
  EXPECT_TRUE(btm::cluster::is_stop_word("#NUMBER"));
  EXPECT_FALSE(btm::cluster::is_stop_word("fox"));
}

TEST(ClusterTerms, UnicodeLettersJoinWordsAndPunctuationSplitsThem) {
  // Latin-1 and Greek letters lowercase as in Python; curly quotes and dashes separate.
  EXPECT_EQ(word_tokens("\xE2\x80\x9C" "Caf\xC3\x89" "\xE2\x80\x9D \xCE\x91\xCE\x92\xCE\x93\xE2\x80\x94na\xC3\xAFve"),
            (V{"caf\xC3\xA9", "\xCE\xB1\xCE\xB2\xCE\xB3", "na\xC3\xAFve"}));
  // A combining mark is not a word character (Python's \w); invalid UTF-8 separates.
  EXPECT_EQ(word_tokens("ab\xCC\x81" "cd ef\xFFgh"), (V{"ab", "cd", "ef", "gh"}));
}

TEST(ClusterTerms, BrahmicVowelSignsAndViramaEndWordsAsInPython) {
  // Telugu "tatiparthi": Python's \w excludes the vowel signs and the virama, so only the
  // consonant pair between them is a word.
  EXPECT_EQ(word_tokens("\u0C24\u0C3E\u0C1F\u0C3F\u0C2A\u0C30\u0C4D\u0C24\u0C3F"), (V{"\u0C2A\u0C30"}));
}

TEST(ClusterTerms, EmptyAndSymbolOnlyTextsHaveNoTerms) {
  EXPECT_TRUE(terms("").empty());
  EXPECT_TRUE(terms("!! -- 42 ... a b c").empty());
}
