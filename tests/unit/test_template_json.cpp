// json::parse and json::serialize: the position-keeping JSON reader behind template errors.
// Expected positions are counted by hand (1-based lines, 1-based byte columns).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "imgbake/json.h"

namespace {

using imgbake::json::ParseError;
using imgbake::json::Pos;
using imgbake::json::Value;
using ::testing::AnyOf;
using ::testing::HasSubstr;

// Parses `text`, expecting a failure; returns the error (message and position).
ParseError ParseFailure(std::string_view text) {
  try {
    imgbake::json::parse(text);
  } catch (const ParseError& e) {
    return e;
  }
  ADD_FAILURE() << "expected a ParseError for: " << text;
  return ParseError("", Pos{});
}

std::string ParseString(std::string_view json_literal) {
  Value v = imgbake::json::parse(json_literal);
  EXPECT_TRUE(v.is_string());
  return v.text;
}

// ---------------------------------------------------------------- positions

TEST(JsonParse, PositionsOfValuesAndKeys) {
  const std::string text =
      "{\n"
      "  \"a\": 1,\n"
      "  \"b\": [true, null],\n"
      "  \"c\": {\"d\": \"x\"}\n"
      "}\n";
  Value v = imgbake::json::parse(text);
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.pos.line, 1);
  EXPECT_EQ(v.pos.col, 1);
  ASSERT_EQ(v.members.size(), 3u);

  const auto& a = v.members[0];
  EXPECT_EQ(a.key, "a");
  EXPECT_EQ(a.key_pos.line, 2);
  EXPECT_EQ(a.key_pos.col, 3);
  EXPECT_EQ(a.value.pos.line, 2);
  EXPECT_EQ(a.value.pos.col, 8);

  const auto& b = v.members[1];
  EXPECT_EQ(b.key_pos.line, 3);
  EXPECT_EQ(b.key_pos.col, 3);
  ASSERT_TRUE(b.value.is_array());
  EXPECT_EQ(b.value.pos.col, 8);
  ASSERT_EQ(b.value.items.size(), 2u);
  EXPECT_EQ(b.value.items[0].pos.line, 3);
  EXPECT_EQ(b.value.items[0].pos.col, 9);
  EXPECT_EQ(b.value.items[1].pos.col, 15);

