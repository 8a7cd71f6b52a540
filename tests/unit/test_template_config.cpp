// ConfigReader: typed, position-aware access to a component's options, collecting errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/config.h"
#include "imgbake/error.h"
#include "imgbake/json.h"

namespace {

using imgbake::ConfigReader;
using imgbake::Diagnostic;
using imgbake::Diagnostics;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using namespace std::chrono_literals;

class ConfigReaderTest : public ::testing::Test {
 protected:
  ConfigReader& Reader(const std::string& text) {
    value_ = imgbake::json::parse(text);
    reader_ = std::make_unique<ConfigReader>(value_, "t.json", "builder 'web'", diags_);
    return *reader_;
  }

  std::vector<Diagnostic> Errors() const { return diags_.errors(); }

  imgbake::json::Value value_;
  Diagnostics diags_;
  std::unique_ptr<ConfigReader> reader_;
};

MATCHER_P2(At, line, col, "at " + std::to_string(line) + ":" + std::to_string(col)) {
  *result_listener << "is at " << arg.pos.line << ":" << arg.pos.col << " (" << arg.message << ")";
  return arg.pos.line == line && arg.pos.col == col;
}

// ---------------------------------------------------------------- strings

TEST_F(ConfigReaderTest, Strings) {
  auto& r = Reader(R"({"a": "text", "n": null, "e": ""})");
  EXPECT_EQ(r.string("a"), "text");
  EXPECT_EQ(r.string("missing", "def"), "def");
  EXPECT_EQ(r.string("missing"), "");
  EXPECT_EQ(r.string("n", "def"), "def");
  EXPECT_EQ(r.string("e", "def"), "");
  EXPECT_EQ(r.optional_string("a"), "text");
  EXPECT_FALSE(r.optional_string("missing").has_value());
  EXPECT_FALSE(r.optional_string("n").has_value());
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(ConfigReaderTest, WeakStringFromNumber) {
  // Packer decodes weakly: "disk_size": 10240 is read as "10240".
  auto& r = Reader(R"({"size": 10240, "neg": -3})");
  EXPECT_EQ(r.string("size"), "10240");
  EXPECT_EQ(r.string("neg"), "-3");
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(ConfigReaderTest, StringOfTheWrongTypeIsAnErrorAtTheValue) {
  auto& r = Reader("{\n  \"a\": [\"x\"],\n  \"b\": {}\n}");
  EXPECT_EQ(r.string("a", "def"), "def");
  EXPECT_FALSE(r.optional_string("b").has_value());
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_EQ(errs[0].file, "t.json");
  EXPECT_THAT(errs[0], At(2, 8));
  EXPECT_THAT(errs[0].message, HasSubstr("builder 'web'"));
  EXPECT_THAT(errs[0].message, HasSubstr("'a'"));
  EXPECT_THAT(errs[0].message, HasSubstr("string"));
  EXPECT_THAT(errs[0].message, HasSubstr("array"));
  EXPECT_THAT(errs[1], At(3, 8));
}

// ---------------------------------------------------------------- booleans

TEST_F(ConfigReaderTest, Booleans) {
  auto& r = Reader(R"({"t": true, "f": false, "st": "true", "s1": "1", "sf": "false", "s0": "0", "n": null})");
  EXPECT_TRUE(r.boolean("t", false));
  EXPECT_FALSE(r.boolean("f", true));
  EXPECT_TRUE(r.boolean("st", false));
  EXPECT_TRUE(r.boolean("s1", false));
  EXPECT_FALSE(r.boolean("sf", true));
  EXPECT_FALSE(r.boolean("s0", true));
  EXPECT_TRUE(r.boolean("missing", true));
  EXPECT_FALSE(r.boolean("missing", false));
  EXPECT_TRUE(r.boolean("n", true));
  EXPECT_FALSE(r.optional_boolean("missing").has_value());
  EXPECT_EQ(r.optional_boolean("t"), true);
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(ConfigReaderTest, BooleanOfTheWrongTypeIsAnError) {
  auto& r = Reader(R"({"headless": "yes", "x": [true]})");
  EXPECT_TRUE(r.boolean("headless", true));  // the default is kept
  EXPECT_FALSE(r.optional_boolean("x").has_value());
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_THAT(errs[0].message, HasSubstr("'headless'"));
  EXPECT_THAT(errs[0].message, HasSubstr("\"yes\""));
  EXPECT_THAT(errs[0], At(1, 14));
}

// ---------------------------------------------------------------- integers

TEST_F(ConfigReaderTest, Integers) {
  auto& r = Reader(R"({"n": 42, "s": "7", "neg": -5, "big": 8589934592})");
  EXPECT_EQ(r.integer("n", 0), 42);
  EXPECT_EQ(r.integer("s", 0), 7);
  EXPECT_EQ(r.integer("neg", 0), -5);
  EXPECT_EQ(r.integer("big", 0), 8589934592LL);
  EXPECT_EQ(r.integer("missing", 9), 9);
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(ConfigReaderTest, IntegerErrors) {
  auto& r = Reader(R"({"a": 1.5, "b": "abc", "c": "12x", "d": true})");
  EXPECT_EQ(r.integer("a", -1), -1);
  EXPECT_EQ(r.integer("b", -1), -1);
  EXPECT_EQ(r.integer("c", -1), -1);
  EXPECT_EQ(r.integer("d", -1), -1);
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 4u);
  EXPECT_THAT(errs[0].message, HasSubstr("whole number"));
  EXPECT_THAT(errs[0], At(1, 7));
}

TEST_F(ConfigReaderTest, IntegerLists) {
  auto& r = Reader(R"({"ports": [22, "80"], "one": 5, "bad": [1, "x"]})");
  EXPECT_THAT(r.integers("ports", {}), ElementsAre(22, 80));
  EXPECT_THAT(r.integers("one", {}), ElementsAre(5));
  EXPECT_THAT(r.integers("missing", {1, 2}), ElementsAre(1, 2));
  EXPECT_THAT(Errors(), IsEmpty());
  r.integers("bad", {});
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(1, 44));
}

// ---------------------------------------------------------------- string lists and maps

TEST_F(ConfigReaderTest, StringListsAcceptASingleString) {
  auto& r = Reader(R"({"one": "echo hi", "many": ["a", "b"], "nums": [1, "x"], "empty": [], "n": null})");
  EXPECT_THAT(r.strings("one"), ElementsAre("echo hi"));
  EXPECT_THAT(r.strings("many"), ElementsAre("a", "b"));
  EXPECT_THAT(r.strings("nums"), ElementsAre("1", "x"));
  EXPECT_THAT(r.strings("empty"), IsEmpty());
  EXPECT_THAT(r.strings("n"), IsEmpty());
  EXPECT_THAT(r.strings("missing"), IsEmpty());
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(ConfigReaderTest, StringListErrorsPointAtTheBadItem) {
  auto& r = Reader("{\n  \"inline\": [\"ok\", {\"x\": 1}, \"fine\"],\n  \"obj\": {}\n}");
  EXPECT_THAT(r.strings("inline"), ElementsAre("ok", "fine"));
  EXPECT_THAT(r.strings("obj"), IsEmpty());
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_THAT(errs[0].message, HasSubstr("inline"));
  EXPECT_THAT(errs[0], At(2, 20));
  EXPECT_THAT(errs[1].message, HasSubstr("obj"));
  EXPECT_THAT(errs[1], At(3, 10));
}

TEST_F(ConfigReaderTest, StringMaps) {
  auto& r = Reader(R"({"env": {"A": "1", "B": 2, "C": true}, "bad": {"X": []}, "notmap": "s"})");
  EXPECT_EQ(r.string_map("env"), (std::map<std::string, std::string>{{"A", "1"}, {"B", "2"}, {"C", "true"}}));
  EXPECT_TRUE(r.string_map("missing").empty());
  EXPECT_THAT(Errors(), IsEmpty());
  r.string_map("bad");
  r.string_map("notmap");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_THAT(errs[0].message, HasSubstr("X"));
  EXPECT_THAT(errs[1].message, HasSubstr("notmap"));
}

// ---------------------------------------------------------------- durations

TEST_F(ConfigReaderTest, Durations) {
  auto& r = Reader(R"({"a": "1m30s", "b": "500ms", "c": 30, "d": "2h", "n": null})");
  EXPECT_EQ(r.duration("a"), std::optional<std::chrono::milliseconds>(90s));
  EXPECT_EQ(r.duration("b"), std::optional<std::chrono::milliseconds>(500ms));
  EXPECT_EQ(r.duration("c"), std::optional<std::chrono::milliseconds>(30s));
  EXPECT_EQ(r.duration("d"), std::optional<std::chrono::milliseconds>(2h));
  EXPECT_FALSE(r.duration("n").has_value());
  EXPECT_FALSE(r.duration("missing").has_value());
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(ConfigReaderTest, DurationErrors) {
  auto& r = Reader("{\n  \"boot_wait\": \"5x\",\n  \"ssh_timeout\": [],\n  \"t\": \"10 minutes\"\n}");
  EXPECT_FALSE(r.duration("boot_wait").has_value());
  EXPECT_FALSE(r.duration("ssh_timeout").has_value());
  EXPECT_FALSE(r.duration("t").has_value());
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 3u);
  EXPECT_THAT(errs[0].message, HasSubstr("builder 'web'"));
  EXPECT_THAT(errs[0].message, HasSubstr("'boot_wait'"));
  EXPECT_THAT(errs[0].message, HasSubstr("\"5x\""));
  EXPECT_THAT(errs[0].message, HasSubstr("duration"));
  EXPECT_THAT(errs[0], At(2, 16));
  EXPECT_THAT(errs[1].message, HasSubstr("'ssh_timeout'"));
  EXPECT_THAT(errs[1], At(3, 18));
  EXPECT_THAT(errs[2].message, HasSubstr("10 minutes"));
}

// ---------------------------------------------------------------- unknown options

TEST_F(ConfigReaderTest, UnknownOptionWithSuggestionAtTheKey) {
  auto& r = Reader(
      "{\n"
      "  \"iso_url\": \"http://x\",\n"
      "  \"output_directroy\": \"out\",\n"
      "  \"frobnicate\": true\n"
      "}");
  r.string("iso_url");
  r.string("output_directory");
  r.boolean("headless", false);
  r.finish();
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_THAT(errs[0].message, HasSubstr("builder 'web'"));
  EXPECT_THAT(errs[0].message, HasSubstr("unknown option 'output_directroy'"));
  EXPECT_THAT(errs[0].message, HasSubstr("did you mean 'output_directory'"));
  EXPECT_THAT(errs[0], At(3, 3));
  EXPECT_THAT(errs[1].message, HasSubstr("'frobnicate'"));
  EXPECT_THAT(errs[1].message, Not(HasSubstr("did you mean")));
  EXPECT_THAT(errs[1], At(4, 3));
  EXPECT_EQ(errs[0].str(), "t.json:3:3: " + errs[0].message);
}

TEST_F(ConfigReaderTest, KeysStartingWithUnderscoreAreIgnored) {
  auto& r = Reader(R"({"_comment": "note", "_x": [1, 2], "a": "b"})");
  r.string("a");
  r.finish();
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(ConfigReaderTest, AcceptedKeysAreNotUnknown) {
  auto& r = Reader(R"({"vnc_bind_address": "0.0.0.0", "qemu_binary": "q"})");
  r.accept({"vnc_bind_address", "qemu_binary"});
  r.finish();
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(ConfigReaderTest, RawMarksKnownButHasDoesNot) {
  auto& r = Reader(R"({"a": {"deep": 1}, "b": 2})");
  const auto* a = r.raw("a");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->is_object());
  EXPECT_EQ(r.raw("missing"), nullptr);
  EXPECT_TRUE(r.has("b"));
  EXPECT_FALSE(r.has("missing"));
  r.finish();
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0].message, HasSubstr("'b'"));
}

// ---------------------------------------------------------------- require, error, warn

TEST_F(ConfigReaderTest, Require) {
  auto& r = Reader("{\n  \"present\": \"x\",\n  \"empty\": \"\",\n  \"nul\": null\n}");
  r.require("present");
  EXPECT_THAT(Errors(), IsEmpty());
  r.require("empty");
  r.require("nul");
  r.require("absent");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 3u);
  EXPECT_THAT(errs[0].message, HasSubstr("'empty' is required"));
  EXPECT_THAT(errs[1].message, HasSubstr("'nul' is required"));
  EXPECT_THAT(errs[2].message, HasSubstr("'absent' is required"));
  for (const auto& e : errs) {
    EXPECT_GT(e.pos.line, 0);
    EXPECT_GT(e.pos.col, 0);
  }
  r.finish();  // required keys count as known
  EXPECT_EQ(Errors().size(), 3u);
}

TEST_F(ConfigReaderTest, ErrorAndWarnPositions) {
  auto& r = Reader("{\n  \"cpus\": 99\n}");
  r.error("cpus", "too many CPUs");
  r.error("general problem");
  r.warn("cpus", "deprecated");
  r.error("absent", "about a key that is not there");
  const auto& items = diags_.items();
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[0].message, "builder 'web': too many CPUs");
  EXPECT_THAT(items[0], At(2, 11));
  EXPECT_THAT(items[1], At(1, 1));
  EXPECT_TRUE(items[2].warning);
  EXPECT_THAT(items[2], At(2, 11));
  EXPECT_THAT(items[3], At(1, 1));  // falls back to the object
  EXPECT_EQ(diags_.warnings().size(), 1u);
  EXPECT_EQ(diags_.errors().size(), 3u);
  EXPECT_TRUE(diags_.has_errors());
}

TEST_F(ConfigReaderTest, AccessorsAndPositions) {
  auto& r = Reader("\n  {\"a\": 1}");
  EXPECT_EQ(r.file(), "t.json");
  EXPECT_EQ(r.label(), "builder 'web'");
  EXPECT_EQ(r.pos().line, 2);
  EXPECT_EQ(r.pos().col, 3);
  EXPECT_EQ(r.pos_of("a").col, 9);
  EXPECT_EQ(r.pos_of("zz").col, 3);
}

TEST_F(ConfigReaderTest, NonObjectOptionsAreAnError) {
  Reader("[1, 2]");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0].message, HasSubstr("object"));
  EXPECT_THAT(errs[0], At(1, 1));
}

