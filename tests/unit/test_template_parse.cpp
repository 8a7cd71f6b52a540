// parse_template_text: the structural checks of Packer 1.6.6's template parser (the part that
// `packer validate -syntax-only` runs). Every error must carry file:line:col.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/template.h"

namespace {

using imgbake::ConfigError;
using imgbake::Diagnostic;
using imgbake::Template;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// Joins lines with '\n' so that the line numbers of a template are easy to read off.
std::string Lines(std::initializer_list<const char*> lines) {
  std::string out;
  for (const char* l : lines) {
    out += l;
    out += '\n';
  }
  return out;
}

Template Parse(const std::string& text) { return imgbake::parse_template_text(text, "t.json"); }

// Parses, expecting a ConfigError; returns its diagnostics (and checks that every one of
// them is located: file, line and column, and that the message text says so).
std::vector<Diagnostic> Errors(const std::string& text) {
  try {
    Parse(text);
  } catch (const ConfigError& e) {
    EXPECT_FALSE(e.diagnostics().empty());
    for (const auto& d : e.diagnostics()) {
      EXPECT_EQ(d.file, "t.json") << d.message;
      EXPECT_GT(d.pos.line, 0) << d.message;
      EXPECT_GT(d.pos.col, 0) << d.message;
      EXPECT_FALSE(d.warning) << d.message;
      const std::string where = "t.json:" + std::to_string(d.pos.line) + ":" + std::to_string(d.pos.col) + ": ";
      EXPECT_EQ(d.str().rfind(where, 0), 0u) << d.str();
      EXPECT_THAT(std::string(e.what()), HasSubstr(d.str()));
    }
    return e.diagnostics();
  }
  ADD_FAILURE() << "expected a ConfigError for:\n" << text;
  return {};
}

// The single error of a template that has exactly one problem.
Diagnostic OneError(const std::string& text) {
  auto diags = Errors(text);
  EXPECT_EQ(diags.size(), 1u);
  if (diags.size() > 1)
    for (const auto& d : diags) ADD_FAILURE() << "extra diagnostic: " << d.str();
  return diags.empty() ? Diagnostic{} : diags[0];
}

MATCHER_P2(At, line, col, "at " + std::to_string(line) + ":" + std::to_string(col)) {
  *result_listener << "is at " << arg.pos.line << ":" << arg.pos.col << " (" << arg.message << ")";
  return arg.pos.line == line && arg.pos.col == col;
}

const char* kMinimal = R"({"builders": [{"type": "null"}]})";

// ---------------------------------------------------------------- whole file

TEST(TemplateParse, MinimalTemplate) {
  Template t = Parse(kMinimal);
  EXPECT_EQ(t.path, "t.json");
  EXPECT_EQ(t.raw, kMinimal);
  ASSERT_EQ(t.builders.size(), 1u);
  EXPECT_TRUE(t.variables.empty());
  EXPECT_TRUE(t.provisioners.empty());
  EXPECT_TRUE(t.post_processors.empty());
  EXPECT_FALSE(t.cleanup_provisioner.has_value());
  EXPECT_FALSE(t.imgbake.has_value());
  EXPECT_TRUE(t.warnings.empty());
}

TEST(TemplateParse, TemplateDirIsTheAbsoluteDirectoryOfThePath) {
  Template rel = imgbake::parse_template_text(kMinimal, "t.json");
  EXPECT_EQ(rel.dir, std::filesystem::current_path().lexically_normal().string());
  Template abs = imgbake::parse_template_text(kMinimal, "/srv/images/base/t.json");
  EXPECT_EQ(abs.dir, "/srv/images/base");
  Template sub = imgbake::parse_template_text(kMinimal, "/srv/images/./base/../t.json");
  EXPECT_EQ(sub.dir, "/srv/images");
}

TEST(TemplateParse, DescriptionAndMinVersion) {
  Template t = Parse(R"({"description": "hello", "min_packer_version": "1.6.0", "builders": [{"type": "null"}]})");
  EXPECT_EQ(t.description, "hello");
  EXPECT_EQ(t.min_version, "1.6.0");

  Diagnostic d = OneError(Lines({
      "{",
      "  \"description\": 42,",
      "  \"builders\": [{\"type\": \"null\"}]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("description"));
  EXPECT_THAT(d, At(2, 18));
}

TEST(TemplateParse, InvalidJsonIsAConfigErrorWithThePosition) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"},]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("invalid JSON"));
  EXPECT_THAT(d, At(2, 33));
}

TEST(TemplateParse, DuplicateKeyIsAConfigErrorAtTheSecondKey) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"builders\": []",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("duplicate key"));
  EXPECT_THAT(d, At(3, 3));
}

TEST(TemplateParse, RootMustBeAnObject) {
  Diagnostic d = OneError("\n  [1, 2]");
  EXPECT_THAT(d.message, HasSubstr("object"));
  EXPECT_THAT(d.message, HasSubstr("array"));
  EXPECT_THAT(d, At(2, 3));
}

// ---------------------------------------------------------------- root keys

TEST(TemplateParse, UnknownTopLevelKeySuggestsTheNearMiss) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"provisoners\": []",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("'provisoners'"));
  EXPECT_THAT(d.message, HasSubstr("did you mean 'provisioners'"));
  EXPECT_THAT(d, At(3, 3));
}

