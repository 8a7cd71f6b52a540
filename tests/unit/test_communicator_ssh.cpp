// SshCommunicator against real OpenSSH servers on 127.0.0.1: waiting for a server, login
// errors, command output and exit statuses, timeouts, cancellation, dropped connections, and
// file transfers through SFTP and through both fallbacks (scp, then cat over exec).
//
// Three sshd instances (sshd_fixture.h) share one set of keys: "full" (with SFTP), "nosftp" (no SFTP
// subsystem: scp is used), and "bare" (neither SFTP nor scp on its PATH: cat is used, as with
// dropbear). The tests skip, saying why, when /usr/sbin/sshd is missing or does not start
// (Debian: apt-get install openssh-server).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/ssh.h"
#include "sshd_fixture.h"

namespace {

namespace fs = std::filesystem;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using imgbake::Communicator;
using imgbake::RemoteCommand;
using imgbake::SshCommunicator;
using imgbake::SshConfig;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using namespace sshd_fixture;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class SshTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists("/usr/sbin/sshd")) {
      skip_ = "/usr/sbin/sshd is missing (Debian: apt-get install openssh-server)";
      return;
    }
    std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-ssh-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      skip_ = "mkdtemp failed";
      return;
    }
    root_ = tmpl;
    if (std::string why = MakeSshKeys(root_); !why.empty()) {
      skip_ = why;
      return;
    }
    full_ = std::make_unique<Sshd>(root_, root_ / "full", FreePort(), Sshd::Options{});
    nosftp_ = std::make_unique<Sshd>(root_, root_ / "nosftp", FreePort(), Sshd::Options{false, true});
    bare_ = std::make_unique<Sshd>(root_, root_ / "bare", FreePort(), Sshd::Options{false, false});
    for (Sshd* s : {full_.get(), nosftp_.get(), bare_.get()}) {
      std::string why = s->Start();
      if (!why.empty()) {
        skip_ = "cannot start sshd: " + why;
        return;
      }
    }
  }
  static void TearDownTestSuite() {
    full_.reset();
    nosftp_.reset();
    bare_.reset();
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    dir_ = root_ / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::create_directories(dir_);
  }

  static SshConfig Config(int port) {
    SshConfig c;
    c.host = "127.0.0.1";
    c.port = port;
    c.username = UserName();
    c.private_key_file = (root_ / "id").string();
    c.timeout = 20s;
    c.handshake_attempts = 3;
    return c;
  }

  std::unique_ptr<SshCommunicator> Connect(const SshConfig& c) {
    auto comm = SshCommunicator::connect(c, cancel_, [this](std::string_view m) { progress_.emplace_back(m); });
    comm->log = [this](std::string_view m) { log_.emplace_back(m); };
    return comm;
  }
  std::unique_ptr<SshCommunicator> Connect(const Sshd& server) { return Connect(Config(server.port())); }

  struct Result {
    int status;
    std::vector<std::string> out, err;
  };
  Result Run(Communicator& comm, const std::string& command, std::map<std::string, std::string> env = {},
             std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    RemoteCommand cmd;
    cmd.command = command;
    cmd.env = std::move(env);
    cmd.timeout = timeout;
    Result r;
    r.status = comm.run(
        cmd, [&](std::string_view l) { r.out.emplace_back(l); }, [&](std::string_view l) { r.err.emplace_back(l); },
        cancel_);
    return r;
  }

  std::string Joined(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }

  // Uploads and downloads a 20 MB file; returns the log lines of both transfers.
  void RoundTrip20MB(const Sshd& server, const std::string& name) {
    auto comm = Connect(server);
    std::string data = RandomBytes(20 * 1024 * 1024, 42);
    fs::path local = dir_ / (name + ".bin");
    WriteFile(local, data, 0751);
    fs::path remote = dir_ / (name + ".remote");
    auto t0 = Clock::now();
    comm->upload(local.string(), remote.string(), cancel_);
    auto t1 = Clock::now();
    // The server is this machine: its file system is ours to check.
    EXPECT_TRUE(ReadFile(remote) == data) << "uploaded bytes differ";
    EXPECT_EQ(ModeOf(remote), 0751u);
    ::chmod(remote.c_str(), 0640);
    fs::path back = dir_ / (name + ".back");
    auto t2 = Clock::now();
    comm->download(remote.string(), back.string(), cancel_);
    auto t3 = Clock::now();
    EXPECT_TRUE(ReadFile(back) == data) << "downloaded bytes differ";
    EXPECT_EQ(ModeOf(back), 0640u);
    std::printf("[ timing ] %s: upload 20 MB %.2f s, download %.2f s\n", name.c_str(), Seconds(t1 - t0),
                Seconds(t3 - t2));
  }

  // tree/ 0755: x.sh 0755, b/ 0700: c.txt 0640, empty/ 0750, ro/ 0555: f 0444, and symlinks
  // to b/ and x.sh.
  fs::path MakeTree() {
    fs::path a = dir_ / "tree";
    fs::create_directories(a / "b");
    fs::create_directories(a / "empty");
    fs::create_directories(a / "ro");
    WriteFile(a / "x.sh", "#!/bin/sh\necho hi\n", 0755);
    WriteFile(a / "b" / "c.txt", RandomBytes(300000, 7), 0640);
    WriteFile(a / "ro" / "f", "read-only dir\n", 0444);
    fs::create_directory_symlink("b", a / "link-to-b");  // copied as what it points to
    fs::create_symlink("x.sh", a / "link.sh");
    ::chmod(a.c_str(), 0755);
    ::chmod((a / "b").c_str(), 0700);
    ::chmod((a / "empty").c_str(), 0750);
    ::chmod((a / "ro").c_str(), 0555);
    return a;
  }

  // Relative path -> (mode, content) of everything under `root`, following symlinks.
  static std::map<std::string, std::pair<mode_t, std::string>> Snapshot(const fs::path& root) {
    std::map<std::string, std::pair<mode_t, std::string>> m;
    for (const auto& e : fs::recursive_directory_iterator(root, fs::directory_options::follow_directory_symlink)) {
      std::string rel = e.path().lexically_relative(root).string();
      m[rel] = {ModeOf(e.path()), e.is_regular_file() ? ReadFile(e.path()) : std::string("<dir>")};
    }
    return m;
  }

  static inline std::string skip_;
  static inline fs::path root_;
  static inline std::unique_ptr<Sshd> full_, nosftp_, bare_;
  fs::path dir_;
  CancelToken cancel_;
  std::vector<std::string> progress_, log_;
};

