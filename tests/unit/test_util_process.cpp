// run_process: exit status, line streaming, environment, timeouts and cancellation (the
// whole process group must be gone afterwards).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/process.h"

namespace {

namespace fs = std::filesystem;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using imgbake::ProcessSpec;
using imgbake::run_process;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

// State letter and process group of a pid from /proc, or nullopt when it does not exist.
struct ProcInfo {
  char state;
  pid_t pgrp;
};

std::optional<ProcInfo> ReadProc(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream rest(text.substr(paren + 1));
  ProcInfo info{};
  pid_t ppid = 0;
  rest >> info.state >> ppid >> info.pgrp;
  if (!rest) return std::nullopt;
  return info;
}

// A zombie has finished running; it only waits for its parent to collect it.
bool Alive(pid_t pid) {
  auto info = ReadProc(pid);
  return info && info->state != 'Z' && info->state != 'X';
}

std::vector<pid_t> LiveMembersOfGroup(pid_t pgid) {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    auto info = ReadProc(pid);
    if (info && info->pgrp == pgid && info->state != 'Z' && info->state != 'X') out.push_back(pid);
  }
  return out;
}

// Waits up to `limit` for `cond` to hold (processes killed by a signal may take a moment to go).
template <typename Cond>
bool Eventually(Cond cond, std::chrono::milliseconds limit = 3000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-proc-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (pid_t p : stray_)
      if (p > 0) kill(p, SIGKILL);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  int Run(std::vector<std::string> argv, std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    ProcessSpec spec;
    spec.argv = std::move(argv);
    spec.timeout = timeout;
    spec.cwd = dir_.string();
    return RunSpec(spec);
  }

  int RunSpec(const ProcessSpec& spec) {
    return run_process(
        spec, [this](std::string_view l) { out_.emplace_back(l); },
        [this](std::string_view l) { err_.emplace_back(l); }, cancel_);
  }

  std::optional<pid_t> ReadPid(const std::string& file) {
    std::ifstream in(dir_ / file);
    long pid = 0;
    if (!(in >> pid) || pid <= 0) return std::nullopt;
    stray_.push_back(static_cast<pid_t>(pid));
    return static_cast<pid_t>(pid);
  }

  fs::path dir_;
  CancelToken cancel_;
  std::vector<std::string> out_;
  std::vector<std::string> err_;
  std::vector<pid_t> stray_;
};

// ---------------------------------------------------------------- status and output

TEST_F(ProcessTest, ExitStatus) {
  EXPECT_EQ(Run({"true"}), 0);
  EXPECT_EQ(Run({"false"}), 1);
  EXPECT_EQ(Run({"sh", "-c", "exit 3"}), 3);
  EXPECT_EQ(Run({"sh", "-c", "exit 255"}), 255);
}

TEST_F(ProcessTest, KilledBySignalIs128PlusTheSignal) {
  EXPECT_EQ(Run({"sh", "-c", "kill -KILL $$"}), 128 + SIGKILL);
  EXPECT_EQ(Run({"sh", "-c", "kill -TERM $$"}), 128 + SIGTERM);
}

TEST_F(ProcessTest, StdoutAndStderrAreStreamedSeparately) {
  EXPECT_EQ(Run({"sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2"}), 0);
  EXPECT_THAT(out_, ElementsAre("out1", "out2"));
  EXPECT_THAT(err_, ElementsAre("err1", "err2"));
}

TEST_F(ProcessTest, LastLineWithoutNewlineIsDelivered) {
  EXPECT_EQ(Run({"sh", "-c", "printf 'a\\nb'; printf 'x\\ny' >&2"}), 0);
  EXPECT_THAT(out_, ElementsAre("a", "b"));
  EXPECT_THAT(err_, ElementsAre("x", "y"));
}

TEST_F(ProcessTest, EmptyLinesAreKeptAndCarriageReturnsDropped) {
  EXPECT_EQ(Run({"sh", "-c", "printf 'a\\n\\nb\\r\\nc\\n'"}), 0);
  EXPECT_THAT(out_, ElementsAre("a", "", "b", "c"));
}

TEST_F(ProcessTest, NoOutputNoLines) {
  EXPECT_EQ(Run({"true"}), 0);
  EXPECT_THAT(out_, IsEmpty());
  EXPECT_THAT(err_, IsEmpty());
}