TEST(TemplateParse, OtherNearMissesOfRootKeys) {
  EXPECT_THAT(OneError(R"({"builder": [{"type": "null"}]})").message, HasSubstr("did you mean 'builders'"));
  EXPECT_THAT(OneError(R"({"builders": [{"type": "null"}], "post_processors": []})").message,
              HasSubstr("did you mean 'post-processors'"));
  EXPECT_THAT(OneError(R"({"builders": [{"type": "null"}], "variable": {}})").message,
              HasSubstr("did you mean 'variables'"));
}

TEST(TemplateParse, UnrelatedUnknownKeyHasNoSuggestion) {
  Diagnostic d = OneError(R"({"builders": [{"type": "null"}], "hostname": "x"})");
  EXPECT_THAT(d.message, HasSubstr("'hostname'"));
  EXPECT_THAT(d.message, Not(HasSubstr("did you mean")));
  EXPECT_THAT(d, At(1, 34));
}

TEST(TemplateParse, AllProblemsAreReportedAtOnce) {
  auto diags = Errors(Lines({
      "{",
      "  \"bulders\": [],",
      "  \"variables\": {\"n\": 3},",
      "  \"provisoners\": []",
      "}",
  }));
  ASSERT_EQ(diags.size(), 3u);
  EXPECT_THAT(diags, ::testing::Contains(At(2, 3)));
  EXPECT_THAT(diags, ::testing::Contains(At(3, 22)));
  EXPECT_THAT(diags, ::testing::Contains(At(4, 3)));
}

TEST(TemplateParse, CommentKeysAreIgnored) {
  Template t = Parse(Lines({
      "{",
      "  \"_comment\": \"built nightly\",",
      "  \"_\": \"\",",
      "  \"builders\": [{\"type\": \"null\"}]",
      "}",
  }));
  EXPECT_EQ(t.builders.size(), 1u);
  EXPECT_TRUE(t.warnings.empty());
}

TEST(TemplateParse, CommentKeysMustHoldStrings) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"_comment\": [\"a\", \"b\"],",
      "  \"builders\": [{\"type\": \"null\"}]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("_comment"));
  EXPECT_THAT(d, At(2, 15));
  EXPECT_THAT(OneError(R"({"_n": 5, "builders": [{"type": "null"}]})").message, HasSubstr("_n"));
  EXPECT_THAT(OneError(R"({"_n": {}, "builders": [{"type": "null"}]})").message, HasSubstr("_n"));
}

TEST(TemplateParse, PushIsAcceptedAsAnObject) {
  EXPECT_NO_THROW(Parse(R"({"push": {"name": "x"}, "builders": [{"type": "null"}]})"));
  EXPECT_THAT(OneError(R"({"push": "x", "builders": [{"type": "null"}]})").message, HasSubstr("push"));
}