  const auto& c = v.members[2];
  EXPECT_EQ(c.key_pos.line, 4);
  ASSERT_TRUE(c.value.is_object());
  EXPECT_EQ(c.value.pos.col, 8);
  const auto* d = c.value.find_member("d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->key_pos.line, 4);
  EXPECT_EQ(d->key_pos.col, 9);
  EXPECT_EQ(d->value.pos.line, 4);
  EXPECT_EQ(d->value.pos.col, 14);
}

TEST(JsonParse, ColumnsAreCountedInBytes) {
  // "é" is two bytes in UTF-8; a tab is one byte.
  Value v = imgbake::json::parse("{\"\xC3\xA9\": \"x\",\t\"b\": 1}");
  const auto* b = v.find_member("b");
  ASSERT_NE(b, nullptr);
  // { " é(2) " : sp " x " , tab "  -> the key "b" starts at byte 13.
  EXPECT_EQ(b->key_pos.line, 1);
  EXPECT_EQ(b->key_pos.col, 13);
}

TEST(JsonParse, CrLfLineEndingsCountAsOneLine) {
  Value v = imgbake::json::parse("{\r\n  \"a\": 1,\r\n  \"b\": 2\r\n}\r\n");
  const auto* b = v.find_member("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->key_pos.line, 3);
  EXPECT_EQ(b->key_pos.col, 3);
  EXPECT_EQ(b->value.pos.col, 8);
}

TEST(JsonParse, KeysKeepTheirOrder) {
  Value v = imgbake::json::parse(R"({"zeta": 1, "alpha": 2, "mid": 3})");
  ASSERT_EQ(v.members.size(), 3u);
  EXPECT_EQ(v.members[0].key, "zeta");
  EXPECT_EQ(v.members[1].key, "alpha");
  EXPECT_EQ(v.members[2].key, "mid");
}

TEST(JsonParse, ScalarKinds) {
  Value v = imgbake::json::parse(R"([true, false, null, "s", 1, [], {}])");
  ASSERT_EQ(v.items.size(), 7u);
  EXPECT_TRUE(v.items[0].is_bool());
  EXPECT_TRUE(v.items[0].boolean);
  EXPECT_TRUE(v.items[1].is_bool());
  EXPECT_FALSE(v.items[1].boolean);
  EXPECT_TRUE(v.items[2].is_null());
  EXPECT_TRUE(v.items[3].is_string());
  EXPECT_TRUE(v.items[4].is_number());
  EXPECT_TRUE(v.items[5].is_array());
  EXPECT_TRUE(v.items[5].items.empty());
  EXPECT_TRUE(v.items[6].is_object());
  EXPECT_TRUE(v.items[6].members.empty());
  EXPECT_EQ(v.items[0].type_name(), "boolean");
  EXPECT_EQ(v.items[2].type_name(), "null");
  EXPECT_EQ(v.items[3].type_name(), "string");
  EXPECT_EQ(v.items[4].type_name(), "number");
  EXPECT_EQ(v.items[5].type_name(), "array");
  EXPECT_EQ(v.items[6].type_name(), "object");
}

TEST(JsonParse, TopLevelScalarsAndSurroundingWhitespace) {
  Value v = imgbake::json::parse("  \n 42 \n\t");
  EXPECT_TRUE(v.is_number());
  EXPECT_EQ(v.text, "42");
  EXPECT_EQ(v.pos.line, 2);
  EXPECT_EQ(v.pos.col, 2);
}

// ---------------------------------------------------------------- duplicates

TEST(JsonParse, DuplicateKeyAtTopLevelIsRejectedAtTheSecondKey) {
  ParseError e = ParseFailure("{\n  \"a\": 1,\n  \"a\": 2\n}");
  EXPECT_THAT(e.what(), HasSubstr("duplicate key"));
  EXPECT_THAT(e.what(), HasSubstr("\"a\""));
  EXPECT_EQ(e.pos.line, 3);
  EXPECT_EQ(e.pos.col, 3);
}

TEST(JsonParse, DuplicateKeyDeepInsideIsRejected) {
  const std::string text =
      "{\n"
      "  \"builders\": [\n"
      "    {\n"
      "      \"type\": \"file\",\n"
      "      \"type\": \"null\"\n"
      "    }\n"
      "  ]\n"
      "}\n";
  ParseError e = ParseFailure(text);
  EXPECT_THAT(e.what(), HasSubstr("duplicate key \"type\""));
  EXPECT_EQ(e.pos.line, 5);
  EXPECT_EQ(e.pos.col, 7);
}

TEST(JsonParse, DuplicateKeyWrittenWithAnEscapeIsStillADuplicate) {
  // "\u0061" is "a".
  ParseError e = ParseFailure(R"({"a": 1, "\u0061": 2})");
  EXPECT_THAT(e.what(), HasSubstr("duplicate key"));
  EXPECT_EQ(e.pos.line, 1);
  EXPECT_EQ(e.pos.col, 10);
}

TEST(JsonParse, SameKeyInDifferentObjectsIsFine) {
  Value v = imgbake::json::parse(R"({"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 3}, {"x": 4}]})");
  EXPECT_EQ(v.find("a")->find("x")->text, "1");
  EXPECT_EQ(v.find("b")->find("x")->text, "2");
  EXPECT_EQ(v.find("c")->items[1].find("x")->text, "4");
}

// ---------------------------------------------------------------- syntax errors

TEST(JsonParse, TrailingCommaInObject) {
  ParseError e = ParseFailure(R"({"a": 1,})");
  EXPECT_THAT(e.what(), HasSubstr("trailing comma"));
  EXPECT_EQ(e.pos.line, 1);
  EXPECT_EQ(e.pos.col, 9);
}