// ---------------------------------------------------------------- connecting

TEST_F(SshTest, ConnectsWithKeyAndRunsACommand) {
  auto comm = Connect(*full_);
  Result r = Run(*comm, "echo hello; id -un");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, ElementsAre("hello", UserName()));
  EXPECT_THAT(Joined(progress_), HasSubstr("Connected to SSH on 127.0.0.1:"));
}

TEST_F(SshTest, WrongKeyFailsWithAnAuthenticationErrorAfterTheAttempts) {
  SshConfig c = Config(full_->port());
  c.private_key_file = (root_ / "wrong").string();
  c.timeout = 60s;
  auto t0 = Clock::now();
  try {
    Connect(c);
    FAIL() << "connected with the wrong key";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("authentication failed"));
    EXPECT_THAT(e.what(), HasSubstr("wrong"));  // names the key
    EXPECT_THAT(e.what(), HasSubstr("gave up after 3 attempts"));
  }
  EXPECT_LT(Clock::now() - t0, 10s);  // not the 60 s timeout
}

TEST_F(SshTest, UnreadableKeyFailsAtOnce) {
  SshConfig c = Config(full_->port());
  c.private_key_file = (dir_ / "nonexistent").string();
  try {
    Connect(c);
    FAIL() << "connected without a key";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("nonexistent"));
  }
  WriteFile(dir_ / "garbage", "not a key\n", 0600);
  c.private_key_file = (dir_ / "garbage").string();
  EXPECT_THROW(Connect(c), BuildError);
}

