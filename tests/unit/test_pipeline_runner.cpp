// run_steps and step_key: the order of runs and cleanups under each -on-error mode, and
// cancellation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/pipeline.h"
#include "imgbake/ui.h"
#include "imgbake/util.h"

namespace {

using imgbake::BuildInfo;
using imgbake::CancelToken;
using imgbake::OnError;
using imgbake::OutputMode;
using imgbake::State;
using imgbake::Step;
using imgbake::StepList;
using imgbake::StepOutcome;
using imgbake::Ui;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

enum class Behaviour { Succeed, Throw, ThrowCancelled, CancelToken };

class FakeStep : public Step {
 public:
  FakeStep(std::string name, std::vector<std::string>& log, CancelToken& token, Behaviour b, bool on_abort, bool silent)
      : name_(std::move(name)), log_(log), token_(token), behaviour_(b), on_abort_(on_abort), silent_(silent) {}

  std::string name() const override { return name_; }
  nlohmann::json key_material(const State& /*st*/) const override { return {{"type", "fake"}, {"name", name_}}; }
  void run(State& /*st*/) override {
    log_.push_back("run:" + name_);
    switch (behaviour_) {
      case Behaviour::Succeed: break;
      case Behaviour::Throw: throw imgbake::BuildError("boom in " + name_);
      case Behaviour::ThrowCancelled: throw imgbake::Cancelled();
      case Behaviour::CancelToken:
        // What SIGINT does: the handler cancels the token; the step returns normally.
        token_.cancel(SIGINT);
        break;
    }
  }
  void cleanup(State& /*st*/) noexcept override { log_.push_back("cleanup:" + name_); }
  bool runs_on_abort() const override { return on_abort_; }
  bool silent() const override { return silent_; }

 private:
  std::string name_;
  std::vector<std::string>& log_;
  CancelToken& token_;
  Behaviour behaviour_;
  bool on_abort_;
  bool silent_;
};

class RunnerTest : public ::testing::Test {
 protected:
  RunnerTest()
      : file_(std::tmpfile()), ui_(OutputMode::Json, file_, file_, false, std::make_shared<imgbake::Masker>()) {}
  ~RunnerTest() override { std::fclose(file_); }

  void Add(const std::string& name, Behaviour b = Behaviour::Succeed, bool on_abort = false, bool silent = false) {
    steps_.push_back(std::make_unique<FakeStep>(name, log_, cancel_, b, on_abort, silent));
  }

  StepOutcome Run(OnError on_error = OnError::Cleanup) {
    BuildInfo info;
    info.name = "web";
    info.type = "null";
    info.on_error = on_error;
    State st(ui_, cancel_, info);
    return imgbake::run_steps(steps_, st);
  }

  std::vector<nlohmann::json> Events(const std::string& kind) {
    std::fflush(file_);
    std::rewind(file_);
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) text.append(buf, n);
    std::fseek(file_, 0, SEEK_END);
    std::vector<nlohmann::json> out;
    for (const auto& line : imgbake::util::split(text, '\n')) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line);
      if (j["event"] == kind) out.push_back(j);
    }
    return out;
  }

  FILE* file_;
  Ui ui_;
  CancelToken cancel_;
  StepList steps_;
  std::vector<std::string> log_;
};

// ---------------------------------------------------------------- success

TEST_F(RunnerTest, SuccessRunsEveryStepThenEveryCleanupInReverse) {
  Add("a");
  Add("b");
  Add("c");
  StepOutcome out = Run();
  EXPECT_TRUE(out.ok);
  EXPECT_FALSE(out.cancelled);
  EXPECT_TRUE(out.failed_step.empty());
  EXPECT_TRUE(out.error.empty());
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "run:c", "cleanup:c", "cleanup:b", "cleanup:a"));
  ASSERT_EQ(out.steps.size(), 3u);
  EXPECT_EQ(out.steps[0].name, "a");
  EXPECT_EQ(out.steps[2].name, "c");
  for (const auto& s : out.steps) EXPECT_TRUE(s.ok);
}

TEST_F(RunnerTest, NoStepsIsASuccess) {
  StepOutcome out = Run();
  EXPECT_TRUE(out.ok);
  EXPECT_THAT(log_, IsEmpty());
}

TEST_F(RunnerTest, SilentStepsRunAndCleanUpButAreNotShownOrTimed) {
  Add("a");
  Add("bookkeeping", Behaviour::Succeed, false, /*silent=*/true);
  Add("c");
  StepOutcome out = Run();
  EXPECT_TRUE(out.ok);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:bookkeeping", "run:c", "cleanup:c", "cleanup:bookkeeping", "cleanup:a"));
  ASSERT_EQ(out.steps.size(), 2u);
  auto starts = Events("step_start");
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0]["step"], "a");
  EXPECT_EQ(starts[1]["step"], "c");
}