TEST(TemplateParse, ImgbakeSectionIsAccepted) {
  Template t = Parse(R"({"imgbake": {"image": "acme/base", "version": "1.0"}, "builders": [{"type": "null"}]})");
  ASSERT_TRUE(t.imgbake.has_value());
  ASSERT_TRUE(t.imgbake->is_object());
  ASSERT_NE(t.imgbake->find("image"), nullptr);
  EXPECT_EQ(t.imgbake->find("image")->text, "acme/base");
  EXPECT_EQ(t.imgbake->find("version")->text, "1.0");

  Diagnostic d = OneError(R"({"imgbake": true, "builders": [{"type": "null"}]})");
  EXPECT_THAT(d.message, HasSubstr("imgbake"));
  EXPECT_THAT(d, At(1, 13));
}

TEST(TemplateParse, UnknownKeyInImgbakeSectionIsLocated) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"imgbake\": {",
      "    \"imge\": \"acme/base\"",
      "  },",
      "  \"builders\": [{\"type\": \"null\"}]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("'imge'"));
  EXPECT_THAT(d.message, HasSubstr("did you mean 'image'"));
  EXPECT_THAT(d, At(3, 5));
}

// ---------------------------------------------------------------- variables

TEST(TemplateParse, Variables) {
  Template t = Parse(Lines({
      "{",
      "  \"variables\": {",
      "    \"region\": \"eu-west-1\",",
      "    \"password\": null,",
      "    \"empty\": \"\",",
      "    \"tmpl\": \"{{env `HOME`}}\"",
      "  },",
      "  \"builders\": [{\"type\": \"null\"}]",
      "}",
  }));
  ASSERT_EQ(t.variables.size(), 4u);
  EXPECT_EQ(t.variables[0].name, "region");
  EXPECT_EQ(t.variables[0].default_value, "eu-west-1");
  EXPECT_FALSE(t.variables[0].required);
  EXPECT_EQ(t.variables[0].pos.line, 3);
  EXPECT_EQ(t.variables[0].pos.col, 5);

  EXPECT_EQ(t.variables[1].name, "password");
  EXPECT_TRUE(t.variables[1].required);
  EXPECT_EQ(t.variables[1].pos.line, 4);

  EXPECT_EQ(t.variables[2].name, "empty");
  EXPECT_FALSE(t.variables[2].required);  // "" is a default, not "required"
  EXPECT_EQ(t.variables[2].default_value, "");

  EXPECT_EQ(t.variables[3].default_value, "{{env `HOME`}}");  // rendered later, not here

  ASSERT_NE(t.variable("password"), nullptr);
  EXPECT_TRUE(t.variable("password")->required);
  EXPECT_EQ(t.variable("nope"), nullptr);
  for (const auto& v : t.variables) EXPECT_FALSE(v.sensitive);
}

TEST(TemplateParse, NonStringVariableDefaultsAreRejected) {
  auto diags = Errors(Lines({
      "{",
      "  \"variables\": {",
      "    \"count\": 3,",
      "    \"flag\": true,",
      "    \"list\": [\"a\"],",
      "    \"map\": {\"k\": \"v\"},",
      "    \"ok\": \"fine\"",
      "  },",
      "  \"builders\": [{\"type\": \"null\"}]",
      "}",
  }));
  ASSERT_EQ(diags.size(), 4u);
  EXPECT_THAT(diags[0].message, HasSubstr("count"));
  EXPECT_THAT(diags[0], At(3, 14));
  EXPECT_THAT(diags[1].message, HasSubstr("flag"));
  EXPECT_THAT(diags[1], At(4, 13));
  EXPECT_THAT(diags[2].message, HasSubstr("list"));
  EXPECT_THAT(diags[2], At(5, 13));
  EXPECT_THAT(diags[3].message, HasSubstr("map"));
  EXPECT_THAT(diags[3], At(6, 12));
}

TEST(TemplateParse, VariablesMustBeAnObject) {
  Diagnostic d = OneError(R"({"variables": ["a"], "builders": [{"type": "null"}]})");
  EXPECT_THAT(d.message, HasSubstr("variables"));
  EXPECT_THAT(d, At(1, 15));
}

// ---------------------------------------------------------------- sensitive-variables

