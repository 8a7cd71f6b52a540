// run_builds with a fake machine builder and recording provisioners: the order in which steps,
// provisioners, the error-cleanup-provisioner and cleanups run; what a failing builder or
// provisioner makes the user see (error event, build status, exit status); each -on-error mode;
// several builds where one fails.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "imgbake/build.h"
#include "imgbake/error.h"
#include "pipeline_build_fixture.h"

namespace {

using imgbake::OnError;
using pipeline_build_fixture::LogOf;
using pipeline_build_fixture::PipelineBuildTest;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class BuildRunTest : public PipelineBuildTest {
 protected:
  // The status of each build in the summary event, "name=status".
  std::vector<std::string> Summary() const {
    std::vector<std::string> out;
    for (const auto& e : Events("summary"))
      for (const auto& b : e["builds"])
        out.push_back(b["build"].get<std::string>() + "=" + b["status"].get<std::string>());
    return out;
  }
};

// A machine, two provisioners and an error-cleanup-provisioner; `machine` and `second` are
// spliced in as extra options of the builder and of the second provisioner.
std::string MachineTemplate(const std::string& machine = "", const std::string& second = "") {
  return R"({
    "builders": [{"type": "test-machine", "name": "web")" +
         (machine.empty() ? "" : ", " + machine) + R"(}],
    "provisioners": [
      {"type": "test-record", "name": "one"},
      {"type": "test-record", "name": "two")" +
         (second.empty() ? "" : ", " + second) + R"(}
    ],
    "error-cleanup-provisioner": {"type": "test-record", "name": "cleanup"}
  })";
}

TEST_F(BuildRunTest, SuccessRunsEveryStepInOrderThenEveryCleanupInReverse) {
  auto r = Build(MachineTemplate(), Options());
  EXPECT_THAT(r.errors, IsEmpty());
  EXPECT_EQ(r.exit_code, imgbake::kExitOk);
  EXPECT_THAT(LogOf("web"),
              ElementsAre("run:create machine", "run:connect", "provision:one", "provision:two", "run:shut down",
                          "cleanup:shut down", "cleanup:connect", "cleanup:create machine"));
  EXPECT_THAT(Summary(), ElementsAre("web=ok"));
  EXPECT_THAT(Events("error"), IsEmpty());
  std::vector<std::string> steps;
  for (const auto& e : Events("step_end"))
    steps.push_back(e["step"].get<std::string>() + "=" + e["status"].get<std::string>());
  // The silent steps (the error-cleanup hook, the artifact) are not shown. The machine made no
  // artifact, so the commit has nothing to do (and opens no store).
  EXPECT_THAT(steps, ElementsAre("create machine=ok", "connect=ok", "provisioner 1 (test-record)=ok",
                                 "provisioner 2 (test-record)=ok", "shut down=ok", "commit to store=ok"));
}

TEST_F(BuildRunTest, AFailingBuilderStepFailsTheBuildAndCleansUpWhatRan) {
  auto r = Build(MachineTemplate(R"("fail_step": "connect")"), Options());
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(LogOf("web"),
              ElementsAre("run:create machine", "run:connect", "cleanup:connect", "cleanup:create machine"))
      << "no provisioner runs, and the error-cleanup-provisioner neither: provisioning did not fail";
  EXPECT_THAT(Texts("error"), ElementsAre("step 'connect': the fake machine broke in 'connect'"));
  auto end = Events("build_end");
  ASSERT_EQ(end.size(), 1U);
  EXPECT_EQ(end[0]["status"], "failed");
  EXPECT_THAT(Summary(), ElementsAre("web=failed"));
  EXPECT_EQ(sink_->opened, 0) << "a failed build commits nothing";
}

TEST_F(BuildRunTest, AFailingProvisionerRunsTheErrorCleanupProvisionerBeforeTheMachineGoes) {
  auto r = Build(MachineTemplate("", R"("fail": true)"), Options());
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(LogOf("web"), ElementsAre("run:create machine", "run:connect", "provision:one", "provision:two",
                                        "provision:cleanup", "cleanup:connect", "cleanup:create machine"));
  EXPECT_THAT(Texts("error"), ElementsAre("step 'provisioner 2 (test-record)': provisioner 'two' failed on purpose"));
  EXPECT_THAT(Texts("message"), Contains("provisioning failed: running error-cleanup-provisioner (test-record)"));
  std::vector<std::string> steps;
  for (const auto& e : Events("step_end"))
    steps.push_back(e["step"].get<std::string>() + "=" + e["status"].get<std::string>());
  EXPECT_THAT(steps, ElementsAre("create machine=ok", "connect=ok", "provisioner 1 (test-record)=ok",
                                 "provisioner 2 (test-record)=failed", "error-cleanup-provisioner (test-record)=ok"));
  EXPECT_EQ(sink_->opened, 0);
}