TEST_F(ProcessTest, LargeOutputIsDeliveredCompletely) {
  EXPECT_EQ(Run({"sh", "-c", "seq 1 30000 >&2; seq 1 60000; exit 7"}), 7);
  ASSERT_EQ(out_.size(), 60000u);
  EXPECT_EQ(out_.front(), "1");
  EXPECT_EQ(out_[29999], "30000");
  EXPECT_EQ(out_.back(), "60000");
  ASSERT_EQ(err_.size(), 30000u);
  EXPECT_EQ(err_.back(), "30000");
}

TEST_F(ProcessTest, LongLineWithoutNewline) {
  EXPECT_EQ(Run({"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"}), 0);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0], std::string(200000, 'x'));
}

TEST_F(ProcessTest, StdinIsEmpty) {
  // A program that reads standard input must not wait for a terminal.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Run({"cat"}, 10s), 0);
  EXPECT_THAT(out_, IsEmpty());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST_F(ProcessTest, NullSinksAreAllowed) {
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "echo out; echo err >&2"};
  EXPECT_EQ(run_process(spec, nullptr, nullptr, cancel_), 0);
}

// ---------------------------------------------------------------- environment and cwd

TEST_F(ProcessTest, EnvAddIsVisibleToTheChild) {
  ASSERT_EQ(setenv("IMGBAKE_UT_PARENT", "inherited", 1), 0);
  ASSERT_EQ(setenv("IMGBAKE_UT_OVERRIDE", "old", 1), 0);
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "echo \"$IMGBAKE_UT_X\"; echo \"$IMGBAKE_UT_PARENT\"; echo \"$IMGBAKE_UT_OVERRIDE\""};
  spec.env_add = {{"IMGBAKE_UT_X", "hello world"}, {"IMGBAKE_UT_OVERRIDE", "new=value"}};
  EXPECT_EQ(RunSpec(spec), 0);
  EXPECT_THAT(out_, ElementsAre("hello world", "inherited", "new=value"));
  unsetenv("IMGBAKE_UT_PARENT");
  unsetenv("IMGBAKE_UT_OVERRIDE");
}

TEST_F(ProcessTest, EnvAddWithEmptyValue) {
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "if [ -n \"${IMGBAKE_UT_EMPTY+set}\" ]; then echo set; else echo unset; fi"};
  spec.env_add = {{"IMGBAKE_UT_EMPTY", ""}};
  EXPECT_EQ(RunSpec(spec), 0);
  EXPECT_THAT(out_, ElementsAre("set"));
}

TEST_F(ProcessTest, Cwd) {
  ProcessSpec spec;
  spec.argv = {"pwd", "-P"};
  spec.cwd = dir_.string();
  EXPECT_EQ(RunSpec(spec), 0);
  EXPECT_THAT(out_, ElementsAre(fs::canonical(dir_).string()));
}

TEST_F(ProcessTest, RelativeFilesAreResolvedInCwd) {
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "echo hi > created.txt"};
  spec.cwd = dir_.string();
  EXPECT_EQ(RunSpec(spec), 0);
  EXPECT_TRUE(fs::exists(dir_ / "created.txt"));
}

// ---------------------------------------------------------------- errors

TEST_F(ProcessTest, MissingProgramIsABuildError) {
  EXPECT_THROW(Run({"/nonexistent/imgbake-no-such-program"}), BuildError);
  EXPECT_THROW(Run({}), BuildError);
}

TEST_F(ProcessTest, ProgramNotOnPathSaysItIsNotInstalled) {
  try {
    Run({"imgbake-no-such-program-in-path"});
    ADD_FAILURE() << "no error";
  } catch (const BuildError& e) {
    EXPECT_STREQ(e.what(), "cannot run 'imgbake-no-such-program-in-path': it is not installed (not found on PATH)");
  }
}

TEST_F(ProcessTest, MissingCwdFailsTheRun) {
  ProcessSpec spec;
  spec.argv = {"true"};
  spec.cwd = (dir_ / "does-not-exist").string();
  try {
    RunSpec(spec);
    ADD_FAILURE() << "no error";
  } catch (const BuildError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot run 'true': its working directory " + spec.cwd + " does not exist");
  }
}

// ---------------------------------------------------------------- timeout

TEST_F(ProcessTest, TimeoutThrowsAndKillsTheChild) {
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(Run({"sh", "-c", "echo $$ > pidfile; echo started; sleep 30"}, 500ms), BuildError);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 5s);
  EXPECT_THAT(out_, ElementsAre("started"));
  auto pid = ReadPid("pidfile");
  ASSERT_TRUE(pid.has_value());
  EXPECT_FALSE(Alive(*pid)) << "pid " << *pid << " still runs";
  EXPECT_TRUE(Eventually([&] { return LiveMembersOfGroup(*pid).empty(); }));
}

