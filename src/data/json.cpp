#include "btm/data/json.hpp"
#include "btm/data/utf8.hpp"

#include <cstdint>

namespace btm {

const char* json_type_name(JsonType type) {
  switch (type) {
    case JsonType::null: return "null";
    case JsonType::boolean: return "a boolean";
    case JsonType::number: return "a number";
    case JsonType::string: return "a string";
    case JsonType::array: return "an array";
    case JsonType::object: return "an object";
  }
  return "?";
}

namespace {

constexpr int kMaxDepth = 256;  // nesting guard: a hostile line must not overflow the stack

std::string describe(std::string_view s, std::size_t pos) {
  if (pos >= s.size()) return "end of line";
  unsigned char c = static_cast<unsigned char>(s[pos]);
  if (c < 0x20 || c >= 0x7F) {
    static const char* hex = "0123456789abcdef";
    return std::string("byte 0x") + hex[c >> 4] + hex[c & 15];
  }
  return std::string("'") + static_cast<char>(c) + "'";
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  std::vector<JsonValue> top_level_array() {
    skip_ws();
    if (peek() != '[') fail("expected '[' (a JSON array), found " + describe(s_, pos_));
    std::vector<JsonValue> items;
    ++pos_;
    skip_ws();
    if (peek() == ']') {
      ++pos_;
    } else {
      for (;;) {
        skip_ws();
        std::size_t start = pos_;
        JsonValue v;
        v.type = value(1, &v.text);
        if (v.type != JsonType::string) v.text = std::string(s_.substr(start, pos_ - start));
        items.push_back(std::move(v));
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect(']', "',' or ']' after an array element");
        break;
      }
    }
    skip_ws();
    if (pos_ != s_.size()) fail("expected the end of the text after the array, found " + describe(s_, pos_));
    return items;
  }

  std::map<std::string, JsonValue> top_level_object() {
    skip_ws();
    if (peek() != '{') fail("expected '{' (a JSON object), found " + describe(s_, pos_));
    std::map<std::string, JsonValue> members;
    ++pos_;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
    } else {
      for (;;) {
        skip_ws();
        if (peek() != '"') fail("expected a member name in double quotes, found " + describe(s_, pos_));
        std::size_t name_at = pos_;
        std::string name = string_value();
        skip_ws();
        expect(':', "':' after the member name");
        skip_ws();
        std::size_t start = pos_;
        JsonValue v;
        v.type = value(1, &v.text);
        if (v.type != JsonType::string) v.text = std::string(s_.substr(start, pos_ - start));
        if (members.count(name)) {
          pos_ = name_at;
          fail("duplicate member \"" + name + "\"");
        }
        members.emplace(std::move(name), std::move(v));
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}', "',' or '}' after a member value");
        break;
      }
    }
    skip_ws();
    if (pos_ != s_.size()) fail("expected the end of the line after the object, found " + describe(s_, pos_));
    return members;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const { throw JsonError(pos_ + 1, message); }
  int peek() const { return pos_ < s_.size() ? static_cast<unsigned char>(s_[pos_]) : -1; }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c, const std::string& what) {
    if (peek() != static_cast<unsigned char>(c)) fail("expected " + what + ", found " + describe(s_, pos_));
    ++pos_;
  }
  void literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("expected a JSON value, found " + describe(s_, pos_));
    pos_ += word.size();
  }

  // Parses any value; strings are decoded into *out when out != nullptr.
  JsonType value(int depth, std::string* out) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    switch (peek()) {
      case '"': {
        std::string s = string_value();
        if (out) *out = std::move(s);
        return JsonType::string;
      }
      case '{': container(depth, '}'); return JsonType::object;
      case '[': container(depth, ']'); return JsonType::array;
      case 't': literal("true"); return JsonType::boolean;
      case 'f': literal("false"); return JsonType::boolean;
      case 'n': literal("null"); return JsonType::null;
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) {
          number();
          return JsonType::number;
        }
        fail("expected a JSON value, found " + describe(s_, pos_));
    }
  }

  void container(int depth, char close) {
    ++pos_;
    skip_ws();
    if (peek() == static_cast<unsigned char>(close)) {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      if (close == '}') {
        if (peek() != '"') fail("expected a member name in double quotes, found " + describe(s_, pos_));
        string_value();
        skip_ws();
        expect(':', "':' after the member name");
        skip_ws();
      }
      value(depth + 1, nullptr);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(close, close == '}' ? "',' or '}' in an object" : "',' or ']' in an array");
      return;
    }
  }

  void digits(const char* what) {
    if (!(peek() >= '0' && peek() <= '9')) fail(std::string("expected ") + what + ", found " + describe(s_, pos_));
    while (peek() >= '0' && peek() <= '9') ++pos_;
  }

  void number() {
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') fail("a number must not have a leading zero");
    } else {
      digits("a digit");
    }
    if (peek() == '.') {
      ++pos_;
      digits("a digit after the decimal point");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      digits("a digit in the exponent");
    }
  }

  std::uint32_t hex4() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      int c = peek();
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) fail("expected 4 hex digits after \\u, found " + describe(s_, pos_));
      v = v * 16 + static_cast<std::uint32_t>(d);
      ++pos_;
    }
    return v;
  }

  std::string string_value() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      // Copy the run of plain bytes in one go: most of a document has no escapes.
      std::size_t run = pos_;
      while (run < s_.size() && s_[run] != '"' && s_[run] != '\\' && static_cast<unsigned char>(s_[run]) >= 0x20) ++run;
      out.append(s_.data() + pos_, run - pos_);
      pos_ = run;
      int c = peek();
      if (c < 0) fail("expected '\"' to close the string, found end of line");
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("raw control character " + describe(s_, pos_) + " inside a string (must be escaped)");
      ++pos_;  // backslash
      int e = peek();
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF && s_.substr(pos_, 2) == "\\u") {
            std::size_t save = pos_;
            pos_ += 2;
            std::uint32_t lo = hex4();
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              pos_ = save;  // lone high surrogate; the next escape is decoded on its own
            }
          }
          append_utf8(out, cp);  // a lone surrogate stays as invalid UTF-8 (see header)
          break;
        }
        default:
          --pos_;
          fail("expected an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX) after '\\', found " + describe(s_, pos_));
      }
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

std::map<std::string, JsonValue> parse_json_object(std::string_view text) {
  return Parser(text).top_level_object();
}

std::vector<JsonValue> parse_json_array(std::string_view text) { return Parser(text).top_level_array(); }

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {  // DEL too: valid JSON, and required by TOML (toml_quote)
          static const char* hex = "0123456789abcdef";
          out += std::string("\\u00") + hex[c >> 4] + hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace btm