TEST(JsonParse, TrailingCommaInArray) {
  ParseError e = ParseFailure("[1, 2,]");
  EXPECT_THAT(e.what(), HasSubstr("trailing comma"));
  EXPECT_EQ(e.pos.line, 1);
  EXPECT_EQ(e.pos.col, 7);
}

TEST(JsonParse, TrailingCommaOnItsOwnLine) {
  ParseError e = ParseFailure("{\n  \"a\": [\n    1,\n  ]\n}");
  EXPECT_THAT(e.what(), HasSubstr("trailing comma"));
  EXPECT_EQ(e.pos.line, 4);
  EXPECT_EQ(e.pos.col, 3);
}

TEST(JsonParse, UnterminatedStringPointsAtItsOpeningQuote) {
  ParseError e = ParseFailure("{\"a\": \"abc");
  EXPECT_THAT(e.what(), HasSubstr("unterminated string"));
  EXPECT_EQ(e.pos.line, 1);
  EXPECT_EQ(e.pos.col, 7);
}

TEST(JsonParse, UnterminatedKey) {
  ParseError e = ParseFailure("{\n  \"abc");
  EXPECT_THAT(e.what(), HasSubstr("unterminated string"));
  EXPECT_EQ(e.pos.line, 2);
  EXPECT_EQ(e.pos.col, 3);
}

TEST(JsonParse, RawNewlineInsideStringIsRejected) {
  ParseError e = ParseFailure("{\"a\": \"abc\n\"}");
  EXPECT_THAT(e.what(), HasSubstr("control character"));
  EXPECT_EQ(e.pos.line, 1);
  EXPECT_EQ(e.pos.col, 11);
}

TEST(JsonParse, InvalidEscapeIsRejectedAtTheEscape) {
  ParseError e = ParseFailure(R"(["\q"])");
  EXPECT_THAT(e.what(), HasSubstr("invalid escape"));
  EXPECT_THAT(e.what(), HasSubstr("\\q"));
  EXPECT_EQ(e.pos.line, 1);
  // The backslash is column 3 and the 'q' column 4; either identifies the bad escape.
  EXPECT_THAT(e.pos.col, AnyOf(3, 4));
}

TEST(JsonParse, InvalidUnicodeEscapes) {
  for (const char* text : {R"(["\u12G4"])", R"(["\u12"])", R"(["\u"])", R"(["\u+123"])", R"(["\u-123"])"}) {
    ParseError e = ParseFailure(text);
    EXPECT_THAT(e.what(), HasSubstr("\\u")) << text;
    EXPECT_EQ(e.pos.line, 1) << text;
    // Somewhere on the escape: the backslash (3), the 'u' (4) or the first hex digit (5).
    EXPECT_THAT(e.pos.col, AnyOf(3, 4, 5)) << text;
  }
}

TEST(JsonParse, OtherSyntaxErrorsNameTheProblem) {
  EXPECT_THAT(ParseFailure("").what(), HasSubstr("end of input"));
  EXPECT_THAT(ParseFailure("   \n ").what(), HasSubstr("end of input"));
  EXPECT_THAT(ParseFailure("{").what(), HasSubstr("end of input"));
  EXPECT_THAT(ParseFailure("[1").what(), HasSubstr("end of input"));
  EXPECT_THAT(ParseFailure(R"({"a" 1})").what(), HasSubstr("expected ':'"));
  EXPECT_THAT(ParseFailure(R"({a: 1})").what(), HasSubstr("quoted key"));
  EXPECT_THAT(ParseFailure(R"([1 2])").what(), HasSubstr("expected ',' or ']'"));
  EXPECT_THAT(ParseFailure(R"({"a": 1 "b": 2})").what(), HasSubstr("expected ',' or '}'"));
  EXPECT_THAT(ParseFailure("[tru]").what(), HasSubstr("expected a value"));
  EXPECT_THAT(ParseFailure("[nul]").what(), HasSubstr("expected a value"));
  EXPECT_THAT(ParseFailure("['a']").what(), HasSubstr("expected a value"));

  ParseError trailing = ParseFailure("{} x");
  EXPECT_THAT(trailing.what(), HasSubstr("after the top-level value"));
  EXPECT_EQ(trailing.pos.line, 1);
  EXPECT_EQ(trailing.pos.col, 4);

  ParseError eof = ParseFailure("{\n  \"a\": 1,\n");
  EXPECT_EQ(eof.pos.line, 3);
  EXPECT_EQ(eof.pos.col, 1);
}