TEST_F(SshTest, AgentAuthentication) {
  if (!fs::exists("/usr/bin/ssh-agent") || !fs::exists("/usr/bin/ssh-add"))
    GTEST_SKIP() << "ssh-agent or ssh-add is missing (Debian: openssh-client)";
  fs::path sock = dir_ / "agent.sock";
  pid_t agent = fork();
  if (agent == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    dup2(null, 1);
    execl("/usr/bin/ssh-agent", "ssh-agent", "-D", "-a", sock.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(agent, 0);
  struct Reap {
    pid_t pid;
    ~Reap() {
      kill(pid, SIGTERM);
      int status;
      waitpid(pid, &status, 0);
    }
  } reap{agent};
  ASSERT_TRUE(Eventually([&] { return fs::exists(sock); }));
  ASSERT_EQ(Shell("SSH_AUTH_SOCK='" + sock.string() + "' ssh-add -q '" + (root_ / "id").string() + "' 2>/dev/null"), 0);
  const char* old = getenv("SSH_AUTH_SOCK");
  std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  setenv("SSH_AUTH_SOCK", sock.c_str(), 1);
  SshConfig c = Config(full_->port());
  c.private_key_file.clear();
  c.agent_auth = true;
  std::unique_ptr<SshCommunicator> comm;
  EXPECT_NO_THROW(comm = Connect(c));
  if (saved)
    setenv("SSH_AUTH_SOCK", saved->c_str(), 1);
  else
    unsetenv("SSH_AUTH_SOCK");
  ASSERT_TRUE(comm);
  EXPECT_EQ(Run(*comm, "true").status, 0);
}

TEST_F(SshTest, NoWayToLogInIsAnErrorAtOnce) {
  SshConfig c = Config(full_->port());
  c.private_key_file.clear();
  try {
    Connect(c);
    FAIL() << "connected without credentials";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no way to log in"));
  }
}

TEST_F(SshTest, TimeoutNamesRefusedConnection) {
  SshConfig c = Config(FreePort());
  c.timeout = 1500ms;
  auto t0 = Clock::now();
  try {
    Connect(c);
    FAIL() << "connected to nothing";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("timed out"));
    EXPECT_THAT(e.what(), HasSubstr("connection refused"));
  }
  auto took = Clock::now() - t0;
  EXPECT_GE(took, 1400ms);
  EXPECT_LT(took, 4s);
}

// What qemu's user networking looks like while the guest boots: the TCP connection is
// accepted, and nothing is said.
TEST_F(SshTest, TimeoutNamesMissingBanner) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ASSERT_EQ(listen(fd, 64), 0);  // the kernel completes the handshakes; nobody accepts
  SshConfig c = Config(ntohs(a.sin_port));
  c.timeout = 1500ms;
  try {
    Connect(c);
    FAIL() << "connected to a silent port";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("banner not received"));
  }
  close(fd);
}

TEST_F(SshTest, WaitsForAServerThatStartsLater) {
  Sshd late(root_, dir_ / "late", FreePort(), {});
  std::string why;
  std::thread starter([&] {
    std::this_thread::sleep_for(1500ms);
    why = late.Start();
  });
  auto t0 = Clock::now();
  std::unique_ptr<SshCommunicator> comm;
  EXPECT_NO_THROW(comm = Connect(Config(late.port())));
  auto took = Clock::now() - t0;
  starter.join();
  ASSERT_EQ(why, "");
  ASSERT_TRUE(comm);
  EXPECT_GE(took, 1500ms);
  EXPECT_LT(took, 4s);  // polled briskly
  EXPECT_THAT(Joined(progress_), HasSubstr("connection refused"));
  EXPECT_EQ(Run(*comm, "true").status, 0);
  std::printf("[ timing ] connected %.2f s after starting to wait (sshd started at 1.5 s)\n", Seconds(took));
}

TEST_F(SshTest, CancelWhileWaitingForTheServer) {
  SshConfig c = Config(FreePort());
  std::thread canceller([&] {
    std::this_thread::sleep_for(300ms);
    cancel_.cancel(SIGINT);
  });
  auto t0 = Clock::now();
  EXPECT_THROW(Connect(c), Cancelled);
  EXPECT_LT(Clock::now() - t0, 1300ms);
  canceller.join();
}