TEST(TemplateParse, SensitiveVariablesMarkVariables) {
  Template t = Parse(Lines({
      "{",
      "  \"variables\": {\"user\": \"me\", \"password\": null, \"token\": \"t\"},",
      "  \"sensitive-variables\": [\"password\", \"token\"],",
      "  \"builders\": [{\"type\": \"null\"}]",
      "}",
  }));
  EXPECT_THAT(t.sensitive_variables, ElementsAre("password", "token"));
  EXPECT_FALSE(t.variable("user")->sensitive);
  EXPECT_TRUE(t.variable("password")->sensitive);
  EXPECT_TRUE(t.variable("token")->sensitive);
  EXPECT_TRUE(t.warnings.empty());
}

TEST(TemplateParse, SensitiveVariablesBeforeVariablesInTheFileStillApply) {
  Template t = Parse(R"({"sensitive-variables": ["pw"], "variables": {"pw": "x"}, "builders": [{"type": "null"}]})");
  EXPECT_TRUE(t.variable("pw")->sensitive);
}

TEST(TemplateParse, UndefinedSensitiveVariableIsAWarning) {
  Template t = Parse(Lines({
      "{",
      "  \"variables\": {\"pw\": \"x\"},",
      "  \"sensitive-variables\": [\"pw\", \"tokn\"],",
      "  \"builders\": [{\"type\": \"null\"}]",
      "}",
  }));
  EXPECT_TRUE(t.variable("pw")->sensitive);
  ASSERT_EQ(t.warnings.size(), 1u);
  const Diagnostic& w = t.warnings[0];
  EXPECT_TRUE(w.warning);
  EXPECT_EQ(w.file, "t.json");
  EXPECT_EQ(w.pos.line, 3);
  EXPECT_GT(w.pos.col, 0);
  EXPECT_THAT(w.message, HasSubstr("'tokn'"));
  EXPECT_THAT(w.str(), HasSubstr("warning"));
}

TEST(TemplateParse, SensitiveVariablesMustBeStrings) {
  Diagnostic d = OneError(R"({"sensitive-variables": ["a", 1], "builders": [{"type": "null"}]})");
  EXPECT_THAT(d.message, HasSubstr("sensitive-variables"));
  EXPECT_THAT(d, At(1, 31));
  EXPECT_THAT(OneError(R"({"sensitive-variables": "a", "builders": [{"type": "null"}]})").message,
              HasSubstr("sensitive-variables"));
}

// ---------------------------------------------------------------- builders

TEST(TemplateParse, BuildersNameDefaultsToType) {
  Template t = Parse(Lines({
      "{",
      "  \"builders\": [",
      "    {\"type\": \"file\", \"content\": \"x\", \"target\": \"out.txt\"},",
      "    {\"type\": \"file\", \"name\": \"second\", \"content\": \"y\", \"target\": \"o2\"}",
      "  ]",
      "}",
  }));
  ASSERT_EQ(t.builders.size(), 2u);
  EXPECT_EQ(t.builders[0].type, "file");
  EXPECT_EQ(t.builders[0].name, "file");
  EXPECT_EQ(t.builders[0].pos.line, 3);
  EXPECT_EQ(t.builders[0].pos.col, 5);
  EXPECT_EQ(t.builders[1].name, "second");
  EXPECT_EQ(t.builders[1].type, "file");
  // config holds the builder's own options, without type and name, in file order.
  const auto& c = t.builders[1].config;
  ASSERT_TRUE(c.is_object());
  ASSERT_EQ(c.members.size(), 2u);
  EXPECT_EQ(c.members[0].key, "content");
  EXPECT_EQ(c.members[1].key, "target");
  EXPECT_EQ(c.find("type"), nullptr);
  EXPECT_EQ(c.find("name"), nullptr);
}

TEST(TemplateParse, BuilderNameMayHoldTemplateActions) {
  Template t = Parse(R"({"builders": [{"type": "null", "name": "b-{{user `x`}}"}]})");
  EXPECT_EQ(t.builders[0].name, "b-{{user `x`}}");
}

