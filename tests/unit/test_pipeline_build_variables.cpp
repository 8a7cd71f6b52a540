// resolve_variables: where a variable's value comes from (defaults < -var-file files in order <
// -var flags in order; {{env}} and references to other variables in defaults), what is reported
// when a value is missing or wrong, and which values the Masker hides.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "imgbake/build.h"
#include "imgbake/error.h"
#include "pipeline_build_fixture.h"

namespace {

using imgbake::BuildOptions;
using imgbake::Diagnostics;
using imgbake::Variables;
using pipeline_build_fixture::PipelineBuildTest;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class BuildVariablesTest : public PipelineBuildTest {
 protected:
  Variables Resolve(const std::string& text, const BuildOptions& opts, bool require_all = true) {
    imgbake::Template t = Parse(text);
    diags_ = Diagnostics();
    return imgbake::resolve_variables(t, opts, diags_, require_all);
  }
  std::vector<std::string> Messages(bool errors) const {
    std::vector<std::string> out;
    for (const auto& d : errors ? diags_.errors() : diags_.warnings()) out.push_back(d.str());
    return out;
  }
  Diagnostics diags_;
};

constexpr const char* kFourVariables = R"({
  "variables": {"a": "default-a", "b": "default-b", "c": "default-c", "d": "default-d"},
  "builders": [{"type": "null"}]
})";

TEST_F(BuildVariablesTest, DefaultsThenVarFilesInOrderThenVarFlagsInOrder) {
  BuildOptions opts;
  opts.var_files = {WriteFile("one.json", R"({"b": "file-one-b", "c": "file-one-c", "d": "file-one-d"})"),
                    WriteFile("two.json", R"({"c": "file-two-c", "d": "file-two-d"})")};
  opts.vars = {{"d", "flag-d-first"}, {"d", "flag-d-last"}};
  Variables v = Resolve(kFourVariables, opts);
  EXPECT_THAT(Messages(true), IsEmpty());
  EXPECT_EQ(v.values["a"], "default-a");
  EXPECT_EQ(v.values["b"], "file-one-b");
  EXPECT_EQ(v.values["c"], "file-two-c");   // the later file wins
  EXPECT_EQ(v.values["d"], "flag-d-last");  // -var beats every file; the last -var wins
}

TEST_F(BuildVariablesTest, VarFileNumbersAndBooleansBecomeStrings) {
  BuildOptions opts;
  opts.var_files = {WriteFile("vars.json", R"({"a": 42, "b": true, "c": false})")};
  Variables v = Resolve(kFourVariables, opts);
  EXPECT_THAT(Messages(true), IsEmpty());
  EXPECT_EQ(v.values["a"], "42");
  EXPECT_EQ(v.values["b"], "true");
  EXPECT_EQ(v.values["c"], "false");
}

TEST_F(BuildVariablesTest, DefaultsReadTheEnvironmentAndTheFinalValuesOfOtherVariables) {
  ::setenv("IMGBAKE_TEST_BUILD_VAR", "from-env", 1);
  // "url" is declared before "host" and still sees host's final value (the -var).
  const char* text = R"({
    "variables": {"url": "https://{{user `host`}}/{{user `path`}}", "host": "default-host",
                  "path": "{{env `IMGBAKE_TEST_BUILD_VAR`}}", "overridden": "{{env `IMGBAKE_TEST_BUILD_VAR`}}"},
    "builders": [{"type": "null"}]
  })";
  BuildOptions opts;
  opts.vars = {{"host", "flag-host"}, {"overridden", "flag"}};
  Variables v = Resolve(text, opts);
  ::unsetenv("IMGBAKE_TEST_BUILD_VAR");
  EXPECT_THAT(Messages(true), IsEmpty());
  EXPECT_EQ(v.values["path"], "from-env");
  EXPECT_EQ(v.values["url"], "https://flag-host/from-env");
  EXPECT_EQ(v.values["overridden"], "flag");
}