// ---------------------------------------------------------------- running commands

TEST_F(SshTest, ExitStatuses) {
  auto comm = Connect(*full_);
  EXPECT_EQ(Run(*comm, "true").status, 0);
  EXPECT_EQ(Run(*comm, "exit 3").status, 3);
  EXPECT_EQ(Run(*comm, "exit 255").status, 255);
  EXPECT_EQ(Run(*comm, "kill -TERM $$").status, 128 + SIGTERM);  // an exit signal
}

TEST_F(SshTest, StdoutAndStderrAreSeparateLinesInOrder) {
  auto comm = Connect(*full_);
  Result r = Run(*comm, "echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf 'a\\n\\nb\\r\\nlast'");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, ElementsAre("out1", "out2", "a", "", "b", "last"));
  EXPECT_THAT(r.err, ElementsAre("err1", "err2"));
}

TEST_F(SshTest, LargeOutputIsDeliveredCompletely) {
  auto comm = Connect(*full_);
  Result r = Run(*comm, "seq 1 30000 >&2; seq 1 100000; exit 7");
  EXPECT_EQ(r.status, 7);
  ASSERT_EQ(r.out.size(), 100000u);
  EXPECT_EQ(r.out[49999], "50000");
  EXPECT_EQ(r.out.back(), "100000");
  ASSERT_EQ(r.err.size(), 30000u);
  EXPECT_EQ(r.err.back(), "30000");
}

TEST_F(SshTest, StdinIsEmpty) {
  auto comm = Connect(*full_);
  auto t0 = Clock::now();
  EXPECT_EQ(Run(*comm, "cat; echo done").status, 0);
  EXPECT_LT(Clock::now() - t0, 5s);
}

TEST_F(SshTest, EnvironmentValuesArriveVerbatim) {
  auto comm = Connect(*full_);
  std::map<std::string, std::string> env{
      {"A", "it's a \"quoted\" value"}, {"B", "two  spaces $HOME `id` \\n"}, {"C", ""}, {"D_2", "'"}};
  Result r = Run(*comm, "printf '[%s]\\n' \"$A\" \"$B\" \"$C\" \"$D_2\"", env);
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, ElementsAre("[it's a \"quoted\" value]", "[two  spaces $HOME `id` \\n]", "[]", "[']"));
  EXPECT_THROW(Run(*comm, "true", {{"NOT-A-NAME", "x"}}), BuildError);
  EXPECT_THROW(Run(*comm, "true", {{"X; rm -rf /tmp/nothing", "x"}}), BuildError);
}

TEST_F(SshTest, PtyMergesStreamsOnATerminal) {
  SshConfig c = Config(full_->port());
  c.pty = true;
  auto comm = Connect(c);
  Result r = Run(*comm, "tty; echo to-stderr >&2");
  EXPECT_EQ(r.status, 0);
  ASSERT_EQ(r.out.size(), 2u) << Joined(r.out);
  EXPECT_THAT(r.out[0], HasSubstr("/dev/pts/"));
  EXPECT_EQ(r.out[1], "to-stderr");
}

TEST_F(SshTest, TimeoutStopsTheCommand) {
  auto comm = Connect(*full_);
  auto t0 = Clock::now();
  try {
    Run(*comm, "sleep 10", {}, 500ms);
    FAIL() << "no timeout";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("timed out"));
  }
  EXPECT_LT(Clock::now() - t0, 2s);
  EXPECT_EQ(Run(*comm, "echo still usable").status, 0);
}