TEST(TemplateParse, BuilderRequiresType) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [",
      "    {\"type\": \"null\"},",
      "    {\"name\": \"x\"}",
      "  ]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("builder 2"));
  EXPECT_THAT(d.message, HasSubstr("type"));
  EXPECT_THAT(d, At(4, 5));

  EXPECT_THAT(OneError(R"({"builders": [{"type": ""}]})").message, HasSubstr("type"));
  Diagnostic arr = OneError(R"({"builders": [{"type": ["null"]}]})");
  EXPECT_THAT(arr.message, HasSubstr("type"));
  EXPECT_THAT(arr, At(1, 24));
}

TEST(TemplateParse, BuildersMustBeObjectsInAnArray) {
  EXPECT_THAT(OneError(R"({"builders": {"type": "null"}})").message, HasSubstr("builders"));
  Diagnostic d = OneError(R"({"builders": [{"type": "null"}, "file"]})");
  EXPECT_THAT(d.message, HasSubstr("builder 2"));
  EXPECT_THAT(d, At(1, 33));
}

TEST(TemplateParse, DuplicateBuilderNamesAreRejectedAtTheSecondBuilder) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [",
      "    {\"type\": \"null\", \"name\": \"base\"},",
      "    {\"type\": \"file\", \"name\": \"other\"},",
      "    {\"type\": \"file\", \"name\": \"base\"}",
      "  ]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("'base'"));
  EXPECT_EQ(d.pos.line, 5);
}

TEST(TemplateParse, TwoUnnamedBuildersOfOneTypeCollide) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [",
      "    {\"type\": \"null\"},",
      "    {\"type\": \"null\"}",
      "  ]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("'null'"));
  EXPECT_EQ(d.pos.line, 4);
}

TEST(TemplateParse, UnnamedBuilderCollidesWithANamedOne) {
  Diagnostic d = OneError(R"({"builders": [{"type": "file", "name": "null"}, {"type": "null"}]})");
  EXPECT_THAT(d.message, HasSubstr("'null'"));
}

// ---------------------------------------------------------------- provisioners

TEST(TemplateParse, ProvisionerGenericKeysAreParsedAndRemoved) {
  Template t = Parse(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\", \"name\": \"a\"}, {\"type\": \"null\", \"name\": \"b\"}],",
      "  \"provisioners\": [",
      "    {",
      "      \"type\": \"shell-local\",",
      "      \"inline\": [\"echo hi\"],",
      "      \"only\": [\"a\", \"b\"],",
      "      \"except\": [\"c\"],",
      "      \"override\": {\"a\": {\"inline\": [\"echo a\"]}},",
      "      \"pause_before\": \"1m30s\",",
      "      \"max_retries\": 3,",
      "      \"timeout\": \"10s\",",
      "      \"environment_vars\": [\"X=1\"]",
      "    }",
      "  ]",
      "}",
  }));
  ASSERT_EQ(t.provisioners.size(), 1u);
  const auto& p = t.provisioners[0];
  EXPECT_EQ(p.type, "shell-local");
  EXPECT_EQ(p.pos.line, 4);
  EXPECT_EQ(p.pos.col, 5);
  EXPECT_THAT(p.only, ElementsAre("a", "b"));
  EXPECT_THAT(p.except, ElementsAre("c"));
  ASSERT_TRUE(p.override.is_object());
  ASSERT_NE(p.override.find("a"), nullptr);
  EXPECT_TRUE(p.override.find("a")->find("inline")->is_array());
  ASSERT_TRUE(p.pause_before.has_value());
  EXPECT_EQ(*p.pause_before, 90s);
  ASSERT_TRUE(p.timeout.has_value());
  EXPECT_EQ(*p.timeout, 10s);
  EXPECT_EQ(p.max_retries, 3);

  ASSERT_TRUE(p.config.is_object());
  ASSERT_EQ(p.config.members.size(), 2u);
  EXPECT_EQ(p.config.members[0].key, "inline");
  EXPECT_EQ(p.config.members[1].key, "environment_vars");
  for (const char* k : {"type", "only", "except", "override", "pause_before", "max_retries", "timeout"})
    EXPECT_EQ(p.config.find(k), nullptr) << k;
}