TEST_F(BuildRunTest, AFailingErrorCleanupProvisionerIsReportedAndTheCleanupsStillRun) {
  const char* text = R"({
    "builders": [{"type": "test-machine", "name": "web"}],
    "provisioners": [{"type": "test-record", "name": "one", "fail": true}],
    "error-cleanup-provisioner": {"type": "test-record", "name": "cleanup", "fail": true}
  })";
  auto r = Build(text, Options());
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(LogOf("web"), ElementsAre("run:create machine", "run:connect", "provision:one", "provision:cleanup",
                                        "cleanup:connect", "cleanup:create machine"));
  EXPECT_THAT(Texts("error"),
              ElementsAre("step 'provisioner 1 (test-record)': provisioner 'one' failed on purpose",
                          "error-cleanup-provisioner (test-record): provisioner 'cleanup' failed on purpose"));
}

TEST_F(BuildRunTest, AFailureAfterProvisioningDoesNotRunTheErrorCleanupProvisioner) {
  auto r = Build(MachineTemplate(R"("fail_step": "shut down")"), Options());
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(LogOf("web"),
              ElementsAre("run:create machine", "run:connect", "provision:one", "provision:two", "run:shut down",
                          "cleanup:shut down", "cleanup:connect", "cleanup:create machine"));
  EXPECT_THAT(Texts("error"), ElementsAre("step 'shut down': the fake machine broke in 'shut down'"));
}

TEST_F(BuildRunTest, OnErrorAbortLeavesEverythingAsItIs) {
  auto opts = Options();
  opts.on_error = OnError::Abort;
  auto r = Build(MachineTemplate("", R"("fail": true)"), opts);
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(LogOf("web"), ElementsAre("run:create machine", "run:connect", "provision:one", "provision:two"))
      << "neither the error-cleanup-provisioner nor any cleanup";
  EXPECT_THAT(Texts("warning"), Contains("-on-error=abort: leaving everything as it is; no cleanup ran"));
}

TEST_F(BuildRunTest, OnErrorRunCleanupProvisionerRunsItAndKeepsTheMachine) {
  auto opts = Options();
  opts.on_error = OnError::RunCleanupProvisioner;
  auto r = Build(MachineTemplate("", R"("fail": true)"), opts);
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(LogOf("web"),
              ElementsAre("run:create machine", "run:connect", "provision:one", "provision:two", "provision:cleanup"));
}

TEST_F(BuildRunTest, OnErrorAskWithoutATerminalCleansUp) {
  auto opts = Options();
  opts.on_error = OnError::Ask;
  auto r = Build(MachineTemplate(R"("fail_step": "connect")"), opts);
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(Texts("warning"), Contains("-on-error=ask needs a terminal; cleaning up"));
  EXPECT_THAT(LogOf("web"),
              ElementsAre("run:create machine", "run:connect", "cleanup:connect", "cleanup:create machine"));
}

TEST_F(BuildRunTest, OneFailingBuildDoesNotStopTheOthers) {
  std::string artifact = WriteFile("disk.img", "disk");
  std::string text = R"({
    "builders": [
      {"type": "test-machine", "name": "good", "artifact_file": ")" +
                     artifact + R"("},
      {"type": "test-machine", "name": "bad", "fail_step": "create machine"}
    ]
  })";
  for (int parallel : {0, 1}) {
    SCOPED_TRACE("parallel_builds=" + std::to_string(parallel));
    pipeline_build_fixture::ClearLog();
    sink_->commits.clear();
    auto opts = Options();
    opts.parallel_builds = parallel;
    auto r = Build(text, opts);
    EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
    EXPECT_THAT(LogOf("good"), Contains("run:shut down"));
    EXPECT_THAT(LogOf("bad"), ElementsAre("run:create machine", "cleanup:create machine"));
    ASSERT_EQ(sink_->commits.size(), 1U) << "the good build is committed";
    EXPECT_EQ(sink_->commits[0].labels["io.imgbake.build"], "good");
  }
  EXPECT_THAT(Summary(), Contains("bad=failed"));
  EXPECT_THAT(Summary(), Contains("good=ok"));
}

TEST_F(BuildRunTest, SecretsAreMaskedInWhatTheBuildSays) {
  const char* text = R"({
    "variables": {"password": null},
    "sensitive-variables": ["password"],
    "builders": [{"type": "test-machine", "name": "web"}],
    "provisioners": [{"type": "test-record", "name": "one", "say": "logging in with {{user `password`}}",
                      "fail": true}]
  })";
  auto opts = Options();
  opts.vars = {{"password", "hunter2-secret"}};
  auto r = Build(text, opts);
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(Output(), Not(HasSubstr("hunter2-secret")));
  EXPECT_THAT(Output(), HasSubstr("logging in with <sensitive>"));
}

}  // namespace
