// The "shell" and "file" provisioners against a real OpenSSH server on 127.0.0.1 (the server
// is this machine, so the tests check the remote side by looking at the file system), plus a
// fake communicator where the calls themselves are what is checked (round trips, retries).
// The sshd tests skip, saying why, when sshd is missing or does not start.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/config.h"
#include "imgbake/error.h"
#include "imgbake/json.h"
#include "imgbake/pipeline.h"
#include "imgbake/provisioner.h"
#include "imgbake/ssh.h"
#include "imgbake/ui.h"
#include "imgbake/util.h"
#include "sshd_fixture.h"

namespace {

namespace fs = std::filesystem;
using imgbake::BuildError;
using imgbake::BuildInfo;
using imgbake::Cancelled;
using imgbake::CancelToken;
using imgbake::Communicator;
using imgbake::ConfigReader;
using imgbake::Diagnostic;
using imgbake::Diagnostics;
using imgbake::LineSink;
using imgbake::OutputMode;
using imgbake::Provisioner;
using imgbake::ProvisionerRegistry;
using imgbake::RemoteCommand;
using imgbake::RunResult;
using imgbake::SshCommunicator;
using imgbake::SshConfig;
using imgbake::State;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using sshd_fixture::Eventually;
using sshd_fixture::FreePort;
using sshd_fixture::ModeOf;
using sshd_fixture::ReadFile;
using sshd_fixture::Sshd;
using sshd_fixture::UserName;
using sshd_fixture::WriteFile;

// Makes and prepares provisioners, runs them with a Ui that writes JSON events to a file, and
// reads back what a user would have seen.
class ProvisionerHarness {
 public:
  explicit ProvisionerHarness(const fs::path& ui_file) : ui_path_(ui_file) {
    ui_out_ = std::fopen(ui_file.c_str(), "a");
    ui_ = std::make_unique<imgbake::Ui>(OutputMode::Json, ui_out_, ui_out_, false, std::make_shared<imgbake::Masker>());
  }
  ~ProvisionerHarness() { std::fclose(ui_out_); }
  ProvisionerHarness(const ProvisionerHarness&) = delete;
  ProvisionerHarness& operator=(const ProvisionerHarness&) = delete;

  // Prepares a provisioner from JSON text; the diagnostics are left in `diags`.
  std::unique_ptr<Provisioner> Prepare(const std::string& type, const std::string& text, Diagnostics& diags) {
    auto p = ProvisionerRegistry::instance().create(type);
    if (!p) return nullptr;
    imgbake::json::Value v = imgbake::json::parse(text);
    ConfigReader reader(v, "t.json", "provisioner 1 (" + type + ")", diags);
    p->prepare(reader);
    reader.finish();
    return p;
  }
  // Prepares one that must be valid.
  std::unique_ptr<Provisioner> Make(const std::string& type, const nlohmann::json& config) {
    Diagnostics diags;
    auto p = Prepare(type, config.dump(), diags);
    for (const auto& d : diags.items()) ADD_FAILURE() << d.str();
    return p;
  }

  void Provision(Provisioner& p, Communicator* comm, const CancelToken& cancel) {
    BuildInfo info;
    info.name = "web";
    info.type = "qemu";
    info.run_uuid = "5bbca296-f2e7-4bd3-89ab-dcdc7baa43f1";
    State st(*ui_, cancel, info);
    st.communicator = comm;
    p.provision(st);
  }

  // The events of one kind, in order.
  std::vector<nlohmann::json> Events(const std::string& kind) const {
    std::vector<nlohmann::json> out;
    for (const auto& line : imgbake::util::split(ReadFile(ui_path_), '\n')) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line);
      if (j["event"] == kind) out.push_back(j);
    }
    return out;
  }
  std::vector<std::string> Output(const std::string& stream) const {
    std::vector<std::string> out;
    for (const auto& e : Events("log"))
      if (e["stream"] == stream) out.push_back(e["text"]);
    return out;
  }
  std::string Messages() const {
    std::string s;
    for (const char* kind : {"message", "warning"})
      for (const auto& e : Events(kind)) s += e["text"].get<std::string>() + "\n";
    return s;
  }

 private:
  fs::path ui_path_;
  FILE* ui_out_;
  std::unique_ptr<imgbake::Ui> ui_;
};

// ---------------------------------------------------------------- against a real sshd

class ShellFileSshTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists("/usr/sbin/sshd")) {
      skip_ = "/usr/sbin/sshd is missing (Debian: apt-get install openssh-server)";
      return;
    }
    std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-prov-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      skip_ = "mkdtemp failed";
      return;
    }
    root_ = tmpl;
    if (std::string why = sshd_fixture::MakeSshKeys(root_); !why.empty()) {
      skip_ = why;
      return;
    }
    server_ = std::make_unique<Sshd>(root_, root_ / "sshd", FreePort(), Sshd::Options{});
    if (std::string why = server_->Start(); !why.empty()) skip_ = "cannot start sshd: " + why;
  }
  static void TearDownTestSuite() {
    server_.reset();
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    dir_ = root_ / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::create_directories(dir_);
    harness_ = std::make_unique<ProvisionerHarness>(dir_ / "ui.jsonl");
    SshConfig c;
    c.host = "127.0.0.1";
    c.port = server_->port();
    c.username = UserName();
    c.private_key_file = (root_ / "id").string();
    c.timeout = 20s;
    c.handshake_attempts = 3;
    comm_ = SshCommunicator::connect(c, cancel_, nullptr);
  }

  std::unique_ptr<Provisioner> Make(const std::string& type, const nlohmann::json& config) {
    return harness_->Make(type, config);
  }
  void Provision(Provisioner& p) { harness_->Provision(p, comm_.get(), cancel_); }
  // Runs and returns the error message ("" when it succeeded).
  std::string ProvisionError(Provisioner& p) {
    try {
      Provision(p);
    } catch (const BuildError& e) {
      return e.what();
    }
    return "";
  }
  std::vector<std::string> Stdout() const { return harness_->Output("stdout"); }
  std::vector<std::string> Stderr() const { return harness_->Output("stderr"); }

  // Where scripts go on the "machine": a folder of this test's own.
  std::string RemoteFolder() {
    fs::path f = dir_ / "remote";
    fs::create_directories(f);
    return f.string();
  }
  std::vector<std::string> FilesIn(const fs::path& d) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  static inline std::string skip_;
  static inline fs::path root_;
  static inline std::unique_ptr<Sshd> server_;
  fs::path dir_;
  CancelToken cancel_;
  std::unique_ptr<ProvisionerHarness> harness_;
  std::unique_ptr<SshCommunicator> comm_;
};