TEST(TemplateParse, ProvisionerDefaults) {
  Template t = Parse(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "shell-local", "inline": ["x"]}]})");
  ASSERT_EQ(t.provisioners.size(), 1u);
  const auto& p = t.provisioners[0];
  EXPECT_TRUE(p.only.empty());
  EXPECT_TRUE(p.except.empty());
  EXPECT_FALSE(p.pause_before.has_value());
  EXPECT_FALSE(p.timeout.has_value());
  EXPECT_EQ(p.max_retries, 0);
  EXPECT_FALSE(p.override.is_object());
}

TEST(TemplateParse, ProvisionerWeaklyTypedValues) {
  // Packer decodes these weakly: a single string is a one-element list, "2" is 2.
  Template t = Parse(R"({"builders": [{"type": "null"}], "provisioners": [)"
                     R"({"type": "shell-local", "only": "null", "max_retries": "2", "pause_before": "500ms"}]})");
  const auto& p = t.provisioners[0];
  EXPECT_THAT(p.only, ElementsAre("null"));
  EXPECT_EQ(p.max_retries, 2);
  EXPECT_EQ(*p.pause_before, 500ms);
}

TEST(TemplateParse, ProvisionerCacheFalseIsImgbakesOwnKey) {
  Template t =
      Parse(R"({"builders": [{"type": "null"}], "provisioners": [)"
            R"({"type": "shell-local", "inline": ["x"], "cache": false}, {"type": "shell-local", "inline": ["y"]}]})");
  EXPECT_FALSE(t.provisioners[0].cache);
  EXPECT_EQ(t.provisioners[0].config.find("cache"), nullptr);
  EXPECT_TRUE(t.provisioners[1].cache);
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"provisioners\": [{\"type\": \"shell-local\", \"cache\": \"no\"}]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("'cache' must be true or false"));
  EXPECT_THAT(d, At(3, 53));
}

TEST(TemplateParse, ProvisionerRequiresType) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"provisioners\": [",
      "    {\"inline\": [\"echo hi\"]}",
      "  ]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("provisioner 1"));
  EXPECT_THAT(d.message, HasSubstr("type"));
  EXPECT_THAT(d, At(4, 5));
}

TEST(TemplateParse, InvalidPauseBeforeIsRejected) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"provisioners\": [",
      "    {\"type\": \"shell-local\", \"pause_before\": \"10 minutes\"}",
      "  ]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("pause_before"));
  EXPECT_THAT(d.message, HasSubstr("10 minutes"));
  EXPECT_THAT(d, At(4, 45));
}

TEST(TemplateParse, OutOfRangeDurationIsAConfigError) {
  // A number too large for any duration is a located template error, not a crash.
  Diagnostic d = OneError(R"({"builders": [{"type": "null"}], "provisioners": [)"
                          R"({"type": "x", "pause_before": "99999999999999999999"}]})");
  EXPECT_THAT(d.message, HasSubstr("pause_before"));
}

TEST(TemplateParse, InvalidTimeoutIsRejected) {
  Diagnostic d = OneError(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x", "timeout": "5x"}]})");
  EXPECT_THAT(d.message, HasSubstr("timeout"));
  Diagnostic arr = OneError(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x", "timeout": []}]})");
  EXPECT_THAT(arr.message, HasSubstr("timeout"));
}

TEST(TemplateParse, InvalidMaxRetriesIsRejected) {
  for (const char* v : {"-1", "\"abc\"", "1.5", "[]", "\"3x\""}) {
    std::string text =
        std::string(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x", "max_retries": )") + v + "}]}";
    Diagnostic d = OneError(text);
    EXPECT_THAT(d.message, HasSubstr("max_retries")) << v;
    EXPECT_THAT(d, At(1, 80)) << v;
  }
}