TEST_F(ConfigReaderTest, NullOptionsAreAnEmptyObject) {
  auto& r = Reader("null");
  EXPECT_EQ(r.string("a", "d"), "d");
  r.finish();
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST(Diagnostics, ThrowIfErrorsCarriesEveryError) {
  Diagnostics d;
  d.warn("t.json", {1, 2}, "just a warning");
  EXPECT_NO_THROW(d.throw_if_errors());
  d.error("t.json", {3, 4}, "first");
  d.error("t.json", {5, 6}, "second");
  try {
    d.throw_if_errors();
    ADD_FAILURE() << "expected ConfigError";
  } catch (const imgbake::ConfigError& e) {
    ASSERT_EQ(e.diagnostics().size(), 2u);
    EXPECT_EQ(std::string(e.what()), "t.json:3:4: first\nt.json:5:6: second");
  }
}

TEST(Diagnostics, StrLeavesOutUnknownParts) {
  EXPECT_EQ((Diagnostic{"f.json", {2, 5}, "m", false}).str(), "f.json:2:5: m");
  EXPECT_EQ((Diagnostic{"f.json", {2, 0}, "m", false}).str(), "f.json:2: m");
  EXPECT_EQ((Diagnostic{"f.json", {0, 0}, "m", false}).str(), "f.json: m");
  EXPECT_EQ((Diagnostic{"", {0, 0}, "m", false}).str(), "m");
  EXPECT_EQ((Diagnostic{"f.json", {1, 1}, "m", true}).str(), "f.json:1:1: warning: m");
}

}  // namespace