TEST_F(BuildVariablesTest, AnUnsetEnvironmentVariableIsEmpty) {
  ::unsetenv("IMGBAKE_TEST_BUILD_VAR_UNSET");
  Variables v = Resolve(R"({"variables": {"x": "[{{env `IMGBAKE_TEST_BUILD_VAR_UNSET`}}]"},
                            "builders": [{"type": "null"}]})",
                        BuildOptions());
  EXPECT_THAT(Messages(true), IsEmpty());
  EXPECT_EQ(v.values["x"], "[]");
}

constexpr const char* kRequired = R"({
  "variables": {"password": null, "region": "eu"},
  "builders": [{"type": "null"}]
})";

TEST_F(BuildVariablesTest, AMissingRequiredVariableIsAnErrorThatSaysHowToGiveIt) {
  Resolve(kRequired, BuildOptions());
  auto errors = Messages(true);
  ASSERT_EQ(errors.size(), 1U) << testing::PrintToString(errors);
  EXPECT_THAT(errors[0], HasSubstr("template.json"));
  EXPECT_THAT(errors[0], HasSubstr("required variable 'password' is not set; give it with -var password=VALUE or "
                                   "in a -var-file"));
}

TEST_F(BuildVariablesTest, ARequiredVariableMayComeFromAVarFileOrAFlag) {
  BuildOptions from_file;
  from_file.var_files = {WriteFile("secrets.json", R"({"password": "hunter2"})")};
  EXPECT_EQ(Resolve(kRequired, from_file).values["password"], "hunter2");
  EXPECT_THAT(Messages(true), IsEmpty());
  BuildOptions from_flag;
  from_flag.vars = {{"password", "swordfish"}};
  EXPECT_EQ(Resolve(kRequired, from_flag).values["password"], "swordfish");
  EXPECT_THAT(Messages(true), IsEmpty());
}

TEST_F(BuildVariablesTest, WithoutRequireAllAMissingRequiredVariableIsNoError) {
  // What `validate -syntax-only`-like callers ask for: the values that are known.
  Variables v = Resolve(kRequired, BuildOptions(), /*require_all=*/false);
  EXPECT_THAT(Messages(true), IsEmpty());
  EXPECT_EQ(v.values.count("password"), 0U);
  EXPECT_EQ(v.values["region"], "eu");
}

TEST_F(BuildVariablesTest, AMissingRequiredVariableThatOthersUseIsReportedOnce) {
  Resolve(R"({"variables": {"password": null, "dsn": "db://admin:{{user `password`}}@host"},
              "builders": [{"type": "null"}]})",
          BuildOptions());
  auto errors = Messages(true);
  ASSERT_EQ(errors.size(), 1U) << testing::PrintToString(errors);
  EXPECT_THAT(errors[0], HasSubstr("required variable 'password' is not set"));
}

TEST_F(BuildVariablesTest, AnUndeclaredVariableIsAWarningWithASuggestion) {
  BuildOptions opts;
  opts.vars = {{"regoin", "us"}};
  opts.var_files = {WriteFile("vars.json", R"({"pasword": "x"})")};
  Variables v = Resolve(kRequired, opts, /*require_all=*/false);
  EXPECT_THAT(Messages(true), IsEmpty());
  auto warnings = Messages(false);
  ASSERT_EQ(warnings.size(), 2U) << testing::PrintToString(warnings);
  EXPECT_THAT(warnings[0], HasSubstr("vars.json"));
  EXPECT_THAT(warnings[0], HasSubstr("variable 'pasword' is not declared in the template"));
  EXPECT_THAT(warnings[0], HasSubstr("(did you mean 'password'?)"));
  EXPECT_THAT(warnings[1], HasSubstr("-var regoin: variable 'regoin' is not declared in the template"));
  EXPECT_THAT(warnings[1], HasSubstr("(did you mean 'region'?)"));
  EXPECT_EQ(v.values["region"], "eu") << "a misspelt name sets nothing";
}