TEST_F(SshTest, CancelStopsTheRemoteCommand) {
  auto comm = Connect(*full_);
  fs::path pidfile = dir_ / "sleep.pid";
  std::atomic<Clock::time_point> cancelled_at{};
  std::thread canceller([&] {
    ASSERT_TRUE(Eventually([&] { return fs::exists(pidfile) && fs::file_size(pidfile) > 0; }, 5000ms));
    cancelled_at = Clock::now();
    cancel_.cancel(SIGINT);
  });
  EXPECT_THROW(Run(*comm, "echo $$ > '" + pidfile.string() + "'; exec sleep 30"), Cancelled);
  auto stopped_at = Clock::now();
  canceller.join();
  EXPECT_LT(stopped_at - cancelled_at.load(), 2s);
  std::printf("[ timing ] cancel -> Cancelled thrown: %.3f s\n", Seconds(stopped_at - cancelled_at.load()));

  // The remote process is gone: ask the server, on a token that is not cancelled.
  CancelToken fresh;
  RemoteCommand check;
  check.command = "kill -0 $(cat '" + pidfile.string() + "') 2>/dev/null";
  EXPECT_TRUE(Eventually([&] { return comm->run(check, nullptr, nullptr, fresh) != 0; }, 2000ms))
      << "sleep 30 still runs on the server; sshd log:\n"
      << full_->log();
}

TEST_F(SshTest, CancelStopsARemoteCommandOnAPty) {
  SshConfig c = Config(full_->port());
  c.pty = true;
  auto comm = Connect(c);
  fs::path pidfile = dir_ / "sleep.pid";
  std::thread canceller([&] {
    ASSERT_TRUE(Eventually([&] { return fs::exists(pidfile) && fs::file_size(pidfile) > 0; }, 5000ms));
    cancel_.cancel(SIGINT);
  });
  auto t0 = Clock::now();
  EXPECT_THROW(Run(*comm, "echo $$ > '" + pidfile.string() + "'; exec sleep 30"), Cancelled);
  canceller.join();
  EXPECT_LT(Clock::now() - t0, 3s);
  CancelToken fresh;
  RemoteCommand check;
  check.command = "kill -0 $(cat '" + pidfile.string() + "') 2>/dev/null";
  EXPECT_TRUE(Eventually([&] { return comm->run(check, nullptr, nullptr, fresh) != 0; }, 2000ms))
      << "sleep 30 still runs on the server";
}

TEST_F(SshTest, DroppedConnectionReturnsDisconnectedAndReconnects) {
  auto comm = Connect(*full_);
  auto t0 = Clock::now();
  // $PPID is the sshd process serving this session: killing it drops the connection.
  Result r = Run(*comm, "echo before; sleep 0.2; kill -9 $PPID; sleep 5; echo after");
  EXPECT_EQ(r.status, Communicator::kDisconnected);
  EXPECT_THAT(r.out, ElementsAre("before"));
  EXPECT_LT(Clock::now() - t0, 3s);
  // The next call reconnects.
  Result again = Run(*comm, "echo again");
  EXPECT_EQ(again.status, 0);
  EXPECT_THAT(again.out, ElementsAre("again"));
  EXPECT_THAT(Joined(log_), HasSubstr("reconnecting"));
}

TEST_F(SshTest, KeepAlivesDuringASilentCommand) {
  SshConfig c = Config(full_->port());
  c.keep_alive_interval = 100ms;
  auto comm = Connect(c);
  Result r = Run(*comm, "sleep 1; echo done");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, ElementsAre("done"));
}

// ---------------------------------------------------------------- transfers

TEST_F(SshTest, TransfersA20MBFileWithSftp) {
  RoundTrip20MB(*full_, "sftp");
  EXPECT_EQ(Joined(log_), "");  // no fallback
}

TEST_F(SshTest, TransfersA20MBFileWithScpWithoutSftp) {
  RoundTrip20MB(*nosftp_, "scp");
  std::string log = Joined(log_);
  EXPECT_THAT(log, HasSubstr("SFTP is not available"));
  EXPECT_THAT(log, HasSubstr(".remote' with scp"));
  EXPECT_THAT(log, HasSubstr(".back' with cat"));
}