TEST(TemplateParse, InvalidOnlyExceptAndOverride) {
  EXPECT_THAT(OneError(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x", "only": {}}]})").message,
              HasSubstr("only"));
  EXPECT_THAT(OneError(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x", "except": [[]]}]})").message,
              HasSubstr("except"));
  EXPECT_THAT(OneError(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x", "override": []}]})").message,
              HasSubstr("override"));
  Diagnostic d =
      OneError(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x", "override": {"null": 1}}]})");
  EXPECT_THAT(d.message, HasSubstr("override"));
  EXPECT_THAT(d.message, HasSubstr("null"));
  EXPECT_THAT(d, At(1, 86));
}

TEST(TemplateParse, ProvisionersMustBeAnArrayOfObjects) {
  EXPECT_THAT(OneError(R"({"builders": [{"type": "null"}], "provisioners": {"type": "x"}})").message,
              HasSubstr("provisioners"));
  Diagnostic d = OneError(R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x"}, "shell"]})");
  EXPECT_THAT(d.message, HasSubstr("provisioner 2"));
  EXPECT_THAT(d, At(1, 66));
}

TEST(TemplateParse, ErrorCleanupProvisioner) {
  Template t = Parse(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"error-cleanup-provisioner\": {",
      "    \"type\": \"shell-local\",",
      "    \"inline\": [\"echo cleanup\"]",
      "  }",
      "}",
  }));
  ASSERT_TRUE(t.cleanup_provisioner.has_value());
  EXPECT_EQ(t.cleanup_provisioner->type, "shell-local");
  EXPECT_EQ(t.cleanup_provisioner->pos.line, 3);
  ASSERT_NE(t.cleanup_provisioner->config.find("inline"), nullptr);
  EXPECT_EQ(t.cleanup_provisioner->config.find("type"), nullptr);
  EXPECT_TRUE(t.provisioners.empty());

  Diagnostic d = OneError(R"({"builders": [{"type": "null"}], "error-cleanup-provisioner": {"inline": []}})");
  EXPECT_THAT(d.message, HasSubstr("error-cleanup-provisioner"));
  EXPECT_THAT(d.message, HasSubstr("type"));
  EXPECT_THAT(OneError(R"({"builders": [{"type": "null"}], "error-cleanup-provisioner": "shell"})").message,
              HasSubstr("error-cleanup-provisioner"));
}

// ---------------------------------------------------------------- post-processors

TEST(TemplateParse, PostProcessorsStringObjectAndChain) {
  Template t = Parse(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"post-processors\": [",
      "    \"compress\",",
      "    {\"type\": \"checksum\", \"checksum_types\": [\"sha256\"], \"keep_input_artifact\": true, "
      "\"only\": [\"null\"]},",
      "    [",
      "      \"manifest\",",
      "      {\"type\": \"shell-local\", \"name\": \"after\", \"inline\": [\"x\"], \"except\": \"other\"}",
      "    ]",
      "  ]",
      "}",
  }));
  ASSERT_EQ(t.post_processors.size(), 3u);

  ASSERT_EQ(t.post_processors[0].size(), 1u);
  const auto& compress = t.post_processors[0][0];
  EXPECT_EQ(compress.type, "compress");
  EXPECT_EQ(compress.name, "compress");
  EXPECT_TRUE(compress.config.is_object());
  EXPECT_TRUE(compress.config.members.empty());
  EXPECT_FALSE(compress.keep_input_artifact.has_value());
  EXPECT_EQ(compress.pos.line, 4);
  EXPECT_EQ(compress.pos.col, 5);

  ASSERT_EQ(t.post_processors[1].size(), 1u);
  const auto& checksum = t.post_processors[1][0];
  EXPECT_EQ(checksum.type, "checksum");
  EXPECT_EQ(checksum.name, "checksum");
  ASSERT_TRUE(checksum.keep_input_artifact.has_value());
  EXPECT_TRUE(*checksum.keep_input_artifact);
  EXPECT_THAT(checksum.only, ElementsAre("null"));
  ASSERT_EQ(checksum.config.members.size(), 1u);
  EXPECT_EQ(checksum.config.members[0].key, "checksum_types");
  EXPECT_EQ(checksum.pos.line, 5);

  ASSERT_EQ(t.post_processors[2].size(), 2u);
  EXPECT_EQ(t.post_processors[2][0].type, "manifest");
  const auto& sl = t.post_processors[2][1];
  EXPECT_EQ(sl.type, "shell-local");
  EXPECT_EQ(sl.name, "after");
  EXPECT_THAT(sl.except, ElementsAre("other"));
  ASSERT_EQ(sl.config.members.size(), 1u);
  EXPECT_EQ(sl.config.members[0].key, "inline");
  EXPECT_EQ(sl.pos.line, 8);
  EXPECT_EQ(sl.pos.col, 7);
}