TEST_F(BuildVariablesTest, UnreadableOrWrongVarFilesAreErrorsNamingTheFile) {
  BuildOptions opts;
  opts.var_files = {(dir_ / "missing.json").string(), WriteFile("broken.json", "{\"a\": "),
                    WriteFile("list.json", "[1, 2]"), WriteFile("object.json", R"({"a": {"nested": 1}})")};
  Resolve(kFourVariables, opts);
  auto errors = Messages(true);
  ASSERT_EQ(errors.size(), 4U) << testing::PrintToString(errors);
  EXPECT_THAT(errors[0], HasSubstr("-var-file"));
  EXPECT_THAT(errors[0], HasSubstr("missing.json"));
  EXPECT_THAT(errors[1], HasSubstr("broken.json"));
  EXPECT_THAT(errors[1], HasSubstr("invalid JSON in var file"));
  EXPECT_THAT(errors[2], HasSubstr("list.json"));
  EXPECT_THAT(errors[2], HasSubstr("a var file must be a JSON object"));
  EXPECT_THAT(errors[3], HasSubstr("object.json"));
  EXPECT_THAT(errors[3], HasSubstr("variable 'a' must be a string, not object"));
}

TEST_F(BuildVariablesTest, ACircularReferenceIsAnError) {
  Resolve(R"({"variables": {"a": "{{user `b`}}", "b": "{{user `a`}}"}, "builders": [{"type": "null"}]})",
          BuildOptions());
  auto errors = Messages(true);
  ASSERT_FALSE(errors.empty());
  EXPECT_THAT(errors[0], HasSubstr("refers to itself through other variables"));
}

// 30 variables that each repeat the previous one twice would render 2^30 times the first: the
// expansion stops at the first value past the limit, and the error names that variable.
TEST_F(BuildVariablesTest, AVariableThatRendersTooLongIsAnErrorNamingIt) {
  std::string vars = R"("v00": ")" + std::string(32, 'x') + "\"";
  for (int i = 1; i < 30; ++i) {
    char name[8], prev[8];
    std::snprintf(name, sizeof name, "v%02d", i);
    std::snprintf(prev, sizeof prev, "v%02d", i - 1);
    vars += std::string(",\n \"") + name + "\": \"{{user `" + prev + "`}}{{user `" + prev + "`}}\"";
  }
  Variables v = Resolve("{\"variables\": {" + vars + "}, \"builders\": [{\"type\": \"null\"}]}", BuildOptions());
  auto errors = Messages(true);
  ASSERT_FALSE(errors.empty());
  // v17 is 32 * 2^17 bytes = 4 MiB exactly; v18 would be 8 MiB. Line 19, after `"v18": "` and
  // the first {{user `v17`}} (14 bytes): column 24.
  EXPECT_EQ(errors[0], (dir_ / "template.json").string() +
                           ":19:24: variable 'v18' would be longer than 4 MiB (the limit on a rendered value) where "
                           "'{{user `v17`}}' adds to it");
  for (const auto& e : errors) EXPECT_THAT(e, HasSubstr("(the limit on a rendered value)"));
  EXPECT_EQ(v.values["v17"].size(), 4u << 20);
}

TEST_F(BuildVariablesTest, SensitiveValuesAreMaskedWhereverTheyCameFrom) {
  const char* text = R"({
    "variables": {"password": null, "token": "default-token-value", "region": "eu-west"},
    "sensitive-variables": ["password", "token"],
    "builders": [{"type": "null"}]
  })";
  BuildOptions opts;
  opts.vars = {{"password", "hunter2-line1\nline2-of-it"}};
  Variables v = Resolve(text, opts);
  EXPECT_THAT(Messages(true), IsEmpty());
  EXPECT_EQ(v.masker->mask("pw hunter2-line1\nline2-of-it"), "pw <sensitive>");
  EXPECT_EQ(v.masker->mask("a script printed line2-of-it"), "a script printed <sensitive>");
  EXPECT_EQ(v.masker->mask("token=default-token-value"), "token=<sensitive>");
  EXPECT_EQ(v.masker->mask("region eu-west"), "region eu-west") << "only sensitive variables are masked";
}

}  // namespace
