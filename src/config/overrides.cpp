// --set section.key=value: applied to the parsed TOML before it is read, so an override goes
// through exactly the checks a key in the file does, and its errors name the --set.
#include <algorithm>
#include <memory>
#include <sstream>

#include "btm/error.hpp"
#include "config/reader.hpp"
#include "config/schema.hpp"

namespace btm::deck {

namespace {

std::string trim(const std::string& s) {
  auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

// The value as TOML ("1e-4", "[\"a\",\"b\"]", "true", "\"x\""), else as a bare string
// ("corpora/paper8", "foo"). Parsed with `place` as its source, so errors point at the --set.
toml::table parse_value(const std::string& value, const std::string& place) {
  try {
    toml::table t = toml::parse("v = " + value, place);
    if (t.size() == 1 && t.contains("v")) return t;  // "1\nx = 2" would sneak in a second key
  } catch (const toml::parse_error&) {
  }
  return toml::parse("v = " + toml_quote(value), place);
}

void apply(toml::table& root, const std::string& text) {
  const std::string place = "--set " + text;
  const auto eq = text.find('=');
  if (eq == std::string::npos) {
    throw Error(place + ": no '=' in the override; expected section.key=value (e.g. --set train.lr=1e-3)");
  }
  const std::string key = trim(text.substr(0, eq));
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(trim(part));
  bool empty_part = key.empty() || key.back() == '.' ||
                    std::any_of(parts.begin(), parts.end(), [](const std::string& s) { return s.empty(); });
  if (parts.size() < 2 || empty_part) {
    throw Error(place + ": '" + key + "' is not a key path; expected section.key=value or section.sub.key=value");
  }

  toml::table parsed = parse_value(trim(text.substr(eq + 1)), place);
  const toml::source_region where{{1, 1}, {1, 1}, std::make_shared<const std::string>(place)};
  toml::table* table = &root;
  std::string path;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    path += (path.empty() ? "" : ".") + parts[i];
    toml::node* node = table->get(parts[i]);
    if (!node) node = &table->insert_or_assign(toml::key{parts[i], where}, toml::table{}).first->second;
    if (!node->is_table()) {
      throw Error(place + ": " + path + " is " + found(*node) + ", not a table; expected section.key=value");
    }
    table = node->as_table();
  }
  // Moving keeps the value's source ("--set ..."); the key keeps the file's place if it was there.
  table->insert_or_assign(toml::key{parts.back(), where}, std::move(*parsed.get("v")));
}

}  // namespace

void apply_overrides(toml::table& root, const std::vector<std::string>& overrides) {
  for (const auto& text : overrides) apply(root, text);
}

}  // namespace btm::deck