TEST_F(RunnerTest, StepEventsCarryTheBuildNameAndStatus) {
  Add("a");
  Add("b", Behaviour::Throw);
  Run();
  auto ends = Events("step_end");
  ASSERT_EQ(ends.size(), 2u);
  EXPECT_EQ(ends[0]["build"], "web");
  EXPECT_EQ(ends[0]["status"], "ok");
  EXPECT_EQ(ends[1]["step"], "b");
  EXPECT_EQ(ends[1]["status"], "failed");
  auto errors = Events("error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0]["text"].get<std::string>(), HasSubstr("boom in b"));
}

// ---------------------------------------------------------------- failure

TEST_F(RunnerTest, FailureStopsAndCleansUpInReverseIncludingTheFailedStep) {
  Add("a");
  Add("b");
  Add("c", Behaviour::Throw);
  Add("d");
  StepOutcome out = Run(OnError::Cleanup);
  EXPECT_FALSE(out.ok);
  EXPECT_FALSE(out.cancelled);
  EXPECT_EQ(out.failed_step, "c");
  EXPECT_THAT(out.error, HasSubstr("c"));
  EXPECT_THAT(out.error, HasSubstr("boom in c"));
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "run:c", "cleanup:c", "cleanup:b", "cleanup:a"));
  ASSERT_EQ(out.steps.size(), 3u);
  EXPECT_TRUE(out.steps[0].ok);
  EXPECT_TRUE(out.steps[1].ok);
  EXPECT_FALSE(out.steps[2].ok);
}

TEST_F(RunnerTest, FailureOfTheFirstStep) {
  Add("a", Behaviour::Throw);
  Add("b");
  StepOutcome out = Run();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failed_step, "a");
  EXPECT_THAT(log_, ElementsAre("run:a", "cleanup:a"));
}

TEST_F(RunnerTest, FailureOfASilentStepAlsoCleansUp) {
  Add("a");
  Add("hidden", Behaviour::Throw, false, /*silent=*/true);
  Add("c");
  StepOutcome out = Run();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failed_step, "hidden");
  EXPECT_THAT(log_, ElementsAre("run:a", "run:hidden", "cleanup:hidden", "cleanup:a"));
}

TEST_F(RunnerTest, AbortRunsNoCleanup) {
  Add("a");
  Add("b", Behaviour::Throw);
  Add("c");
  StepOutcome out = Run(OnError::Abort);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failed_step, "b");
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b"));
}

TEST_F(RunnerTest, AbortStillCleansUpAfterSuccess) {
  Add("a");
  Add("b");
  StepOutcome out = Run(OnError::Abort);
  EXPECT_TRUE(out.ok);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "cleanup:b", "cleanup:a"));
}

TEST_F(RunnerTest, RunCleanupProvisionerRunsOnlyTheCleanupsMarkedForAbort) {
  Add("a", Behaviour::Succeed, /*on_abort=*/true);
  Add("b", Behaviour::Succeed, /*on_abort=*/false);
  Add("c", Behaviour::Succeed, /*on_abort=*/true);
  Add("d", Behaviour::Throw, /*on_abort=*/false);
  Add("e", Behaviour::Succeed, /*on_abort=*/true);
  StepOutcome out = Run(OnError::RunCleanupProvisioner);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failed_step, "d");
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "run:c", "run:d", "cleanup:c", "cleanup:a"));
}

TEST_F(RunnerTest, RunCleanupProvisionerAfterSuccessCleansUpEverything) {
  Add("a", Behaviour::Succeed, true);
  Add("b", Behaviour::Succeed, false);
  StepOutcome out = Run(OnError::RunCleanupProvisioner);
  EXPECT_TRUE(out.ok);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "cleanup:b", "cleanup:a"));
}

TEST_F(RunnerTest, AskWithoutATerminalCleansUp) {
  // The Ui writes to a file, so there is nobody to ask: imgbake cleans up instead of hanging.
  Add("a");
  Add("b", Behaviour::Throw);
  StepOutcome out = Run(OnError::Ask);
  EXPECT_FALSE(out.ok);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "cleanup:b", "cleanup:a"));
}

// ---------------------------------------------------------------- cancellation

TEST_F(RunnerTest, CancelFromInsideAStepStopsAndCleansUpInReverse) {
  Add("a");
  Add("b", Behaviour::CancelToken);
  Add("c");
  StepOutcome out = Run();
  EXPECT_FALSE(out.ok);
  EXPECT_TRUE(out.cancelled);
  EXPECT_EQ(out.failed_step, "b");
  EXPECT_TRUE(cancel_.cancelled());
  EXPECT_EQ(cancel_.signal(), SIGINT);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "cleanup:b", "cleanup:a"));
}

