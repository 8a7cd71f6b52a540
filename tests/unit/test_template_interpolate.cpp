// interp::render: Packer's template engine (Go text/template with Packer's functions).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "imgbake/interpolate.h"
#include "imgbake/version.h"

namespace {

using imgbake::interp::Context;
using imgbake::interp::Error;
using imgbake::interp::render;
using ::testing::HasSubstr;
using ::testing::Not;

// 2021-01-02T03:04:05.678Z: Unix time 1609556645 (1609459200 is 2021-01-01T00:00:00Z,
// plus one day and 3h4m5s).
std::chrono::system_clock::time_point FixedNow() {
  using namespace std::chrono;
  const sys_days date = year{2021} / January / day{2};
  return system_clock::time_point{duration_cast<system_clock::duration>(date.time_since_epoch() + hours{3} +
                                                                        minutes{4} + seconds{5} + milliseconds{678})};
}

class InterpolateTest : public ::testing::Test {
 protected:
  InterpolateTest() {
    vars_ = {{"region", "eu-west-1"}, {"name", "Base Image"}, {"empty", ""}};
    ctx_.user_vars = &vars_;
    ctx_.template_dir = "/srv/templates";
    ctx_.now = FixedNow();
  }

  std::string R(const std::string& text) { return render(text, ctx_); }

  Error Fail(const std::string& text) {
    try {
      std::string out = render(text, ctx_);
      ADD_FAILURE() << "expected an error for " << text << ", got \"" << out << "\"";
    } catch (const Error& e) {
      return e;
    }
    return Error("", 0);
  }

