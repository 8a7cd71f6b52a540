// The SshTest fixture of the SshCommunicator tests (test_communicator_ssh*.cpp): three sshd
// instances (sshd_fixture.h) that share one set of keys: "full" (with SFTP), "nosftp" (no SFTP
// subsystem: scp is used), and "bare" (neither SFTP nor scp on its PATH: cat is used, as with
// dropbear), started once for the suite, and helpers to connect, run commands and build trees.
// The tests skip, saying why, when /usr/sbin/sshd is missing or does not start (Debian: apt-get
// install openssh-server).
#pragma once

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

namespace communicator_ssh_fixture {

namespace fs = std::filesystem;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using imgbake::Communicator;
using imgbake::RemoteCommand;
using imgbake::RunResult;
using imgbake::SshCommunicator;
using imgbake::SshConfig;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using namespace sshd_fixture;

inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

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
    missing_sftp_ = std::make_unique<Sshd>(root_, root_ / "missing-sftp", FreePort(),
                                           Sshd::Options{true, true, "/nonexistent/sftp-server"});
    for (Sshd* s : {full_.get(), nosftp_.get(), bare_.get(), missing_sftp_.get()}) {
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
    missing_sftp_.reset();
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
    bool disconnected;
    std::vector<std::string> out, err;
  };
  Result Run(Communicator& comm, const std::string& command, std::map<std::string, std::string> env = {},
             std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    RemoteCommand cmd;
    cmd.command = command;
    cmd.env = std::move(env);
    cmd.timeout = timeout;
    Result r;
    RunResult ended = comm.run(
        cmd, [&](std::string_view l) { r.out.emplace_back(l); }, [&](std::string_view l) { r.err.emplace_back(l); },
        cancel_);
    r.status = ended.status;
    r.disconnected = ended.disconnected;
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
  static inline std::unique_ptr<Sshd> full_, nosftp_, bare_, missing_sftp_;
  fs::path dir_;
  CancelToken cancel_;
  std::vector<std::string> progress_, log_;
};

}  // namespace communicator_ssh_fixture
