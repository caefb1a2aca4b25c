#pragma once
// Helpers for the deck tests: parse a deck text and return the error it raises.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "btm/config.hpp"
#include "btm/error.hpp"

namespace btm::test {

// A small valid deck; bad-deck tests append to it or replace parts of it.
inline const std::string kGoodDeck = R"([run]
name = "t"
out_dir = "runs/t"

[data]
corpus = "corpus.jsonl"
train_domains = ["alpha", "beta", "gamma", "delta"]
heldout_domains = ["omega"]

[model]
hidden_size = 64
num_hidden_layers = 2
num_attention_heads = 4
context = 64
)";

// The btm::Error message of parse_deck(text, "bad.toml", overrides); a test failure if it parses.
inline std::string deck_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_deck(text, "bad.toml", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "the deck parsed without error:\n" << text;
  return "";
}

inline testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "'" << part << "' not found in:\n" << text;
}

}  // namespace btm::test