TEST(JsonParse, InvalidNumbers) {
  for (const char* text : {"[01]", "[1.]", "[-]", "[.5]", "[+1]", "[1e]", "[1e+]", "[-a]", "[0x10]"}) {
    EXPECT_THROW(imgbake::json::parse(text), ParseError) << text;
  }
}

TEST(JsonParse, DeepNestingIsAnErrorNotACrash) {
  std::string deep(100000, '[');
  EXPECT_THROW(imgbake::json::parse(deep), ParseError);
}

// ---------------------------------------------------------------- strings and numbers

TEST(JsonParse, SimpleEscapes) { EXPECT_EQ(ParseString(R"("a\"b\\c\/d\be\ff\ng\rh\ti")"), "a\"b\\c/d\be\ff\ng\rh\ti"); }

TEST(JsonParse, UnicodeEscapes) {
  EXPECT_EQ(ParseString(R"("\u0041")"), "A");
  EXPECT_EQ(ParseString(R"("\u00e9")"), "\xC3\xA9");         // é
  EXPECT_EQ(ParseString(R"("\u00E9")"), "\xC3\xA9");         // upper-case hex
  EXPECT_EQ(ParseString(R"("\u20ac")"), "\xE2\x82\xAC");     // €
  EXPECT_EQ(ParseString(R"("\u003c\u003e\u0026")"), "<>&");  // as Go's encoder writes them
  EXPECT_EQ(ParseString(R"("x\u0000y")"), std::string("x\0y", 3));
}

TEST(JsonParse, SurrogatePairsBecomeOneCodePoint) {
  EXPECT_EQ(ParseString(R"("\ud83d\ude00")"), "\xF0\x9F\x98\x80");  // U+1F600
  EXPECT_EQ(ParseString(R"("\uD834\uDD1E")"), "\xF0\x9D\x84\x9E");  // U+1D11E
  EXPECT_EQ(ParseString(R"("a\ud83d\ude00b")"),
            "a\xF0\x9F\x98\x80"
            "b");
}

// A lone surrogate is not a character. Go's encoding/json (and so Packer) decodes it as
// U+FFFD; rejecting it would also be acceptable. Emitting the surrogate's bytes would put
// invalid UTF-8 (CESU) into the template's strings.
TEST(JsonParse, LoneSurrogatesNeverProduceInvalidUtf8) {
  const std::string replacement = "\xEF\xBF\xBD";
  for (const char* text : {R"("\ud83d")", R"("\ude00")", R"("\ud83dx")"}) {
    try {
      std::string s = ParseString(text);
      EXPECT_EQ(s.substr(0, 3), replacement) << text;
      EXPECT_EQ(s.find("\xED"), std::string::npos) << "surrogate bytes leaked for " << text;
    } catch (const ParseError&) {
      // Rejecting it is fine too.
    }
  }
}

TEST(JsonParse, Utf8IsKeptAsIs) {
  EXPECT_EQ(ParseString("\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\""),
            "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80");
}

TEST(JsonParse, NumbersAreKeptAsWritten) {
  Value v = imgbake::json::parse("[1.50, -0, 1e10, 2E-3, 0.0, 12345678901234567890123, -7, 3.0e+2]");
  ASSERT_EQ(v.items.size(), 8u);
  EXPECT_EQ(v.items[0].text, "1.50");
  EXPECT_EQ(v.items[1].text, "-0");
  EXPECT_EQ(v.items[2].text, "1e10");
  EXPECT_EQ(v.items[3].text, "2E-3");
  EXPECT_EQ(v.items[4].text, "0.0");
  EXPECT_EQ(v.items[5].text, "12345678901234567890123");
  EXPECT_EQ(v.items[6].text, "-7");
  EXPECT_EQ(v.items[7].text, "3.0e+2");
  for (const auto& i : v.items) EXPECT_TRUE(i.is_number());
}