  std::map<std::string, std::string> vars_;
  Context ctx_;
};

// ---------------------------------------------------------------- plain text

TEST_F(InterpolateTest, TextWithoutActionsIsUnchanged) {
  EXPECT_EQ(R(""), "");
  EXPECT_EQ(R("plain text { } }} {"), "plain text { } }} {");
  EXPECT_FALSE(imgbake::interp::has_actions("a { b } }}"));
  EXPECT_TRUE(imgbake::interp::has_actions("a {{ b }}"));
}

// ---------------------------------------------------------------- user

TEST_F(InterpolateTest, UserVariables) {
  EXPECT_EQ(R("{{user `region`}}"), "eu-west-1");
  EXPECT_EQ(R("{{ user \"region\" }}"), "eu-west-1");
  EXPECT_EQ(R("a-{{user `region`}}-b"), "a-eu-west-1-b");
  EXPECT_EQ(R("[{{user `empty`}}]"), "[]");
  EXPECT_EQ(R("{{user `region`}}/{{user `name`}}"), "eu-west-1/Base Image");
}

TEST_F(InterpolateTest, UndefinedUserVariableInVariablesIsAnErrorWithSuggestion) {
  // While the variables themselves are interpolated (allow_env), as Packer's funcGenUser.
  ctx_.allow_env = true;
  Error e = Fail("{{user `regoin`}}");
  EXPECT_THAT(e.what(), HasSubstr("regoin"));
  EXPECT_THAT(e.what(), HasSubstr("did you mean 'region'"));
  EXPECT_EQ(e.offset, 0u);
}

TEST_F(InterpolateTest, UndefinedUserVariableElsewhereIsEmptyAndRecorded) {
  // Packer renders "" outside the variables section; the caller warns with the position.
  std::vector<Context::Undefined> undefined;
  ctx_.undefined_users = &undefined;
  EXPECT_EQ(R("x{{user `regoin`}}y {{user `region`}} {{ user `other` }}"), "xy eu-west-1 ");
  ASSERT_EQ(undefined.size(), 2u);
  EXPECT_EQ(undefined[0].name, "regoin");
  EXPECT_EQ(undefined[0].offset, 1u);
  EXPECT_EQ(undefined[1].name, "other");
  EXPECT_EQ(undefined[1].offset, 38u);
  // Without a place to record them, the same text still renders.
  ctx_.undefined_users = nullptr;
  EXPECT_EQ(R("x{{user `regoin`}}y"), "xy");
}

TEST_F(InterpolateTest, FailedVariableThrowsPoisoned) {
  std::set<std::string> failed = {"region"};
  ctx_.failed_user_vars = &failed;
  try {
    R("a {{user `name`}} {{user `region`}}");
    ADD_FAILURE() << "expected Poisoned";
  } catch (const imgbake::interp::Poisoned& p) {
    EXPECT_EQ(p.name, "region");
  }
  EXPECT_EQ(R("{{user `name`}}"), "Base Image");
}

TEST_F(InterpolateTest, UserWithoutVariablesIsEmptyOutsideVariablesAndDeferredWhenAsked) {
  ctx_.user_vars = nullptr;
  EXPECT_EQ(R("[{{user `region`}}]"), "[]");
  ctx_.allow_env = true;
  EXPECT_THAT(Fail("{{user `region`}}").what(), HasSubstr("region"));
  ctx_.allow_env = false;
  ctx_.defer_unknown = true;
  EXPECT_EQ(R("x {{user `region`}} y"), "x {{user `region`}} y");
}

TEST_F(InterpolateTest, UserTakesOneArgument) {
  EXPECT_THAT(Fail("{{user}}").what(), HasSubstr("user"));
  EXPECT_THAT(Fail("{{user `a` `b`}}").what(), HasSubstr("user"));
}

// ---------------------------------------------------------------- env

TEST_F(InterpolateTest, EnvOnlyWhenAllowed) {
  ASSERT_EQ(setenv("IMGBAKE_UT_ENV", "from-env", 1), 0);
  unsetenv("IMGBAKE_UT_ENV_UNSET");
  Error e = Fail("{{env `IMGBAKE_UT_ENV`}}");
  EXPECT_THAT(e.what(), HasSubstr("env"));

  ctx_.allow_env = true;
  EXPECT_EQ(R("{{env `IMGBAKE_UT_ENV`}}"), "from-env");
  EXPECT_EQ(R("[{{env `IMGBAKE_UT_ENV_UNSET`}}]"), "[]");
  unsetenv("IMGBAKE_UT_ENV");
}

// ---------------------------------------------------------------- time

TEST_F(InterpolateTest, TimestampIsTheUnixTimeOfTheRun) {
  EXPECT_EQ(R("{{timestamp}}"), "1609556645");
  EXPECT_EQ(R("{{ timestamp }}-{{timestamp}}"), "1609556645-1609556645");
  EXPECT_EQ(R("{{timestamp}}"), R("{{timestamp}}"));
}

TEST_F(InterpolateTest, IsotimeUsesGoLayoutsInUtc) {
  EXPECT_EQ(R("{{isotime}}"), "2021-01-02T03:04:05Z");
  EXPECT_EQ(R("{{isotime `2006-01-02`}}"), "2021-01-02");
  EXPECT_EQ(R("{{isotime \"20060102150405\"}}"), "20210102030405");
  EXPECT_EQ(R("{{isotime `Jan 2, 2006 at 3:04pm (MST)`}}"), "Jan 2, 2021 at 3:04am (UTC)");
  EXPECT_EQ(R("{{isotime `15:04:05.000`}}"), "03:04:05.678");
  EXPECT_EQ(R("{{isotime}}"), R("{{isotime}}"));
  EXPECT_THAT(Fail("{{isotime `a` `b`}}").what(), HasSubstr("isotime"));
}

// ---------------------------------------------------------------- uuid, dirs, version

TEST_F(InterpolateTest, UuidFormat) {
  const std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$");
  const std::string a = R("{{uuid}}");
  const std::string b = R("{{ uuid }}");
  EXPECT_TRUE(std::regex_match(a, uuid)) << a;
  EXPECT_TRUE(std::regex_match(b, uuid)) << b;
  EXPECT_NE(a, b);
  const std::string two = R("{{uuid}} {{uuid}}");
  ASSERT_EQ(two.size(), 73u);
  EXPECT_NE(two.substr(0, 36), two.substr(37));
}

TEST_F(InterpolateTest, TemplateDirAndPwd) {
  EXPECT_EQ(R("{{template_dir}}/files/x.sh"), "/srv/templates/files/x.sh");
  EXPECT_EQ(R("{{pwd}}"), std::filesystem::current_path().string());
}

TEST_F(InterpolateTest, PackerVersion) {
  const std::string v = R("{{packer_version}}");
  EXPECT_EQ(v, imgbake::kVersion);
  EXPECT_TRUE(std::regex_match(v, std::regex(R"(^\d+\.\d+\.\d+.*$)"))) << v;
}

// ---------------------------------------------------------------- build_name / build_type

TEST_F(InterpolateTest, BuildNameAndTypeInsideABuild) {
  ctx_.build_name = "web";
  ctx_.build_type = "qemu";
  EXPECT_EQ(R("{{build_name}}-{{ build_type }}"), "web-qemu");
}

TEST_F(InterpolateTest, BuildNameOutsideABuildIsAnError) {
  Error name = Fail("x {{build_name}}");
  EXPECT_THAT(name.what(), HasSubstr("build_name"));
  EXPECT_EQ(name.offset, 2u);
  EXPECT_THAT(Fail("{{build_type}}").what(), HasSubstr("build_type"));
}

TEST_F(InterpolateTest, BuildNameOutsideABuildIsKeptWhenDeferring) {
  ctx_.defer_unknown = true;
  EXPECT_EQ(R("out-{{ build_name }}-{{build_type}}-{{user `region`}}"),
            "out-{{ build_name }}-{{build_type}}-eu-west-1");
}

// ---------------------------------------------------------------- string functions

TEST_F(InterpolateTest, LowerAndUpper) {
  EXPECT_EQ(R("{{lower `MiXeD 123`}}"), "mixed 123");
  EXPECT_EQ(R("{{upper `MiXeD 123`}}"), "MIXED 123");
  EXPECT_EQ(R("{{ user `name` | lower }}"), "base image");
  EXPECT_EQ(R("{{ \"abc\" | upper }}"), "ABC");
  EXPECT_THAT(Fail("{{lower}}").what(), HasSubstr("lower"));
}

TEST_F(InterpolateTest, Replace) {
  // replace old new n src == Go's strings.Replace(src, old, new, n).
  EXPECT_EQ(R("{{replace `a` `b` 2 `aaaa`}}"), "bbaa");
  EXPECT_EQ(R("{{replace `a` `b` -1 `aaaa`}}"), "bbbb");
  EXPECT_EQ(R("{{replace `a` `b` 0 `aaaa`}}"), "aaaa");
  EXPECT_EQ(R("{{replace `.` `-` 1 `1.2.3`}}"), "1-2.3");
  EXPECT_EQ(R("{{replace `xyz` `-` 5 `abc`}}"), "abc");
  EXPECT_EQ(R("{{ user `name` | replace ` ` `_` 1 }}"), "Base_Image");
  EXPECT_THAT(Fail("{{replace `a` `b` `aaaa`}}").what(), HasSubstr("replace"));
  EXPECT_THAT(Fail("{{replace `a` `b` `two` `aaaa`}}").what(), HasSubstr("two"));
}

TEST_F(InterpolateTest, ReplaceAll) {
  EXPECT_EQ(R("{{replace_all `-` `_` `a-b-c`}}"), "a_b_c");
  EXPECT_EQ(R("{{replace_all `ab` `x` `ababab`}}"), "xxx");
  EXPECT_EQ(R("{{replace_all `q` `x` `abc`}}"), "abc");
  EXPECT_EQ(R("{{ `1.2.3` | replace_all `.` `` }}"), "123");
  EXPECT_THAT(Fail("{{replace_all `a` `b`}}").what(), HasSubstr("replace_all"));
}

TEST_F(InterpolateTest, Split) {
  EXPECT_EQ(R("{{split `a,b,c` `,` 0}}"), "a");
  EXPECT_EQ(R("{{split `a,b,c` `,` 2}}"), "c");
  EXPECT_EQ(R("{{split `a,,c` `,` 1}}"), "");
  EXPECT_EQ(R("{{split `eu-west-1` `-` 1}}"), "west");
  EXPECT_EQ(R("{{split (user `region`) `-` 0}}"), "eu");
  Error e = Fail("{{split `a,b` `,` 2}}");
  EXPECT_THAT(e.what(), HasSubstr("split"));
}

TEST_F(InterpolateTest, CleanResourceNameCallAndPipe) {
  EXPECT_EQ(R("{{ clean_resource_name \"Hello World\" }}"), "hello-world");
  EXPECT_EQ(R("{{ \"Hello World\" | clean_resource_name }}"), "hello-world");
  EXPECT_EQ(R("{{ user `name` | clean_resource_name }}"), "base-image");
  EXPECT_EQ(R("img-{{ `Ubuntu 20.04_LTS` | clean_resource_name }}"), "img-ubuntu-20-04-lts");
}

// ---------------------------------------------------------------- data fields

TEST_F(InterpolateTest, DataFields) {
  ctx_.data = {{"Name", "web"}, {"HTTPIP", "10.0.2.2"}, {"HTTPPort", "8080"}};
  EXPECT_EQ(R("{{ .Name }}"), "web");
  EXPECT_EQ(R("{{.Name}}"), "web");
  EXPECT_EQ(R("http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg"), "http://10.0.2.2:8080/ks.cfg");
  EXPECT_EQ(R("{{ .Name | upper }}"), "WEB");
}

TEST_F(InterpolateTest, UnknownDataFieldIsAnErrorUnlessDeferred) {
  ctx_.data = {{"HTTPIP", "10.0.2.2"}};
  Error e = Fail("x {{ .HTTPPIP }}");
  EXPECT_THAT(e.what(), HasSubstr("HTTPPIP"));
  EXPECT_THAT(e.what(), HasSubstr("did you mean 'HTTPIP'"));
  EXPECT_EQ(e.offset, 2u);

  ctx_.defer_unknown = true;
  EXPECT_EQ(R("http://{{ .HTTPIP }}:{{ .HTTPPort }}/{{ .Path | lower }}"),
            "http://10.0.2.2:{{ .HTTPPort }}/{{ .Path | lower }}");
}

TEST_F(InterpolateTest, DeferredActionsAreKeptVerbatimIncludingSpacing) {
  ctx_.defer_unknown = true;
  const std::string text = "a {{   .Later   }} b {{.Later}} c {{ lower .Later }}";
  EXPECT_EQ(R(text), text);
  // Rendering again later, once known, resolves them.
  std::string first = R("{{user `region`}} {{ .Later }}");
  EXPECT_EQ(first, "eu-west-1 {{ .Later }}");
  ctx_.defer_unknown = false;
  ctx_.data["Later"] = "now";
  EXPECT_EQ(R(first), "eu-west-1 now");
}

TEST_F(InterpolateTest, DeferringDoesNotHideRealErrors) {
  ctx_.defer_unknown = true;
  EXPECT_THAT(Fail("{{ nosuchfunc }}").what(), HasSubstr("nosuchfunc"));
  ctx_.allow_env = true;  // an undefined variable is an error only among the variables
  EXPECT_THAT(Fail("{{user `nope`}}").what(), HasSubstr("nope"));
}

// ---------------------------------------------------------------- errors

TEST_F(InterpolateTest, UnknownFunctionIsNamedWithSuggestion) {
  Error e = Fail("{{ lowr `x` }}");
  EXPECT_THAT(e.what(), HasSubstr("'lowr'"));
  EXPECT_THAT(e.what(), HasSubstr("did you mean 'lower'"));

  // "uper" is one edit from both "upper" and "user": either suggestion is fine.
  Error tie = Fail("{{ uper `x` }}");
  EXPECT_THAT(tie.what(), HasSubstr("'uper'"));
  EXPECT_THAT(tie.what(), HasSubstr("did you mean"));

  Error ts = Fail("{{timestmp}}");
  EXPECT_THAT(ts.what(), HasSubstr("'timestmp'"));
  EXPECT_THAT(ts.what(), HasSubstr("did you mean 'timestamp'"));

  Error far = Fail("{{ frobnicate }}");
  EXPECT_THAT(far.what(), HasSubstr("'frobnicate'"));
  EXPECT_THAT(far.what(), Not(HasSubstr("did you mean")));
}

TEST_F(InterpolateTest, ErrorOffsetPointsAtTheFailingAction) {
  EXPECT_EQ(Fail("{{ uper `x` }}").offset, 0u);
  EXPECT_EQ(Fail("abc {{ uper `x` }}").offset, 4u);
  // The first action is fine; the second one fails.
  const std::string text = "{{user `region`}}-xyz-{{ nosuch }}";
  EXPECT_EQ(Fail(text).offset, text.find("{{ nosuch"));
  // A failure deep inside parentheses still points at the action's start.
  const std::string nested = "pre {{ upper (lower (bogus `x`)) }} post";
  EXPECT_EQ(Fail(nested).offset, 4u);
}

TEST_F(InterpolateTest, SyntaxErrors) {
  Error unclosed = Fail("ab {{ user `region`");
  EXPECT_EQ(unclosed.offset, 3u);
  EXPECT_THAT(unclosed.what(), HasSubstr("}}"));

  EXPECT_EQ(Fail("x {{}}").offset, 2u);
  EXPECT_EQ(Fail("x {{   }}").offset, 2u);
  EXPECT_EQ(Fail("x {{ upper `a }}").offset, 2u);
  EXPECT_EQ(Fail("x {{ upper \"a }}").offset, 2u);
  EXPECT_EQ(Fail("x {{ upper (lower `a` }}").offset, 2u);
  EXPECT_EQ(Fail("x {{ upper `a`) }}").offset, 2u);
  EXPECT_EQ(Fail("x {{ `a` `b` }}").offset, 2u);
  EXPECT_EQ(Fail("x {{ # }}").offset, 2u);
}

// ---------------------------------------------------------------- Go template syntax

TEST_F(InterpolateTest, TrimMarkers) {
  EXPECT_EQ(R("a   {{- `x` -}}   b"), "axb");
  EXPECT_EQ(R("a \n\t {{- `x` }} b"), "ax b");
  EXPECT_EQ(R("a {{ `x` -}} \n\n b"), "a xb");
  EXPECT_EQ(R("a {{- user `region` -}} b"), "aeu-west-1b");
  // Without a space after '-' it is a negative number, not a trim marker (Go's rule).
  EXPECT_EQ(R("a {{-3}} b"), "a -3 b");
}

TEST_F(InterpolateTest, TrimMarkerTrimsOnlyTemplateTextNotActionOutput) {
  // Go trims the white space of the text before "{{- ", never what an earlier action printed.
  vars_["padded"] = "x ";
  EXPECT_EQ(R("{{ `a ` }}{{- `b` }}"), "a b");
  EXPECT_EQ(R("{{user `padded`}}  {{- `b` }}"), "x b");
}

TEST_F(InterpolateTest, Comments) {
  EXPECT_EQ(R("a{{/* a comment */}}b"), "ab");
  EXPECT_EQ(R("a {{- /* trimmed */ -}} b"), "ab");
}

TEST_F(InterpolateTest, StringLiterals) {
  EXPECT_EQ(R("{{ `raw \"quoted\" \\n` }}"), "raw \"quoted\" \\n");
  EXPECT_EQ(R("{{ \"esc \\\"q\\\" \\t.\" }}"), "esc \"q\" \t.");
  // Braces inside literals do not end the action.
  EXPECT_EQ(R("{{ `}}` }}"), "}}");
  EXPECT_EQ(R("{{ \"{{\" }}"), "{{");
  EXPECT_EQ(R("{{ \"a}}b\" | upper }}"), "A}}B");
  EXPECT_EQ(R("{{ `multi\nline` }}"), "multi\nline");
}

TEST_F(InterpolateTest, NestedParentheses) {
  EXPECT_EQ(R("{{ upper (lower (replace_all `-` `_` `A-B`)) }}"), "A_B");
  EXPECT_EQ(R("{{ lower (user `name`) }}"), "base image");
  EXPECT_EQ(R("{{ replace_all ` ` (lower `-`) (user `name`) }}"), "Base-Image");
  EXPECT_EQ(R("{{ ((((`deep`)))) }}"), "deep");
  EXPECT_EQ(R("{{ (user `name` | lower) | upper }}"), "BASE IMAGE");
}

// Found by fuzz_interpolate: each "(" was a level of recursion, and ten thousand of them
// overflowed the stack (a crash of `imgbake validate`, not an error).
TEST_F(InterpolateTest, ParenthesesNestedTooDeeplyAreAnErrorNotACrash) {
  EXPECT_EQ(R("{{ " + std::string(100, '(') + "`ok`" + std::string(100, ')') + " }}"), "ok");
  Error deep = Fail("x {{ " + std::string(100000, '(') + "`a`" + std::string(100000, ')') + " }}");
  EXPECT_EQ(deep.offset, 2u);
  EXPECT_THAT(deep.what(), HasSubstr("parentheses nested deeper than 100"));
}

TEST_F(InterpolateTest, Pipelines) {
  EXPECT_EQ(R("{{ `A-B` | lower | replace_all `-` `.` | upper }}"), "A.B");
  EXPECT_EQ(R("{{ timestamp | lower }}"), "1609556645");
}

TEST_F(InterpolateTest, ManyActionsInOneString) {
  ctx_.data = {{"Name", "n"}};
  EXPECT_EQ(R("{{user `region`}}{{ .Name }}{{lower `X`}} | {{isotime `2006`}}"), "eu-west-1nx | 2021");
}

TEST_F(InterpolateTest, FunctionNamesListsEveryFunction) {
  const auto& names = imgbake::interp::function_names();
  for (const char* f :
       {"user", "env", "timestamp", "isotime", "uuid", "template_dir", "pwd", "build_name", "build_type",
        "packer_version", "lower", "upper", "replace", "replace_all", "split", "clean_resource_name"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), f), names.end()) << f;
  }
}

}  // namespace