TEST(TemplateParse, KeepInputArtifactFalseIsKept) {
  Template t = Parse(R"({"builders": [{"type": "null"}], "post-processors": [)"
                     R"({"type": "m", "keep_input_artifact": false}]})");
  ASSERT_TRUE(t.post_processors[0][0].keep_input_artifact.has_value());
  EXPECT_FALSE(*t.post_processors[0][0].keep_input_artifact);
}

TEST(TemplateParse, KeepInputArtifactMustBeABoolean) {
  Diagnostic d =
      OneError(R"({"builders": [{"type": "null"}], "post-processors": [{"type": "m", "keep_input_artifact": [1]}]})");
  EXPECT_THAT(d.message, HasSubstr("keep_input_artifact"));
  EXPECT_THAT(d, At(1, 91));
}

TEST(TemplateParse, ChainInsideAChainIsRejected) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"post-processors\": [",
      "    [\"compress\", [\"manifest\"]]",
      "  ]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("nested"));
  EXPECT_THAT(d, At(4, 18));
}

TEST(TemplateParse, PostProcessorObjectRequiresType) {
  Diagnostic d = OneError(Lines({
      "{",
      "  \"builders\": [{\"type\": \"null\"}],",
      "  \"post-processors\": [",
      "    [\"compress\", {\"output\": \"x\"}]",
      "  ]",
      "}",
  }));
  EXPECT_THAT(d.message, HasSubstr("type"));
  EXPECT_THAT(d, At(4, 18));
}

TEST(TemplateParse, PostProcessorOfAnotherKindIsRejected) {
  Diagnostic d = OneError(R"({"builders": [{"type": "null"}], "post-processors": [42]})");
  EXPECT_THAT(d.message, HasSubstr("post-processor 1"));
  EXPECT_THAT(d, At(1, 54));
  Diagnostic inner = OneError(R"({"builders": [{"type": "null"}], "post-processors": [["a", true]]})");
  EXPECT_THAT(inner, At(1, 60));
  EXPECT_THAT(OneError(R"({"builders": [{"type": "null"}], "post-processors": "compress"})").message,
              HasSubstr("post-processors"));
}

TEST(TemplateParse, EmptyChainIsDropped) {
  Template t = Parse(R"({"builders": [{"type": "null"}], "post-processors": [[], "compress"]})");
  ASSERT_EQ(t.post_processors.size(), 1u);
  EXPECT_EQ(t.post_processors[0][0].type, "compress");
}

// ---------------------------------------------------------------- every error is located

TEST(TemplateParse, EveryErrorCarriesFileLineAndColumn) {
  const char* bad[] = {
      "",
      "[]",
      R"({"builders": [{"type": "null"}], "provisoners": []})",
      R"({"_c": 1, "builders": [{"type": "null"}]})",
      R"({"variables": {"a": 1}, "builders": [{"type": "null"}]})",
      R"({"builders": [{}]})",
      R"({"builders": [{"type": "null"}, {"type": "null"}]})",
      R"({"builders": [{"type": "null", "name": []}]})",
      R"({"builders": [{"type": "null"}], "provisioners": [{"type": "x", "pause_before": "soon"}]})",
      R"({"builders": [{"type": "null"}], "post-processors": [[["x"]]]})",
      R"({"builders": [{"type": "null"}], "post-processors": [{"type": "x", "keep_input_artifact": "y"}]})",
      R"({"builders": [{"type": "null"}], "sensitive-variables": [null]})",
      R"({"builders": [{"type": "null"}], "imgbake": []})",
      R"({"builders": [{"type": "null"}], "description": {}})",
  };
  for (const char* text : bad) {
    SCOPED_TRACE(text);
    Errors(text);
  }
}

}  // namespace