TEST_F(ProcessTest, TimeoutMessageNamesTheProgram) {
  try {
    Run({"sleep", "30"}, 200ms);
    ADD_FAILURE() << "expected a timeout";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("sleep"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("timed out"));
  }
}

TEST_F(ProcessTest, TimeoutKillsAGroupThatIgnoresSigterm) {
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(Run({"sh", "-c", "trap '' TERM; echo $$ > pidfile; sleep 30 & echo $! > bgpid; wait; wait"}, 300ms),
               BuildError);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  auto pid = ReadPid("pidfile");
  auto bg = ReadPid("bgpid");
  ASSERT_TRUE(pid && bg);
  EXPECT_FALSE(Alive(*pid));
  EXPECT_TRUE(Eventually([&] { return !Alive(*bg); })) << "background pid " << *bg << " survived";
  EXPECT_TRUE(Eventually([&] { return LiveMembersOfGroup(*pid).empty(); }));
}

TEST_F(ProcessTest, NoTimeoutWhenTheChildFinishesInTime) {
  EXPECT_EQ(Run({"sh", "-c", "echo quick"}, 5s), 0);
  EXPECT_THAT(out_, ElementsAre("quick"));
}

// ---------------------------------------------------------------- cancellation

TEST_F(ProcessTest, CancellationFromAnotherThreadKillsTheWholeGroup) {
  std::thread canceller([this] {
    Eventually([this] { return fs::exists(dir_ / "bgpid") && fs::file_size(dir_ / "bgpid") > 0; }, 10s);
    std::this_thread::sleep_for(100ms);
    cancel_.cancel(SIGINT);
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(Run({"sh", "-c", "echo $$ > pidfile; sleep 30 & echo $! > bgpid.tmp; mv bgpid.tmp bgpid; wait"}),
               Cancelled);
  canceller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
  auto pid = ReadPid("pidfile");
  auto bg = ReadPid("bgpid");
  ASSERT_TRUE(pid && bg);
  EXPECT_FALSE(Alive(*pid));
  EXPECT_TRUE(Eventually([&] { return !Alive(*bg); })) << "background pid " << *bg << " survived";
  EXPECT_TRUE(Eventually([&] { return LiveMembersOfGroup(*pid).empty(); }));
}

TEST_F(ProcessTest, ChildRunsInItsOwnProcessGroup) {
  EXPECT_EQ(Run({"sh", "-c", "echo $$; ps -o pgid= -p $$ 2>/dev/null || cut -d' ' -f5 /proc/$$/stat"}), 0);
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(std::stol(out_[0]), std::stol(out_[1]));
  EXPECT_NE(std::stol(out_[1]), static_cast<long>(getpgrp()));
}

TEST_F(ProcessTest, AlreadyCancelledRunsNothing) {
  cancel_.cancel(SIGTERM);
  EXPECT_THROW(Run({"sh", "-c", "touch marker"}), Cancelled);
  EXPECT_FALSE(fs::exists(dir_ / "marker"));
}

// ---------------------------------------------------------------- background jobs

TEST_F(ProcessTest, BackgroundGrandchildHoldingThePipeDoesNotHang) {
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "sleep 30 & echo $! > bgpid; echo done"};
  spec.cwd = dir_.string();
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(RunSpec(spec), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_THAT(out_, ElementsAre("done"));
  ReadPid("bgpid");  // killed in TearDown
}

TEST_F(ProcessTest, ChattyBackgroundGrandchildDoesNotHang) {
  // A daemon started in the background that keeps logging to the inherited stdout must not
  // keep run_process waiting once the child itself has exited.
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "(while :; do echo tick; sleep 0.005; done) & echo $! > bgpid; echo done"};
  spec.cwd = dir_.string();
  spec.timeout = 8s;  // only a safety net: the run must end long before
  auto t0 = std::chrono::steady_clock::now();
  int status = -1;
  EXPECT_NO_THROW(status = RunSpec(spec));
  EXPECT_EQ(status, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ASSERT_FALSE(out_.empty());
  EXPECT_TRUE(std::find(out_.begin(), out_.end(), "done") != out_.end());
  ReadPid("bgpid");
}

TEST_F(ProcessTest, BackgroundGrandchildHoldingOnlyStderr) {
  ProcessSpec spec;
  spec.argv = {"sh", "-c", "sleep 30 >/dev/null & echo $! > bgpid; echo err >&2; exit 4"};
  spec.cwd = dir_.string();
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(RunSpec(spec), 4);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_THAT(err_, ElementsAre("err"));
  ReadPid("bgpid");
}

}  // namespace