TEST(JsonParse, ByteOrderMarkIsTolerated) {
  Value v = imgbake::json::parse("\xEF\xBB\xBF{\"a\": 1}");
  ASSERT_TRUE(v.is_object());
  ASSERT_NE(v.find("a"), nullptr);
  EXPECT_EQ(v.find("a")->text, "1");
  // The mark is invisible in an editor: the key is the second character a user sees.
  EXPECT_EQ(v.members[0].key_pos.line, 1);
  EXPECT_EQ(v.members[0].key_pos.col, 2);
}

TEST(JsonParse, ByteOrderMarkWithAnErrorStillReportsAPosition) {
  ParseError e = ParseFailure("\xEF\xBB\xBF{\n  \"a\": 1,\n  \"a\": 2\n}");
  EXPECT_THAT(e.what(), HasSubstr("duplicate key"));
  EXPECT_EQ(e.pos.line, 3);
  EXPECT_EQ(e.pos.col, 3);
}

// ---------------------------------------------------------------- Value helpers

TEST(JsonValue, FindAndErase) {
  Value v = imgbake::json::parse(R"({"a": 1, "b": 2, "c": 3})");
  ASSERT_NE(v.find("b"), nullptr);
  EXPECT_EQ(v.find("b")->text, "2");
  EXPECT_EQ(v.find("zz"), nullptr);
  EXPECT_TRUE(v.erase("b"));
  EXPECT_FALSE(v.erase("b"));
  ASSERT_EQ(v.members.size(), 2u);
  EXPECT_EQ(v.members[0].key, "a");
  EXPECT_EQ(v.members[1].key, "c");

  Value arr = imgbake::json::parse("[1]");
  EXPECT_EQ(arr.find("a"), nullptr);
  EXPECT_EQ(arr.find_member("a"), nullptr);
}

// ---------------------------------------------------------------- serialize

TEST(JsonSerialize, TwoSpaceIndentationAndOriginalKeyOrder) {
  Value v = imgbake::json::parse(R"({"b":1,"a":[1,{"c":null}],"e":{},"f":[],"g":true,"h":"s"})");
  const std::string expected =
      "{\n"
      "  \"b\": 1,\n"
      "  \"a\": [\n"
      "    1,\n"
      "    {\n"
      "      \"c\": null\n"
      "    }\n"
      "  ],\n"
      "  \"e\": {},\n"
      "  \"f\": [],\n"
      "  \"g\": true,\n"
      "  \"h\": \"s\"\n"
      "}\n";
  EXPECT_EQ(imgbake::json::serialize(v), expected);
}

TEST(JsonSerialize, OtherIndentWidth) {
  Value v = imgbake::json::parse(R"({"a":[1]})");
  EXPECT_EQ(imgbake::json::serialize(v, 4), "{\n    \"a\": [\n        1\n    ]\n}\n");
}

TEST(JsonSerialize, NumbersAsWritten) {
  Value v = imgbake::json::parse("[1.50, 1e10, -0, 12345678901234567890123]");
  EXPECT_EQ(imgbake::json::serialize(v), "[\n  1.50,\n  1e10,\n  -0,\n  12345678901234567890123\n]\n");
}

