#pragma once
// A small, strict JSON reader for corpus lines (RFC 8259): one object per line. Only the
// top-level members are kept; nested values are validated and kept as their source text,
// which parse_json_object / parse_json_array read in turn. json_quote writes strings.
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "btm/error.hpp"

namespace btm {

enum class JsonType { null, boolean, number, string, array, object };
const char* json_type_name(JsonType type);  // "a string", "a number", ...

struct JsonValue {
  JsonType type = JsonType::null;
  std::string text;  // strings: the decoded UTF-8 value; other types: their source text
};

// A syntax error: `column` is 1-based, in bytes; the message says what was expected.
class JsonError : public Error {
 public:
  JsonError(std::size_t column, const std::string& message)
      : Error("column " + std::to_string(column) + ": " + message), column_(column) {}
  std::size_t column() const { return column_; }

 private:
  std::size_t column_;
};

// Parses `text` as exactly one JSON object (whitespace around it allowed) and returns its
// members by name. Strings are fully unescaped (\uXXXX, surrogate pairs joined, to UTF-8).
// An escaped lone surrogate is kept as its 3-byte form, which is not valid UTF-8, so the
// corpus reader counts that document as invalid UTF-8 instead of stopping. Throws JsonError
// on any syntax error, a duplicate member name, a raw control character inside a string,
// or anything after the object.
std::map<std::string, JsonValue> parse_json_object(std::string_view text);

// Parses `text` as exactly one JSON array; its elements as parse_json_object's members.
std::vector<JsonValue> parse_json_array(std::string_view text);

// A JSON string literal: "..." with '"', '\\' and control characters escaped.
std::string json_quote(std::string_view s);

}  // namespace btm
