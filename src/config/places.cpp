#include "config/reader.hpp"

#include "btm/error.hpp"

namespace btm::deck {

std::string Places::at(const std::string& key_path) const {
  std::string path = key_path;
  while (!path.empty()) {
    auto it = where_.find(path);
    if (it != where_.end() && it->second.begin.line > 0) {
      const auto& region = it->second;
      std::string source = region.path ? *region.path : file_;
      if (source.rfind("--set ", 0) == 0) return source;  // one line of the command, no position
      return source + ":" + std::to_string(region.begin.line) + ":" + std::to_string(region.begin.column);
    }
    // Fall back to the enclosing table: "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a".
    auto cut = path.find_last_of(".[");
    path = cut == std::string::npos ? std::string() : path.substr(0, cut);
  }
  return file_;
}

void Places::fail(const std::string& key_path, const std::string& problem, const std::string& expected) const {
  std::string message = at(key_path) + ": " + key_path + ": " + problem;
  if (!expected.empty()) message += "; expected " + expected;
  throw Error(message);
}

}  // namespace btm::deck