TEST_F(RunnerTest, CancelledExceptionFromAStep) {
  Add("a");
  Add("b", Behaviour::ThrowCancelled);
  Add("c");
  StepOutcome out = Run();
  EXPECT_FALSE(out.ok);
  EXPECT_TRUE(out.cancelled);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "cleanup:b", "cleanup:a"));
}

TEST_F(RunnerTest, CancelAlwaysCleansUpEvenUnderAbort) {
  Add("a");
  Add("b", Behaviour::CancelToken);
  Add("c");
  StepOutcome out = Run(OnError::Abort);
  EXPECT_TRUE(out.cancelled);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "cleanup:b", "cleanup:a"));
}

TEST_F(RunnerTest, CancelAlwaysCleansUpEvenUnderRunCleanupProvisioner) {
  Add("a", Behaviour::Succeed, false);
  Add("b", Behaviour::CancelToken, true);
  StepOutcome out = Run(OnError::RunCleanupProvisioner);
  EXPECT_TRUE(out.cancelled);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:b", "cleanup:b", "cleanup:a"));
}

TEST_F(RunnerTest, AlreadyCancelledRunsNothing) {
  cancel_.cancel(SIGTERM);
  Add("a");
  Add("b");
  StepOutcome out = Run();
  EXPECT_FALSE(out.ok);
  EXPECT_TRUE(out.cancelled);
  EXPECT_THAT(log_, IsEmpty());
}

TEST_F(RunnerTest, CancelledByASilentStep) {
  Add("a");
  Add("hidden", Behaviour::CancelToken, false, /*silent=*/true);
  Add("c");
  StepOutcome out = Run();
  EXPECT_FALSE(out.ok);
  EXPECT_TRUE(out.cancelled);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:hidden", "cleanup:hidden", "cleanup:a"));
}

class NoKeyStep : public Step {
 public:
  explicit NoKeyStep(std::vector<std::string>& log) : log_(log) {}
  std::string name() const override { return "nokey"; }
  nlohmann::json key_material(const State& /*st*/) const override { throw std::runtime_error("unreadable file"); }
  void run(State& /*st*/) override { log_.push_back("run:nokey"); }
  void cleanup(State& /*st*/) noexcept override { log_.push_back("cleanup:nokey"); }

 private:
  std::vector<std::string>& log_;
};

TEST_F(RunnerTest, AStepWithoutAKeyStillRuns) {
  Add("a");
  steps_.push_back(std::make_unique<NoKeyStep>(log_));
  Add("c");
  StepOutcome out = Run();
  EXPECT_TRUE(out.ok);
  EXPECT_THAT(log_, ElementsAre("run:a", "run:nokey", "run:c", "cleanup:c", "cleanup:nokey", "cleanup:a"));
  auto warnings = Events("warning");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0]["text"].get<std::string>(), HasSubstr("unreadable file"));
}

// ---------------------------------------------------------------- step keys

TEST(StepKey, FormatAndDeterminism) {
  nlohmann::json m = {{"type", "shell-local"}, {"inline", {"echo hi"}}};
  const std::string k1 = imgbake::step_key(m, "");
  const std::string k2 = imgbake::step_key(m, "");
  EXPECT_EQ(k1, k2);
  EXPECT_TRUE(std::regex_match(k1, std::regex("^sha256:[0-9a-f]{64}$"))) << k1;
}

TEST(StepKey, IsTheSha256OfTheCanonicalPair) {
  // {"prev": prev_key, "step": material}, keys sorted, compact.
  nlohmann::json m = nlohmann::json::parse(R"({"b": 2, "a": [1, "x"]})");
  EXPECT_EQ(imgbake::step_key(m, "sha256:00"),
            "sha256:" + imgbake::util::sha256_hex(R"({"prev":"sha256:00","step":{"a":[1,"x"],"b":2}})"));
}

TEST(StepKey, ChangesWithTheMaterial) {
  nlohmann::json a = {{"type", "file"}, {"content", "x"}};
  nlohmann::json b = {{"type", "file"}, {"content", "y"}};
  nlohmann::json c = {{"type", "file"}, {"content", "x"}, {"extra", nullptr}};
  nlohmann::json d = {{"type", "file"}, {"content", 1}};
  nlohmann::json e = {{"type", "file"}, {"content", "1"}};
  EXPECT_NE(imgbake::step_key(a, ""), imgbake::step_key(b, ""));
  EXPECT_NE(imgbake::step_key(a, ""), imgbake::step_key(c, ""));
  EXPECT_NE(imgbake::step_key(d, ""), imgbake::step_key(e, ""));
}

TEST(StepKey, ChangesWithThePreviousKey) {
  nlohmann::json m = {{"type", "file"}};
  const std::string first = imgbake::step_key(m, "");
  EXPECT_NE(imgbake::step_key(m, first), imgbake::step_key(m, ""));
  EXPECT_NE(imgbake::step_key(m, "sha256:aa"), imgbake::step_key(m, "sha256:ab"));
}