TEST(JsonSerialize, HtmlCharactersAndUtf8AreKept) {
  Value v = imgbake::json::parse(R"({"html": "<b>&amp;</b>", "u": "\u00e9\u20ac", "raw": "h)"
                                 "\xC3\xA9"
                                 R"(llo"})");
  const std::string out = imgbake::json::serialize(v);
  EXPECT_THAT(out, HasSubstr("\"html\": \"<b>&amp;</b>\""));
  EXPECT_THAT(out, HasSubstr("\"u\": \"\xC3\xA9\xE2\x82\xAC\""));
  EXPECT_THAT(out, HasSubstr("\"raw\": \"h\xC3\xA9llo\""));
  EXPECT_EQ(out.find("\\u003c"), std::string::npos);
  EXPECT_EQ(out.find("\\u0026"), std::string::npos);
  EXPECT_EQ(out.find("\\u00e9"), std::string::npos);
}

TEST(JsonSerialize, EscapesWhatJsonRequires) {
  Value v = imgbake::json::parse(R"(["q\"b\\s\/n\nt\tr\rx\u0001y\u001f"])");
  EXPECT_EQ(imgbake::json::serialize(v), "[\n  \"q\\\"b\\\\s/n\\nt\\tr\\rx\\u0001y\\u001f\"\n]\n");
}

TEST(JsonSerialize, Quote) {
  EXPECT_EQ(imgbake::json::quote(""), "\"\"");
  EXPECT_EQ(imgbake::json::quote("plain"), "\"plain\"");
  EXPECT_EQ(imgbake::json::quote("a\"b"), "\"a\\\"b\"");
  EXPECT_EQ(imgbake::json::quote("back\\slash"), "\"back\\\\slash\"");
  EXPECT_EQ(imgbake::json::quote("line\nbreak"), "\"line\\nbreak\"");
  EXPECT_EQ(imgbake::json::quote(std::string("nul\0", 4)), "\"nul\\u0000\"");
  EXPECT_EQ(imgbake::json::quote("\x1b[0m"), "\"\\u001b[0m\"");
  EXPECT_EQ(imgbake::json::quote("<&>"), "\"<&>\"");
}

TEST(JsonSerialize, TopLevelScalars) {
  EXPECT_EQ(imgbake::json::serialize(imgbake::json::parse("\"x\"")), "\"x\"\n");
  EXPECT_EQ(imgbake::json::serialize(imgbake::json::parse("null")), "null\n");
  EXPECT_EQ(imgbake::json::serialize(imgbake::json::parse("{}")), "{}\n");
  EXPECT_EQ(imgbake::json::serialize(imgbake::json::parse("[]")), "[]\n");
}

TEST(JsonSerialize, RoundTripKeepsEveryValue) {
  const std::string text = R"({"s": "a\"b\n\u00e9<>&", "n": -1.50e3, "t": true, "f": false, "z": null,)"
                           R"( "arr": [[], {}, [1, [2, [3]]]], "obj": {"k": {"k2": "v"}}})";
  Value v = imgbake::json::parse(text);
  Value again = imgbake::json::parse(imgbake::json::serialize(v));
  EXPECT_EQ(again.find("s")->text, "a\"b\n\xC3\xA9<>&");
  EXPECT_EQ(again.find("n")->text, "-1.50e3");
  EXPECT_TRUE(again.find("t")->boolean);
  EXPECT_FALSE(again.find("f")->boolean);
  EXPECT_TRUE(again.find("z")->is_null());
  EXPECT_EQ(again.find("arr")->items[2].items[1].items[1].items[0].text, "3");
  EXPECT_EQ(again.find("obj")->find("k")->find("k2")->text, "v");
}

TEST(JsonSerialize, Idempotent) {
  const char* docs[] = {
      R"({"variables": {"a": null, "b": "x"}, "builders": [{"type": "file", "content": "<&>"}]})",
      R"([1.0, "\ud83d\ude00", {"z": {}, "a": []}, "tab\there", "\u0007"])",
      "\xEF\xBB\xBF{\"bom\": true}",
      "  \"scalar\"  ",
  };
  for (const char* doc : docs) {
    const std::string once = imgbake::json::serialize(imgbake::json::parse(doc));
    const std::string twice = imgbake::json::serialize(imgbake::json::parse(once));
    EXPECT_EQ(once, twice) << doc;
  }
}

}  // namespace
