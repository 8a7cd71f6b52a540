// plan_builds: -only/-except selection (globs over rendered build names), which provisioners
// each build gets, and the validation errors a user sees before anything runs; and that the
// builds -only/-except skip do not run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "imgbake/build.h"
#include "imgbake/error.h"
#include "pipeline_build_fixture.h"

namespace {

using imgbake::BuildOptions;
using imgbake::BuildPlan;
using imgbake::Diagnostics;
using pipeline_build_fixture::LogOf;
using pipeline_build_fixture::PipelineBuildTest;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class BuildPlanTest : public PipelineBuildTest {
 protected:
  // The names of the planned builds, and each one's provisioner labels ("name: label, label").
  std::vector<std::string> Plan(const std::string& text, const BuildOptions& opts) {
    imgbake::Template t = Parse(text);
    diags_ = Diagnostics();
    imgbake::Variables vars = imgbake::resolve_variables(t, opts, diags_, true);
    std::vector<BuildPlan> plans = imgbake::plan_builds(t, vars, opts, diags_);
    std::vector<std::string> out;
    for (const auto& p : plans) {
      std::string line = p.name + " (" + p.type + "):";
      for (const auto& prov : p.provisioners) line += " " + prov.label;
      if (p.cleanup_provisioner) line += " | " + p.cleanup_provisioner->label;
      out.push_back(line);
    }
    return out;
  }
  std::vector<std::string> Errors() const {
    std::vector<std::string> out;
    for (const auto& d : diags_.errors()) out.push_back(d.str());
    return out;
  }
  Diagnostics diags_;
};

constexpr const char* kThreeBuilds = R"({
  "variables": {"env": "prod"},
  "builders": [
    {"type": "test-machine", "name": "web-{{user `env`}}"},
    {"type": "test-machine", "name": "web-staging"},
    {"type": "null", "name": "db"}
  ]
})";

TEST_F(BuildPlanTest, EveryBuildWithoutOnlyOrExcept) {
  EXPECT_THAT(Plan(kThreeBuilds, BuildOptions()),
              ElementsAre("web-prod (test-machine):", "web-staging (test-machine):", "db (null):"));
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(BuildPlanTest, OnlyAndExceptAreGlobsOverTheRenderedNames) {
  BuildOptions only;
  only.only = {"web-*"};
  EXPECT_THAT(Plan(kThreeBuilds, only), ElementsAre("web-prod (test-machine):", "web-staging (test-machine):"));
  BuildOptions except;
  except.except = {"*-staging", "db"};
  EXPECT_THAT(Plan(kThreeBuilds, except), ElementsAre("web-prod (test-machine):"));
  BuildOptions both;
  both.only = {"web-*"};
  both.except = {"web-prod"};
  EXPECT_THAT(Plan(kThreeBuilds, both), ElementsAre("web-staging (test-machine):"));
  BuildOptions by_variable;
  by_variable.vars = {{"env", "test"}};
  by_variable.only = {"web-test"};
  EXPECT_THAT(Plan(kThreeBuilds, by_variable), ElementsAre("web-test (test-machine):"));
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(BuildPlanTest, SelectingNoBuildIsAnErrorThatListsTheBuilds) {
  BuildOptions opts;
  opts.only = {"wbe-*"};
  EXPECT_THAT(Plan(kThreeBuilds, opts), IsEmpty());
  EXPECT_THAT(Errors(),
              ElementsAre(HasSubstr("-only/-except selected no build; the builds are: web-prod, web-staging, db")));
}

TEST_F(BuildPlanTest, ProvisionersFollowTheirOwnOnlyAndExcept) {
  const char* text = R"({
    "builders": [{"type": "test-machine", "name": "a"}, {"type": "test-machine", "name": "b"}],
    "provisioners": [
      {"type": "test-record", "name": "everywhere"},
      {"type": "test-record", "name": "only-b", "only": ["b"]},
      {"type": "test-record", "name": "not-b", "except": ["b"]}
    ],
    "error-cleanup-provisioner": {"type": "test-record", "name": "cleanup", "only": ["a"]}
  })";
  EXPECT_THAT(Plan(text, BuildOptions()),
              ElementsAre("a (test-machine): provisioner 1 (test-record) provisioner 3 (test-record) | "
                          "error-cleanup-provisioner (test-record)",
                          "b (test-machine): provisioner 1 (test-record) provisioner 2 (test-record)"));
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(BuildPlanTest, ABuildThatOnlySkipsIsStillValidated) {
  const char* text = R"({
    "builders": [{"type": "test-machine", "name": "a"},
                 {"type": "file", "name": "b", "content": "x"}]
  })";
  BuildOptions opts;
  opts.only = {"a"};
  Plan(text, opts);
  EXPECT_THAT(Errors(), ElementsAre(HasSubstr("builder 'b' (file)"))) << "'target' is missing";
}

TEST_F(BuildPlanTest, UnknownTypesAndNamesAreErrorsWithSuggestions) {
  const char* text = R"({
    "builders": [{"type": "test-machin", "name": "a"}, {"type": "null", "name": "b"}],
    "provisioners": [{"type": "test-record", "name": "p", "only": ["c"]}]
  })";
  Plan(text, BuildOptions());
  auto errors = Errors();
  ASSERT_EQ(errors.size(), 2U) << testing::PrintToString(errors);
  EXPECT_THAT(errors[0], HasSubstr("builder 'a': unknown builder type 'test-machin'"));
  EXPECT_THAT(errors[0], HasSubstr("test-machine"));
  EXPECT_THAT(errors[1], HasSubstr("provisioner 1 (test-record): 'only' names build 'c', which does not exist"));
}

TEST_F(BuildPlanTest, AnUnknownOptionIsAnErrorOfThatComponent) {
  Plan(R"({"builders": [{"type": "test-machine", "name": "a", "fail_stpe": "connect"}]})", BuildOptions());
  auto errors = Errors();
  ASSERT_EQ(errors.size(), 1U) << testing::PrintToString(errors);
  EXPECT_THAT(errors[0], HasSubstr("builder 'a' (test-machine)"));
  EXPECT_THAT(errors[0], HasSubstr("fail_stpe"));
  EXPECT_THAT(errors[0], HasSubstr("fail_step"));
}

TEST_F(BuildPlanTest, OnlyTheSelectedBuildsRunAndAreSummarized) {
  const char* text = R"({
    "builders": [{"type": "test-machine", "name": "a"}, {"type": "test-machine", "name": "b"},
                 {"type": "test-machine", "name": "c"}],
    "provisioners": [{"type": "test-record", "name": "p"}]
  })";
  auto opts = Options();
  opts.except = {"b"};
  auto r = Build(text, opts);
  EXPECT_THAT(r.errors, IsEmpty());
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(LogOf("b"), IsEmpty());
  EXPECT_THAT(LogOf("a"), ::testing::Contains("provision:p"));
  EXPECT_THAT(LogOf("c"), ::testing::Contains("provision:p"));
  auto summary = Events("summary");
  ASSERT_EQ(summary.size(), 1U);
  std::vector<std::string> names;
  for (const auto& b : summary[0]["builds"]) names.push_back(b["build"].get<std::string>());
  EXPECT_THAT(names, ElementsAre("a", "c"));
}

}  // namespace
