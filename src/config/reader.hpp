#pragma once
// Internals shared by the deck reader, the --set overrides and the cross-field checks.
#include <map>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "btm/config.hpp"

namespace btm::deck {

// Where each key path of the deck was written ("train.lr", "eval.ensembles[1].prior"), so that
// every error can point at the file, line and column, or at the --set that gave the value.
class Places {
 public:
  explicit Places(std::string file) : file_(std::move(file)) {}

  void note(const std::string& key_path, const toml::source_region& where) { where_[key_path] = where; }
  // True when the key was given in the deck or by --set (not a default).
  bool given(const std::string& key_path) const { return where_.count(key_path) > 0; }
  // "deck.toml:12:7", "--set train.lr=x", or the nearest enclosing table's place; at worst the file.
  std::string at(const std::string& key_path) const;

  // Throws "<place>: <key_path>: <problem>[; expected <expected>]".
  [[noreturn]] void fail(const std::string& key_path, const std::string& problem,
                         const std::string& expected = "") const;

 private:
  std::string file_;
  std::map<std::string, toml::source_region> where_;
};

// Applies "section.key=value" / "section.sub.key=value" strings to the parsed deck; the values
// carry "--set <text>" as their source so that later errors name the override.
void apply_overrides(toml::table& root, const std::vector<std::string>& overrides);

// Checks that span several keys (domains, phases, experts, model shape, averages, ensembles).
void check_deck(const Deck& deck, const Places& places);

// How a value is described in messages: "a string (\"abc\")", "an integer (8)".
std::string found(const toml::node& node);

}  // namespace btm::deck