// ---------------------------------------------------------------- shell

TEST_F(ShellFileSshTest, InlineOutputArrivesLineByLineWhileTheScriptRuns) {
  fs::path flag = dir_ / "go-on";
  auto p = Make("shell",
                {{"inline",
                  {"echo first", "echo to-stderr >&2",
                   "i=0; while [ ! -e '" + flag.string() + "' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
                   "echo second"}},
                 {"remote_folder", RemoteFolder()}});
  std::string error;
  std::thread runner([&] {
    try {
      Provision(*p);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  // "first" is shown while the script still waits for the flag: it was not held back. The bounds
  // (60 s here and in the script) only matter when it fails: a loaded CI machine took more than 5 s
  // to connect, upload and start the script.
  bool first_seen = Eventually([&] { return !Stdout().empty(); }, 60000ms);
  std::vector<std::string> while_running = Stdout();
  WriteFile(flag, "", 0644);
  runner.join();
  ASSERT_TRUE(first_seen);
  EXPECT_THAT(while_running, ElementsAre("first"));
  EXPECT_EQ(error, "");
  EXPECT_THAT(Stdout(), ElementsAre("first", "second"));
  EXPECT_THAT(Stderr(), ElementsAre("to-stderr"));
  EXPECT_THAT(harness_->Messages(), HasSubstr("running inline script \"echo first\" (4 lines) on the machine"));
}

TEST_F(ShellFileSshTest, InlineShebangIsDefaultShMinusE) {
  auto p = Make("shell", {{"inline", {"false", "echo not reached"}}, {"remote_folder", RemoteFolder()}});
  std::string error = ProvisionError(*p);
  EXPECT_EQ(error, "inline script \"false\" (2 lines) exited with status 1 (valid: 0)");
  EXPECT_THAT(Stdout(), IsEmpty());

  auto bash = Make("shell", {{"inline", {"echo \"${BASH_VERSION:+bash}\""}},
                             {"inline_shebang", "/bin/bash"},
                             {"remote_folder", RemoteFolder()}});
  Provision(*bash);
  EXPECT_THAT(Stdout(), ElementsAre("bash"));
}

TEST_F(ShellFileSshTest, ScriptFileGetsTheEnvironmentWithQuotesIntact) {
  fs::path script = dir_ / "env.sh";
  // Written with Windows line endings: converted, as Packer does unless "binary" is set.
  WriteFile(script,
            "#!/bin/sh\r\nprintf '[%s]\\n' \"$GREETING\" \"$QUOTED\" \"$FROM_MAP\" \"$PACKER_BUILD_NAME\" "
            "\"$PACKER_BUILDER_TYPE\" \"$PACKER_RUN_UUID\" \"$IMGBAKE_BUILD_NAME\"\r\n",
            0644);
  auto p = Make("shell", {{"script", script.string()},
                          {"environment_vars", {"GREETING=hello world", "QUOTED=it's a \"quoted\" $HOME `id`"}},
                          {"env", {{"FROM_MAP", "from env"}}},
                          {"remote_folder", RemoteFolder()}});
  Provision(*p);
  EXPECT_THAT(Stdout(), ElementsAre("[hello world]", "[it's a \"quoted\" $HOME `id`]", "[from env]", "[web]", "[qemu]",
                                    "[5bbca296-f2e7-4bd3-89ab-dcdc7baa43f1]", "[web]"));
  EXPECT_THAT(Stderr(), IsEmpty());
  EXPECT_THAT(harness_->Messages(), HasSubstr("running script " + script.string()));
}

TEST_F(ShellFileSshTest, FailingScriptIsAnErrorNamingItsStatus) {
  fs::path script = dir_ / "fail.sh";
  WriteFile(script, "#!/bin/sh\necho about to fail\nexit 3\n", 0755);
  auto p = Make("shell", {{"scripts", {script.string()}}, {"remote_folder", RemoteFolder()}});
  EXPECT_EQ(ProvisionError(*p), "script " + script.string() + " exited with status 3 (valid: 0)");
  EXPECT_THAT(Stdout(), ElementsAre("about to fail"));
  // The script is removed on failure too.
  EXPECT_THAT(FilesIn(RemoteFolder()), IsEmpty());

  auto accepting =
      Make("shell", {{"scripts", {script.string()}}, {"valid_exit_codes", {0, 3}}, {"remote_folder", RemoteFolder()}});
  EXPECT_EQ(ProvisionError(*accepting), "");
  auto listing =
      Make("shell", {{"scripts", {script.string()}}, {"valid_exit_codes", {0, 4}}, {"remote_folder", RemoteFolder()}});
  EXPECT_THAT(ProvisionError(*listing), HasSubstr("exited with status 3 (valid: 0, 4)"));
}

TEST_F(ShellFileSshTest, ScriptsRunInOrderAndStopAtTheFirstFailure) {
  fs::path a = dir_ / "a.sh", b = dir_ / "b.sh", c = dir_ / "c.sh";
  WriteFile(a, "#!/bin/sh\necho a\n", 0644);
  WriteFile(b, "#!/bin/sh\necho b\nexit 7\n", 0644);
  WriteFile(c, "#!/bin/sh\necho c\n", 0644);
  auto p = Make("shell", {{"scripts", {a.string(), b.string(), c.string()}}, {"remote_folder", RemoteFolder()}});
  EXPECT_THAT(ProvisionError(*p), HasSubstr("script " + b.string() + " exited with status 7"));
  EXPECT_THAT(Stdout(), ElementsAre("a", "b"));
}

TEST_F(ShellFileSshTest, RemoteScriptIsRemovedUnlessSkipClean) {
  std::string remote = (fs::path(RemoteFolder()) / "provision.sh").string();
  auto p = Make("shell", {{"inline", {"echo \"running $0\""}}, {"remote_path", remote}});
  Provision(*p);
  EXPECT_THAT(Stdout(), ElementsAre("running " + remote));
  EXPECT_FALSE(fs::exists(remote));

  auto kept = Make("shell", {{"inline", {"echo kept"}}, {"remote_path", remote}, {"skip_clean", true}});
  Provision(*kept);
  ASSERT_TRUE(fs::exists(remote));
  EXPECT_EQ(ReadFile(remote), "#!/bin/sh -e\necho kept\n");
  EXPECT_EQ(ModeOf(remote), 0755u);
}

TEST_F(ShellFileSshTest, RemoteFolderAndRemoteFile) {
  auto p = Make("shell", {{"inline", {"echo $0"}}, {"remote_folder", RemoteFolder()}, {"remote_file", "setup.sh"}});
  Provision(*p);
  EXPECT_THAT(Stdout(), ElementsAre(RemoteFolder() + "/setup.sh"));

  auto defaulted = Make("shell", {{"inline", {"echo $0"}}});
  Provision(*defaulted);
  ASSERT_EQ(Stdout().size(), 2u);
  EXPECT_THAT(Stdout()[1], ::testing::MatchesRegex("/tmp/script_[0-9]+\\.sh"));
  EXPECT_FALSE(fs::exists(Stdout()[1]));
}

TEST_F(ShellFileSshTest, ExecuteCommandWithAWrapper) {
  // A sudo-like wrapper: the command line that runs the script is the user's own.
  auto p = Make("shell", {{"inline", {"echo \"$WRAPPED $GREETING $PACKER_BUILD_NAME\""}},
                          {"environment_vars", {"GREETING=hi"}},
                          {"execute_command", "env WRAPPED=yes sh -c '{{.Vars}} {{.Path}}'"},
                          {"remote_folder", RemoteFolder()}});
  Provision(*p);
  EXPECT_THAT(Stdout(), ElementsAre("yes hi web"));
  EXPECT_THAT(FilesIn(RemoteFolder()), IsEmpty());

  // Vars that need quoting survive such a wrapper through use_env_var_file.
  auto with_file = Make("shell", {{"inline", {"printf '[%s]\\n' \"$WRAPPED\" \"$QUOTED\""}},
                                  {"environment_vars", {"QUOTED=it's got spaces"}},
                                  {"use_env_var_file", true},
                                  {"execute_command", "env WRAPPED=yes sh -c '{{.Vars}} {{.Path}}'"},
                                  {"remote_folder", RemoteFolder()}});
  Provision(*with_file);
  EXPECT_THAT(Stdout(), ElementsAre("yes hi web", "[yes]", "[it's got spaces]"));
  EXPECT_THAT(FilesIn(RemoteFolder()), IsEmpty());  // the variables file is gone too
}

TEST_F(ShellFileSshTest, UseEnvVarFileSourcesTheVariablesFromAFile) {
  fs::path a = dir_ / "a.sh", b = dir_ / "b.sh";
  WriteFile(a, "#!/bin/sh\nprintf 'a [%s]\\n' \"$QUOTED\"\n", 0644);
  WriteFile(b, "#!/bin/sh\nprintf 'b [%s] [%s]\\n' \"$QUOTED\" \"$PACKER_BUILD_NAME\"\n", 0644);
  auto p = Make("shell", {{"scripts", {a.string(), b.string()}},
                          {"environment_vars", {"QUOTED=it's \"here\""}},
                          {"use_env_var_file", true},
                          {"remote_folder", RemoteFolder()}});
  Provision(*p);
  EXPECT_THAT(Stdout(), ElementsAre("a [it's \"here\"]", "b [it's \"here\"] [web]"));
  EXPECT_THAT(FilesIn(RemoteFolder()), IsEmpty());

  // A failing first script leaves neither the script nor the variables behind.
  WriteFile(a, "#!/bin/sh\nexit 5\n", 0644);
  auto failing = Make("shell", {{"scripts", {a.string(), b.string()}},
                                {"environment_vars", {"SECRET=s3cret"}},
                                {"use_env_var_file", true},
                                {"remote_folder", RemoteFolder()}});
  EXPECT_THAT(ProvisionError(*failing), HasSubstr("exited with status 5"));
  EXPECT_THAT(FilesIn(RemoteFolder()), IsEmpty());

  // With skip_clean the file is left, readable only by its owner, in `export` lines.
  auto kept = Make("shell", {{"inline", {"true"}},
                             {"environment_vars", {"QUOTED=it's"}},
                             {"use_env_var_file", true},
                             {"skip_clean", true},
                             {"remote_folder", RemoteFolder()}});
  Provision(*kept);
  std::string var_file;
  for (const auto& name : FilesIn(RemoteFolder()))
    if (name.rfind("varfile_", 0) == 0) var_file = (fs::path(RemoteFolder()) / name).string();
  ASSERT_NE(var_file, "") << "no varfile_*.sh in " << RemoteFolder();
  EXPECT_EQ(ModeOf(var_file), 0600u);
  EXPECT_THAT(ReadFile(var_file), HasSubstr("export QUOTED='it'\"'\"'s'\n"));
}

// Kills the sshd process that serves this session (the nearest ancestor named sshd): the
// connection drops as it does when a script reboots the machine.
const char* const kDropConnection =
    "p=$PPID; while [ \"$p\" -gt 1 ] && [ \"$(cat /proc/$p/comm)\" != sshd ]; do p=$(cut -d' ' -f4 /proc/$p/stat); "
    "done; echo dropping; sleep 0.3; kill -9 $p; sleep 20";

TEST_F(ShellFileSshTest, UnexpectedDisconnectIsAnError) {
  auto p = Make("shell", {{"inline", {kDropConnection}}, {"remote_folder", RemoteFolder()}});
  auto t0 = Clock::now();
  std::string error = ProvisionError(*p);
  EXPECT_THAT(error, HasSubstr("connection to the machine dropped while running inline script"));
  EXPECT_THAT(error, HasSubstr("\"expect_disconnect\": true"));
  // Not the script's sleep (20 s): the drop is noticed at once; the bound leaves room for a
  // loaded machine's connect and upload.
  EXPECT_LT(Clock::now() - t0, 15s);
  EXPECT_THAT(Stdout(), ElementsAre("dropping"));
}

TEST_F(ShellFileSshTest, ExpectedDisconnectIsAcceptedAndTheScriptRemoved) {
  std::string remote = (fs::path(RemoteFolder()) / "reboot.sh").string();
  auto p = Make("shell", {{"inline", {kDropConnection}}, {"remote_path", remote}, {"expect_disconnect", true}});
  EXPECT_EQ(ProvisionError(*p), "");
  EXPECT_THAT(harness_->Messages(), HasSubstr("the connection dropped while running inline script"));
  // Removed after reconnecting (the EXIT trap could not be relied on).
  EXPECT_FALSE(fs::exists(remote));
  // The communicator is usable afterwards.
  auto next = Make("shell", {{"inline", {"echo after"}}, {"remote_folder", RemoteFolder()}});
  Provision(*next);
  EXPECT_THAT(Stdout(), ElementsAre("dropping", "after"));
}

TEST_F(ShellFileSshTest, CancelStopsARunningScript) {
  auto p = Make("shell", {{"inline", {"echo started", "sleep 30"}}, {"remote_folder", RemoteFolder()}});
  std::atomic<bool> cancelled_at_set{false};
  Clock::time_point cancelled_at;
  std::thread canceller([&] {
    if (Eventually([&] { return !Stdout().empty(); }, 10000ms)) {
      cancelled_at = Clock::now();
      cancelled_at_set = true;
    }
    cancel_.cancel(SIGINT);
  });
  auto t0 = Clock::now();
  EXPECT_THROW(Provision(*p), Cancelled);
  auto stopped_at = Clock::now();
  canceller.join();
  ASSERT_TRUE(cancelled_at_set.load()) << "the script never said it started";
  EXPECT_LT(stopped_at - cancelled_at, 3s);
  EXPECT_LT(stopped_at - t0, 15s);
}

TEST_F(ShellFileSshTest, PauseAfterWaitsAndIsCancellable) {
  auto p = Make("shell", {{"inline", {"true"}}, {"pause_after", "700ms"}, {"remote_folder", RemoteFolder()}});
  auto t0 = Clock::now();
  Provision(*p);
  EXPECT_GE(Clock::now() - t0, 700ms);
  EXPECT_THAT(harness_->Messages(), HasSubstr("pausing"));

  auto long_pause = Make("shell", {{"inline", {"true"}}, {"pause_after", "1m"}, {"remote_folder", RemoteFolder()}});
  std::thread canceller([&] {
    std::this_thread::sleep_for(300ms);
    cancel_.cancel(SIGINT);
  });
  t0 = Clock::now();
  EXPECT_THROW(Provision(*long_pause), Cancelled);
  EXPECT_LT(Clock::now() - t0, 5s);
  canceller.join();
}

// ---------------------------------------------------------------- file

TEST_F(ShellFileSshTest, UploadsAFileKeepingItsMode) {
  fs::path src = dir_ / "app.conf";
  WriteFile(src, "key = value\n", 0640);
  fs::path dest = dir_ / "remote" / "etc-app.conf";
  fs::create_directories(dest.parent_path());
  auto p = Make("file", {{"source", src.string()}, {"destination", dest.string()}});
  Provision(*p);
  EXPECT_EQ(ReadFile(dest), "key = value\n");
  EXPECT_EQ(ModeOf(dest), 0640u);
  EXPECT_THAT(harness_->Messages(), HasSubstr("uploading " + src.string() + " => " + dest.string()));
}

TEST_F(ShellFileSshTest, UploadsAFileIntoADirectoryEndingInSlashCreatingIt) {
  fs::path src = dir_ / "tool.sh";
  WriteFile(src, "#!/bin/sh\n", 0755);
  std::string dest = (dir_ / "remote" / "new" / "bin").string() + "/";
  auto p = Make("file", {{"source", src.string()}, {"destination", dest}});
  Provision(*p);
  EXPECT_EQ(ReadFile(dest + "tool.sh"), "#!/bin/sh\n");
  EXPECT_EQ(ModeOf(dest + "tool.sh"), 0755u);
}

TEST_F(ShellFileSshTest, UploadsContent) {
  fs::path dest = dir_ / "motd";
  auto p = Make("file", {{"content", "welcome\nto web\n"}, {"destination", dest.string()}});
  Provision(*p);
  EXPECT_EQ(ReadFile(dest), "welcome\nto web\n");
  EXPECT_EQ(ModeOf(dest), 0644u);
}

// conf/ 0750: a.txt 0600, sub/ 0755: b.txt 0644
fs::path MakeConfTree(const fs::path& dir) {
  fs::path conf = dir / "conf";
  fs::create_directories(conf / "sub");
  WriteFile(conf / "a.txt", "a\n", 0600);
  WriteFile(conf / "sub" / "b.txt", "b\n", 0644);
  ::chmod(conf.c_str(), 0750);
  ::chmod((conf / "sub").c_str(), 0755);
  return conf;
}

TEST_F(ShellFileSshTest, UploadsADirectoryItselfWithoutTrailingSlash) {
  fs::path conf = MakeConfTree(dir_);
  fs::path dest = dir_ / "remote-dir";
  fs::create_directories(dest);
  auto p = Make("file", {{"source", conf.string()}, {"destination", dest.string()}});
  Provision(*p);
  EXPECT_EQ(ReadFile(dest / "conf" / "a.txt"), "a\n");
  EXPECT_EQ(ReadFile(dest / "conf" / "sub" / "b.txt"), "b\n");
  EXPECT_EQ(ModeOf(dest / "conf"), 0750u);
  EXPECT_EQ(ModeOf(dest / "conf" / "a.txt"), 0600u);
  EXPECT_FALSE(fs::exists(dest / "a.txt"));
}

TEST_F(ShellFileSshTest, UploadsADirectorysContentsWithTrailingSlash) {
  fs::path conf = MakeConfTree(dir_);
  fs::path dest = dir_ / "remote-dir";
  fs::create_directories(dest);
  ::chmod(dest.c_str(), 0711);
  auto p = Make("file", {{"source", conf.string() + "/"}, {"destination", dest.string()}});
  Provision(*p);
  EXPECT_EQ(ReadFile(dest / "a.txt"), "a\n");
  EXPECT_EQ(ReadFile(dest / "sub" / "b.txt"), "b\n");
  EXPECT_FALSE(fs::exists(dest / "conf"));
  EXPECT_EQ(ModeOf(dest), 0711u);  // an existing destination keeps its mode
}

TEST_F(ShellFileSshTest, UploadsSourcesIntoADirectory) {
  WriteFile(dir_ / "one.txt", "1\n", 0644);
  WriteFile(dir_ / "two.txt", "2\n", 0600);
  fs::path conf = MakeConfTree(dir_);
  std::string dest = (dir_ / "remote" / "all").string() + "/";
  auto p = Make("file", {{"sources", {(dir_ / "one.txt").string(), (dir_ / "two.txt").string(), conf.string()}},
                         {"destination", dest}});
  Provision(*p);
  EXPECT_EQ(ReadFile(dest + "one.txt"), "1\n");
  EXPECT_EQ(ReadFile(dest + "two.txt"), "2\n");
  EXPECT_EQ(ModeOf(dest + "two.txt"), 0600u);
  EXPECT_EQ(ReadFile(dest + "conf/sub/b.txt"), "b\n");
}

TEST_F(ShellFileSshTest, DownloadsAFile) {
  fs::path remote = dir_ / "remote.log";
  WriteFile(remote, "log line\n", 0640);
  fs::path local = dir_ / "local" / "nested" / "copy.log";  // parents are created
  auto p = Make("file", {{"source", remote.string()}, {"destination", local.string()}, {"direction", "download"}});
  Provision(*p);
  EXPECT_EQ(ReadFile(local), "log line\n");
  EXPECT_EQ(ModeOf(local), 0640u);

  std::string into = (dir_ / "into").string() + "/";
  auto into_dir = Make("file", {{"source", remote.string()}, {"destination", into}, {"direction", "download"}});
  Provision(*into_dir);
  EXPECT_EQ(ReadFile(into + "remote.log"), "log line\n");
}

TEST_F(ShellFileSshTest, DownloadsADirectory) {
  fs::path conf = MakeConfTree(dir_);
  std::string dest = (dir_ / "back").string() + "/";
  auto itself = Make("file", {{"source", conf.string()}, {"destination", dest}, {"direction", "download"}});
  Provision(*itself);
  EXPECT_EQ(ReadFile(dest + "conf/a.txt"), "a\n");
  EXPECT_EQ(ReadFile(dest + "conf/sub/b.txt"), "b\n");
  EXPECT_EQ(ModeOf(dest + "conf/a.txt"), 0600u);

  std::string contents_dest = (dir_ / "contents").string() + "/";
  auto contents =
      Make("file", {{"source", conf.string() + "/"}, {"destination", contents_dest}, {"direction", "download"}});
  Provision(*contents);
  EXPECT_EQ(ReadFile(contents_dest + "a.txt"), "a\n");
  EXPECT_EQ(ReadFile(contents_dest + "sub/b.txt"), "b\n");
  EXPECT_FALSE(fs::exists(contents_dest + "conf"));
}

TEST_F(ShellFileSshTest, TransferErrorsNameTheFile) {
  fs::path missing_remote = dir_ / "no-such-remote-file";
  auto down = Make(
      "file", {{"source", missing_remote.string()}, {"destination", (dir_ / "x").string()}, {"direction", "download"}});
  EXPECT_THAT(ProvisionError(*down), HasSubstr("no-such-remote-file"));

  fs::path later = dir_ / "made-later.txt";
  auto generated =
      Make("file", {{"source", later.string()}, {"destination", (dir_ / "y").string()}, {"generated", true}});
  std::string error = ProvisionError(*generated);
  EXPECT_THAT(error, HasSubstr("made-later.txt"));
  EXPECT_THAT(error, HasSubstr("generated"));
  WriteFile(later, "now it exists\n", 0644);
  EXPECT_EQ(ProvisionError(*generated), "");
  EXPECT_EQ(ReadFile(dir_ / "y"), "now it exists\n");

  // A file uploaded to a destination in a directory that does not exist.
  WriteFile(dir_ / "f.txt", "f\n", 0644);
  auto into_missing =
      Make("file", {{"source", (dir_ / "f.txt").string()}, {"destination", (dir_ / "missing-dir" / "f.txt").string()}});
  error = ProvisionError(*into_missing);
  EXPECT_THAT(error, HasSubstr("missing-dir"));
  EXPECT_THAT(error, HasSubstr("end it with '/'"));
}

// ---------------------------------------------------------------- with a fake communicator

// Records every call; uploads keep what was sent. Scripts succeed unless told otherwise.
class FakeCommunicator : public Communicator {
 public:
  struct Call {
    std::string kind;  // "run", "upload", "download"
    std::string what;  // the command, or the remote path
  };
  RunResult run(const RemoteCommand& cmd, const LineSink& out, const LineSink&, const CancelToken&) override {
    calls.push_back({"run", cmd.command});
    if (cmd.command == "true") return reachable ? RunResult::exited(0) : RunResult::dropped();
    if (out) out("ran");
    if (disconnecting_runs > 0) {
      --disconnecting_runs;
      return RunResult::dropped();
    }
    return RunResult::exited(run_status);
  }
  void upload(const std::string& local, const std::string& remote, const CancelToken&) override {
    calls.push_back({"upload", remote});
    if (failing_uploads > 0) {
      --failing_uploads;
      throw BuildError(upload_error);
    }
    uploaded[remote] = ReadFile(local);
  }
  void download(const std::string& remote, const std::string&, const CancelToken&) override {
    calls.push_back({"download", remote});
  }
  std::vector<std::string> Kinds() const {
    std::vector<std::string> k;
    for (const auto& c : calls) k.push_back(c.kind);
    return k;
  }

  std::vector<Call> calls;
  std::map<std::string, std::string> uploaded;
  int run_status = 0;
  int failing_uploads = 0;
  int disconnecting_runs = 0;  // the next runs (not probes) end in a dropped connection
  std::string upload_error = "connection refused";
  bool reachable = true;  // what a probe ("true") finds
};

class ShellFakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-shellfake-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    harness_ = std::make_unique<ProvisionerHarness>(dir_ / "ui.jsonl");
  }
  void TearDown() override {
    harness_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::unique_ptr<Provisioner> Make(const std::string& type, const nlohmann::json& config) {
    return harness_->Make(type, config);
  }
  std::vector<Diagnostic> Errors(const std::string& type, const std::string& text) {
    Diagnostics diags;
    harness_->Prepare(type, text, diags);
    return diags.errors();
  }
  void Provision(Provisioner& p) { harness_->Provision(p, &comm_, cancel_); }

  fs::path dir_;
  CancelToken cancel_;
  FakeCommunicator comm_;
  std::unique_ptr<ProvisionerHarness> harness_;
};

MATCHER_P2(At, line, col, "at " + std::to_string(line) + ":" + std::to_string(col)) {
  *result_listener << "is at " << arg.pos.line << ":" << arg.pos.col << " (" << arg.message << ")";
  return arg.pos.line == line && arg.pos.col == col;
}

TEST_F(ShellFakeTest, TwoRoundTripsPerScript) {
  WriteFile(dir_ / "a.sh", "#!/bin/sh\necho a\n", 0644);
  WriteFile(dir_ / "b.sh", "#!/bin/sh\necho b\n", 0644);
  auto p =
      Make("shell", {{"scripts", {(dir_ / "a.sh").string(), (dir_ / "b.sh").string()}}, {"remote_path", "/tmp/s.sh"}});
  Provision(*p);
  // Packer: upload, chmod, run, rm for each script (8).
  EXPECT_THAT(comm_.Kinds(), ElementsAre("upload", "run", "upload", "run"));
  EXPECT_EQ(comm_.calls[0].what, "/tmp/s.sh");
  const std::string& command = comm_.calls[1].what;
  EXPECT_THAT(command, HasSubstr("rm -f '/tmp/s.sh'"));
  EXPECT_THAT(command, HasSubstr("trap"));
  EXPECT_THAT(command, HasSubstr("chmod +x /tmp/s.sh; IMGBAKE_BUILDER_TYPE='qemu' IMGBAKE_BUILD_NAME='web' "
                                 "PACKER_BUILDER_TYPE='qemu' PACKER_BUILD_NAME='web' "
                                 "PACKER_RUN_UUID='5bbca296-f2e7-4bd3-89ab-dcdc7baa43f1' /tmp/s.sh"));
  EXPECT_EQ(comm_.uploaded["/tmp/s.sh"], "#!/bin/sh\necho b\n");

  comm_.calls.clear();
  auto skip_clean = Make("shell", {{"inline", {"echo hi"}}, {"skip_clean", true}});
  Provision(*skip_clean);
  EXPECT_THAT(comm_.Kinds(), ElementsAre("upload", "run"));
  EXPECT_THAT(comm_.calls[1].what, Not(HasSubstr("rm -f")));

  comm_.calls.clear();
  auto env_file = Make("shell", {{"inline", {"echo hi"}}, {"use_env_var_file", true}});
  Provision(*env_file);
  EXPECT_THAT(comm_.Kinds(), ElementsAre("upload", "upload", "run"));  // the variables file, then the script
}

TEST_F(ShellFakeTest, EnvVarFormatQuotesValues) {
  auto p = Make("shell", {{"inline", {"true"}},
                          {"environment_vars", {"A=it's", "B=x=y"}},
                          {"env", {{"B", "from env"}}},
                          {"execute_command", "{{.Vars}}|{{.Path}}"},
                          {"remote_path", "/tmp/p.sh"}});
  Provision(*p);
  ASSERT_EQ(comm_.calls.size(), 2u);
  EXPECT_THAT(comm_.calls[1].what, HasSubstr("\nA='it'\"'\"'s' B='from env' IMGBAKE_BUILDER_TYPE="));
  EXPECT_THAT(comm_.calls[1].what, HasSubstr("'|/tmp/p.sh"));  // the last entry's trailing space is dropped

  comm_.calls.clear();
  auto custom = Make("shell", {{"inline", {"true"}},
                               {"environment_vars", {"A=1"}},
                               {"env_var_format", "export %s=\"%s\"; "},
                               {"execute_command", "{{.Vars}}{{.Path}}"},
                               {"remote_path", "/tmp/p.sh"}});
  Provision(*custom);
  EXPECT_THAT(comm_.calls[1].what, HasSubstr("\nexport A=\"1\"; export IMGBAKE_BUILDER_TYPE=\"qemu\";"));
}

TEST_F(ShellFakeTest, UseEnvVarFileDefaultsLikePacker) {
  auto p = Make("shell", {{"inline", {"true"}},
                          {"environment_vars", {"A=it's"}},
                          {"use_env_var_file", true},
                          {"remote_folder", "/var/tmp"},
                          {"remote_file", "s.sh"}});
  Provision(*p);
  ASSERT_EQ(comm_.calls.size(), 3u);
  const std::string var_file = comm_.calls[0].what;
  EXPECT_THAT(var_file, ::testing::MatchesRegex("/var/tmp/varfile_[0-9]+\\.sh"));
  EXPECT_THAT(comm_.uploaded[var_file], HasSubstr("export A='it'\"'\"'s'\nexport IMGBAKE_BUILDER_TYPE='qemu'\n"));
  EXPECT_THAT(comm_.calls[2].what, HasSubstr("chmod +x /var/tmp/s.sh; . " + var_file + " && /var/tmp/s.sh"));
  EXPECT_THAT(comm_.calls[2].what, HasSubstr("rm -f '/var/tmp/s.sh' '" + var_file + "'"));
}

TEST_F(ShellFakeTest, RetriesTheStartWhileTheMachineIsUnreachable) {
  comm_.failing_uploads = 2;
  comm_.reachable = false;
  auto p = Make("shell", {{"inline", {"true"}}, {"remote_path", "/tmp/r.sh"}});
  auto t0 = Clock::now();
  Provision(*p);
  EXPECT_LT(Clock::now() - t0, 5s);
  EXPECT_THAT(comm_.Kinds(), ElementsAre("upload", "run", "upload", "run", "upload", "run"));
  EXPECT_EQ(comm_.calls[1].what, "true");  // the probe
  EXPECT_THAT(harness_->Messages(), HasSubstr("cannot reach the machine (connection refused); retrying"));
}

TEST_F(ShellFakeTest, GivesUpAfterStartRetryTimeout) {
  comm_.failing_uploads = 1000;
  comm_.reachable = false;
  auto p = Make("shell", {{"inline", {"true"}}, {"start_retry_timeout", "1s"}});
  auto t0 = Clock::now();
  try {
    Provision(*p);
    FAIL() << "no error";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("connection refused"));
    EXPECT_THAT(e.what(), HasSubstr("start_retry_timeout"));
  }
  EXPECT_LT(Clock::now() - t0, 3s);
}

TEST_F(ShellFakeTest, AFailureWhileTheMachineAnswersIsNotRetriedForLong) {
  comm_.failing_uploads = 1000;
  comm_.upload_error = "uploading to '/nope/s.sh': permission denied";
  auto p = Make("shell", {{"inline", {"true"}}, {"remote_path", "/nope/s.sh"}});
  auto t0 = Clock::now();
  try {
    Provision(*p);
    FAIL() << "no error";
  } catch (const BuildError& e) {
    EXPECT_EQ(std::string(e.what()), "uploading to '/nope/s.sh': permission denied");
  }
  EXPECT_LT(Clock::now() - t0, 400ms);  // no backoff
  // The upload, a probe that finds the machine answering, one more try and probe: then it's final.
  EXPECT_THAT(comm_.Kinds(), ElementsAre("upload", "run", "upload", "run"));
}

TEST_F(ShellFakeTest, AConnectionThatCameBackIsUsedAtOnce) {
  // What a reboot looks like to the SSH communicator: the upload fails on the lost
  // connection, and the next call waits for the machine and reconnects.
  comm_.failing_uploads = 1;
  comm_.upload_error = "uploading '/tmp/s.sh': the SSH connection to 127.0.0.1:22 was lost";
  auto p = Make("shell", {{"inline", {"true"}}, {"remote_path", "/tmp/s.sh"}});
  Provision(*p);
  EXPECT_THAT(comm_.Kinds(), ElementsAre("upload", "run", "upload", "run"));
  EXPECT_EQ(comm_.calls[1].what, "true");
  EXPECT_THAT(comm_.calls[3].what, HasSubstr("/tmp/s.sh"));
}

TEST_F(ShellFakeTest, DisconnectAcceptedThroughValidExitCodes) {
  comm_.disconnecting_runs = 1;
  auto p = Make("shell", {{"inline", {"reboot"}},
                          {"valid_exit_codes", {0, 2300218}},  // Packer's status for a drop
                          {"remote_path", "/tmp/reboot.sh"}});
  EXPECT_NO_THROW(Provision(*p));
  // The script is removed once the machine answers again.
  EXPECT_THAT(comm_.Kinds(), ElementsAre("upload", "run", "run"));
  EXPECT_EQ(comm_.calls[2].what, "rm -f '/tmp/reboot.sh'");
}

TEST_F(ShellFakeTest, NoCommunicatorIsAClearError) {
  auto p = Make("shell", {{"inline", {"true"}}});
  try {
    harness_->Provision(*p, nullptr, cancel_);
    FAIL() << "no error";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no communicator"));
    EXPECT_THAT(e.what(), HasSubstr("shell-local"));
  }
  auto f = Make("file", {{"content", "x"}, {"destination", "/tmp/x"}});
  EXPECT_THROW(harness_->Provision(*f, nullptr, cancel_), BuildError);
}

TEST_F(ShellFakeTest, ShellConfigErrors) {
  EXPECT_THAT(Errors("shell", "{}"),
              ElementsAre(::testing::Field(&Diagnostic::message, HasSubstr("one of 'inline', 'script' or 'scripts'"))));
  EXPECT_THAT(Errors("shell", R"({"inline": ["a"], "script": "x"})")[0].message, HasSubstr("give only one"));
  auto missing = Errors("shell", "{\n  \"script\": \"/no/such/script.sh\"\n}");
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_THAT(missing[0], At(2, 13));
  EXPECT_THAT(missing[0].message, HasSubstr("/no/such/script.sh"));
  EXPECT_THAT(Errors("shell", R"({"inline": ["a"], "environment_vars": ["=x"]})")[0].message,
              HasSubstr("'=x' is not of the form NAME=VALUE"));
  EXPECT_THAT(Errors("shell", R"({"inline": ["a"], "env_var_format": "%s"})")[0].message, HasSubstr("exactly two %s"));
  EXPECT_THAT(Errors("shell", R"({"inline": ["a"], "start_retry_timeout": "soon"})")[0].message,
              HasSubstr("not a valid duration"));
  EXPECT_THAT(Errors("shell", R"({"inline": ["a"], "remote_dir": "/x"})")[0].message, HasSubstr("remote_dir"));
}

TEST_F(ShellFakeTest, ShellKeyMaterialAndRuntimeKeys) {
  WriteFile(dir_ / "s.sh", "echo 1\n", 0644);
  nlohmann::json config = {{"script", (dir_ / "s.sh").string()}};
  auto a = Make("shell", config);
  auto b = Make("shell", config);
  EXPECT_EQ(a->runtime_keys(), std::set<std::string>{"execute_command"});
  // The random default remote name does not change the key.
  EXPECT_EQ(a->key_material(), b->key_material());
  EXPECT_EQ(a->key_material()["scripts"][0]["sha256"], imgbake::util::sha256_hex("echo 1\n"));
  EXPECT_EQ(a->key_material()["execute_command"], "chmod +x {{.Path}}; {{.Vars}} {{.Path}}");
  WriteFile(dir_ / "s.sh", "echo 2\n", 0644);
  EXPECT_EQ(a->key_material()["scripts"][0]["sha256"], imgbake::util::sha256_hex("echo 2\n"));
}

TEST_F(ShellFakeTest, FileConfigErrors) {
  WriteFile(dir_ / "f", "x", 0644);
  std::string f = (dir_ / "f").string();
  auto missing = Errors("file", "{\n  \"source\": \"/no/such/file\",\n  \"destination\": \"/tmp/x\"\n}");
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_THAT(missing[0], At(2, 13));
  EXPECT_THAT(missing[0].message, HasSubstr("source '/no/such/file' does not exist"));
  EXPECT_THAT(Errors("file", R"({"source": "/no/such/file", "destination": "/tmp/x", "generated": true})"), IsEmpty());
  EXPECT_THAT(Errors("file", R"({"source": "/no/such/file", "destination": "/tmp/x", "direction": "download"})"),
              IsEmpty());
  EXPECT_THAT(Errors("file", R"({"destination": "/tmp/x"})")[0].message, HasSubstr("one of 'source', 'sources'"));
  EXPECT_THAT(Errors("file", R"({"content": "x"})")[0].message, HasSubstr("destination"));
  EXPECT_THAT(Errors("file", R"({"content": "x", "source": ")" + f + R"(", "destination": "/tmp/x"})")[0].message,
              HasSubstr("give only one"));
  auto sources = Errors("file", R"({"sources": [")" + f + R"("], "destination": "/tmp/x"})");
  ASSERT_EQ(sources.size(), 1u);
  EXPECT_THAT(sources[0].message, HasSubstr("must be a directory ending in '/'"));
  EXPECT_THAT(
      Errors("file", R"({"source": ")" + f + R"(", "destination": "/tmp/x", "direction": "sideways"})")[0].message,
      HasSubstr("\"upload\" or \"download\""));
  EXPECT_THAT(Errors("file", R"({"content": "x", "destination": "/tmp/dir/"})")[0].message, HasSubstr("name a file"));
  EXPECT_THAT(
      Errors("file", R"({"source": "/var/log/*.log", "destination": "out/", "direction": "download"})")[0].message,
      HasSubstr("wildcards"));
}

TEST_F(ShellFakeTest, FileKeyMaterialFollowsContent) {
  fs::path conf = MakeConfTree(dir_);
  auto p = Make("file", {{"source", conf.string()}, {"destination", "/etc/"}});
  nlohmann::json before = p->key_material();
  EXPECT_EQ(before["destination"], "/etc/");
  EXPECT_EQ(before["direction"], "upload");
  WriteFile(conf / "sub" / "b.txt", "changed\n", 0644);
  nlohmann::json changed = p->key_material();
  EXPECT_NE(before["sources"][0]["sha256"], changed["sources"][0]["sha256"]);
  ::chmod((conf / "sub" / "b.txt").c_str(), 0600);
  EXPECT_NE(changed["sources"][0]["sha256"], p->key_material()["sources"][0]["sha256"]);

  WriteFile(dir_ / "one", "1", 0644);
  auto file = Make("file", {{"source", (dir_ / "one").string()}, {"destination", "/x"}});
  EXPECT_EQ(file->key_material()["sources"][0]["sha256"], imgbake::util::sha256_hex("1"));
  auto content = Make("file", {{"content", "hello"}, {"destination", "/x"}});
  EXPECT_EQ(content->key_material()["content_sha256"], imgbake::util::sha256_hex("hello"));
}

TEST_F(ShellFakeTest, FileRoundTrips) {
  WriteFile(dir_ / "a", "a", 0644);
  WriteFile(dir_ / "b", "b", 0644);
  auto p = Make("file", {{"sources", {(dir_ / "a").string(), (dir_ / "b").string()}}, {"destination", "/opt/x/"}});
  Provision(*p);
  // One mkdir -p for the directory, then the uploads.
  EXPECT_THAT(comm_.Kinds(), ElementsAre("run", "upload", "upload"));
  EXPECT_EQ(comm_.calls[0].what, "mkdir -p '/opt/x/'");
  EXPECT_EQ(comm_.calls[1].what, "/opt/x/a");
  EXPECT_EQ(comm_.calls[2].what, "/opt/x/b");
}

}  // namespace