TEST(StepKey, IndependentOfKeyOrder) {
  auto m1 = nlohmann::json::parse(R"({"type": "file", "opts": {"x": 1, "y": [1, {"p": 1, "q": 2}]}, "z": true})");
  auto m2 = nlohmann::json::parse(R"({"z": true, "opts": {"y": [1, {"q": 2, "p": 1}], "x": 1}, "type": "file"})");
  EXPECT_EQ(imgbake::step_key(m1, "sha256:prev"), imgbake::step_key(m2, "sha256:prev"));
  // Array order, on the other hand, matters.
  auto m3 = nlohmann::json::parse(R"({"type": "file", "opts": {"x": 1, "y": [{"p": 1, "q": 2}, 1]}, "z": true})");
  EXPECT_NE(imgbake::step_key(m1, "sha256:prev"), imgbake::step_key(m3, "sha256:prev"));
}

TEST_F(RunnerTest, StepKeysAreChainedThroughTheRun) {
  Add("a");
  Add("b");
  Run();
  auto starts = Events("step_start");
  ASSERT_EQ(starts.size(), 2u);
  const std::string ka = imgbake::step_key({{"type", "fake"}, {"name", "a"}}, "");
  const std::string kb = imgbake::step_key({{"type", "fake"}, {"name", "b"}}, ka);
  EXPECT_EQ(starts[0]["key"], ka);
  EXPECT_EQ(starts[1]["key"], kb);
}

TEST(OnErrorFlag, Parse) {
  EXPECT_EQ(imgbake::parse_on_error("cleanup"), OnError::Cleanup);
  EXPECT_EQ(imgbake::parse_on_error("abort"), OnError::Abort);
  EXPECT_EQ(imgbake::parse_on_error("ask"), OnError::Ask);
  EXPECT_EQ(imgbake::parse_on_error("run-cleanup-provisioner"), OnError::RunCleanupProvisioner);
  EXPECT_FALSE(imgbake::parse_on_error("Abort").has_value());
  EXPECT_FALSE(imgbake::parse_on_error("").has_value());
}

}  // namespace

// ---------------------------------------------------------------- long silent steps

namespace {

// Sleeps `total`, printing a line every `every` (0: never).
class SleepyStep : public Step {
 public:
  SleepyStep(std::string name, std::chrono::milliseconds total, std::chrono::milliseconds every)
      : name_(std::move(name)), total_(total), every_(every) {}
  std::string name() const override { return name_; }
  nlohmann::json key_material(const State& /*st*/) const override { return {{"type", "sleepy"}}; }
  void run(State& st) override {
    auto end = std::chrono::steady_clock::now() + total_;
    while (std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(every_.count() > 0 ? every_ : std::chrono::milliseconds(50));
      if (every_.count() > 0) st.message("working");
    }
  }

 private:
  std::string name_;
  std::chrono::milliseconds total_, every_;
};

}  // namespace

TEST_F(RunnerTest, ALongSilentStepSaysItIsStillRunning) {
  ASSERT_EQ(setenv("IMGBAKE_PROGRESS_INTERVAL", "1", 1), 0);
  steps_.push_back(
      std::make_unique<SleepyStep>("debootstrap", std::chrono::milliseconds(2600), std::chrono::milliseconds(0)));
  steps_.push_back(
      std::make_unique<SleepyStep>("chatty", std::chrono::milliseconds(2600), std::chrono::milliseconds(200)));
  StepOutcome out = Run();
  unsetenv("IMGBAKE_PROGRESS_INTERVAL");
  EXPECT_TRUE(out.ok);
  std::vector<std::string> notices;
  for (const auto& e : Events("message")) {
    std::string text = e["text"];
    if (text.starts_with("still running")) notices.push_back(text);
  }
  // About one per second of silence (2 or 3 in 2.6 s, whatever the machine's load), naming the
  // step and the time so far; none for the step that keeps talking.
  ASSERT_GE(notices.size(), 1u);
  EXPECT_LE(notices.size(), 3u);
  for (const auto& n : notices) EXPECT_THAT(n, ::testing::MatchesRegex("still running: debootstrap \\(.*s\\)"));
}

TEST(UiOutput, CarriageReturnProgressKeepsItsFinalState) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  {
    Ui ui(OutputMode::Human, f, f, false, nullptr);
    ui.output("debian", imgbake::Stream::Stdout, "(Reading database ... 5%\r(Reading database ... 100%\r(done.)");
    ui.output("debian", imgbake::Stream::Stdout, "windows line\r");
  }
  std::fclose(f);
  std::string text(buf, len);
  std::free(buf);
  EXPECT_EQ(text, "    debian: (done.)\n    debian: windows line\n");
}
