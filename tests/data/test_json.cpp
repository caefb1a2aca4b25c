#include <gtest/gtest.h>

#include <string>

#include "btm/data/corpus.hpp"
#include "btm/data/json.hpp"

using btm::JsonError;
using btm::JsonType;
using btm::parse_json_object;

TEST(JsonReader, DecodesEveryEscapeAndSurrogatePairs) {
  auto o = parse_json_object(R"({"text": "a\"b\\c\/d\b\f\n\r\t\u00e9\u20ac\ud83d\ude00 end"})");
  ASSERT_EQ(o.count("text"), 1u);
  EXPECT_EQ(o["text"].type, JsonType::string);
  EXPECT_EQ(o["text"].text, "a\"b\\c/d\b\f\n\r\t\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 end");
  EXPECT_TRUE(btm::is_valid_utf8(o["text"].text));
}

TEST(JsonReader, KeepsRawUtf8AndTopLevelMembersOnly) {
  auto o = parse_json_object("  {\"id\":\"ü/1\",\"domain\":\"d\",\"meta\":{\"text\":\"inner\",\"x\":[1,{\"y\":null}]}}  ");
  EXPECT_EQ(o.size(), 3u);
  EXPECT_EQ(o["id"].text, "ü/1");
  EXPECT_EQ(o["meta"].type, JsonType::object);
  EXPECT_EQ(o["meta"].text, R"({"text":"inner","x":[1,{"y":null}]})");
}

TEST(JsonReader, SkipsValuesOfEveryType) {
  auto o = parse_json_object(
      R"({"a": -0.5e+10, "b": true, "c": false, "d": null, "e": [], "f": {}, "g": [1, "two", [3]], "h": 0, "text": "t"})");
  EXPECT_EQ(o["a"].type, JsonType::number);
  EXPECT_EQ(o["a"].text, "-0.5e+10");
  EXPECT_EQ(o["b"].type, JsonType::boolean);
  EXPECT_EQ(o["c"].text, "false");
  EXPECT_EQ(o["d"].type, JsonType::null);
  EXPECT_EQ(o["e"].type, JsonType::array);
  EXPECT_EQ(o["f"].type, JsonType::object);
  EXPECT_EQ(o["g"].text, R"([1, "two", [3]])");
  EXPECT_EQ(o["h"].text, "0");
  EXPECT_EQ(o["text"].text, "t");
  EXPECT_TRUE(parse_json_object("{}").empty());
}

TEST(JsonReader, LoneSurrogateBecomesInvalidUtf8) {
  auto o = parse_json_object(R"({"text": "x\ud800y"})");
  EXPECT_FALSE(btm::is_valid_utf8(o["text"].text));
  auto p = parse_json_object(R"({"text": "\udc00"})");
  EXPECT_FALSE(btm::is_valid_utf8(p["text"].text));
}

TEST(JsonReader, MalformedInputNamesTheColumnAndWhatWasExpected) {
  struct Case {
    const char* line;
    std::size_t column;
    const char* says;
  };
  const Case cases[] = {
      {"", 1, "expected '{'"},
      {"[1, 2]", 1, "expected '{'"},
      {"{\"text\": \"abc}", 15, "close the string"},
      {"{\"text\": 'abc'}", 10, "expected a JSON value"},
      {"{text: \"abc\"}", 2, "member name in double quotes"},
      {"{\"a\" 1}", 6, "':' after the member name"},
      {"{\"a\": 1,}", 9, "member name"},
      {"{\"a\": 1 \"b\": 2}", 9, "',' or '}'"},
      {"{\"a\": [1 2]}", 10, "',' or ']'"},
      {"{\"a\": 01}", 8, "leading zero"},
      {"{\"a\": 1.}", 9, "digit after the decimal point"},
      {"{\"a\": 1e}", 9, "digit in the exponent"},
      {"{\"a\": -}", 8, "expected a digit"},
      {"{\"a\": tru}", 7, "expected a JSON value"},
      {"{\"a\": \"\\x\"}", 9, "expected an escape"},
      {"{\"a\": \"\\u12G4\"}", 12, "4 hex digits"},
      {"{\"a\": \"tab\there\"}", 11, "raw control character"},
      {"{\"a\": 1} x", 10, "end of the line"},
      {"{\"a\": 1}{}", 9, "end of the line"},
      {"{\"a\": 1, \"a\": 2}", 10, "duplicate member \"a\""},
      {"{\"a\": {\"b\": [}", 14, "expected a JSON value"},
  };
  for (const auto& c : cases) {
    try {
      parse_json_object(c.line);
      ADD_FAILURE() << "accepted: " << c.line;
    } catch (const JsonError& e) {
      EXPECT_EQ(e.column(), c.column) << c.line << " -> " << e.what();
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << c.line << " -> " << e.what();
    }
  }
}

TEST(JsonReader, DeepNestingIsAnErrorNotACrash) {
  std::string deep = "{\"a\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_THROW(parse_json_object(deep), JsonError);
}

TEST(Utf8, AcceptsValidAndRejectsMalformedSequences) {
  EXPECT_TRUE(btm::is_valid_utf8(""));
  EXPECT_TRUE(btm::is_valid_utf8("plain ascii\t\n"));
  EXPECT_TRUE(btm::is_valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(btm::is_valid_utf8("\xC3"));              // truncated
  EXPECT_FALSE(btm::is_valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(btm::is_valid_utf8("\xE0\x80\xAF"));      // overlong, 3 bytes
  EXPECT_FALSE(btm::is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(btm::is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(btm::is_valid_utf8("\x80"));              // lone continuation
  EXPECT_FALSE(btm::is_valid_utf8("latin-1 caf\xE9"));
  EXPECT_TRUE(btm::is_blank(" \t\r\n"));
  EXPECT_FALSE(btm::is_blank(" x "));
}