TEST_F(SshTest, TransfersA20MBFileWithCatWithoutSftpOrScp) {
  {
    auto comm = Connect(*bare_);
    if (Run(*comm, "command -v scp").status == 0) GTEST_SKIP() << "scp is still on the bare server's PATH";
  }
  RoundTrip20MB(*bare_, "cat");
  std::string log = Joined(log_);
  EXPECT_THAT(log, HasSubstr("SFTP is not available"));
  EXPECT_THAT(log, HasSubstr("scp is not available"));
  EXPECT_THAT(log, HasSubstr(".remote' with cat"));
  EXPECT_THAT(log, HasSubstr(".back' with cat"));
}

TEST_F(SshTest, UploadsDirectoriesWithEveryMethod) {
  fs::path tree = MakeTree();
  auto expected = Snapshot(tree);
  for (Sshd* server : {full_.get(), nosftp_.get(), bare_.get()}) {
    SCOPED_TRACE(server->port());
    auto comm = Connect(*server);
    fs::path dest = dir_ / ("to-" + std::to_string(server->port())) / "nested" / "copy";
    comm->upload(tree.string(), dest.string(), cancel_);
    EXPECT_EQ(Snapshot(dest), expected);
    EXPECT_EQ(ModeOf(dest), 0755u);
  }
}

TEST_F(SshTest, DownloadsDirectoriesWithSftp) {
  fs::path tree = MakeTree();
  auto comm = Connect(*full_);
  fs::path back = dir_ / "back";
  comm->download(tree.string(), back.string(), cancel_);
  EXPECT_EQ(Snapshot(back), Snapshot(tree));
}

TEST_F(SshTest, UploadIntoAnExistingDirectoryKeepsItsMode) {
  fs::path tree = MakeTree();
  for (Sshd* server : {full_.get(), bare_.get()}) {
    fs::path dest = dir_ / ("sticky-" + std::to_string(server->port()));
    fs::create_directories(dest);
    ::chmod(dest.c_str(), 01777);
    auto comm = Connect(*server);
    comm->upload(tree.string(), dest.string(), cancel_);
    EXPECT_EQ(ModeOf(dest), 01777u);
    EXPECT_EQ(ModeOf(dest / "b"), 0700u);
  }
}

TEST_F(SshTest, TransferErrorsSayWhat) {
  for (Sshd* server : {full_.get(), bare_.get()}) {
    auto comm = Connect(*server);
    try {
      comm->download((dir_ / "no-such-file").string(), (dir_ / "x").string(), cancel_);
      FAIL() << "downloaded a missing file";
    } catch (const BuildError& e) {
      EXPECT_THAT(e.what(), HasSubstr("no-such-file"));
    }
    EXPECT_FALSE(fs::exists(dir_ / "x"));  // no partial file left behind
    WriteFile(dir_ / "small", "x", 0644);
    try {
      comm->upload((dir_ / "small").string(), (dir_ / "missing-dir" / "small").string(), cancel_);
      FAIL() << "uploaded into a missing directory";
    } catch (const BuildError& e) {
      EXPECT_THAT(e.what(), HasSubstr("missing-dir"));
    }
    EXPECT_THROW(comm->upload((dir_ / "no-local").string(), "/tmp/x", cancel_), BuildError);
  }
}

TEST_F(SshTest, CancelDuringUpload) {
  std::string data = RandomBytes(20 * 1024 * 1024, 1);
  WriteFile(dir_ / "big", data, 0644);
  for (Sshd* server : {full_.get(), bare_.get()}) {
    CancelToken cancel;
    auto comm = Connect(*server);
    fs::path remote = dir_ / ("big.remote-" + std::to_string(server->port()));
    std::thread canceller([&] {
      // Once the transfer is under way.
      auto deadline = Clock::now() + 5s;
      std::error_code ec;
      while (Clock::now() < deadline && !(fs::exists(remote, ec) && fs::file_size(remote, ec) > 0))
        std::this_thread::sleep_for(1ms);
      cancel.cancel(SIGINT);
    });
    auto t0 = Clock::now();
    EXPECT_THROW(comm->upload((dir_ / "big").string(), remote.string(), cancel), Cancelled);
    EXPECT_LT(Clock::now() - t0, 2s);
    canceller.join();
  }
}

}  // namespace
