// The exec communicator against a real sandbox: a tiny root filesystem made of busybox-static
// in a temp directory, commands run with bubblewrap and with the unshare + chroot fallback
// (IMGBAKE_EXEC_SANDBOX=unshare), files moved in and out, and the tree checked stat by stat.
// The tests skip, saying why, when not run as root or when busybox-static is missing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/config.h"
#include "imgbake/error.h"
#include "imgbake/exec.h"
#include "imgbake/json.h"
#include "imgbake/pipeline.h"
#include "imgbake/process.h"
#include "imgbake/provisioner.h"
#include "imgbake/ui.h"
#include "imgbake/util.h"
#include "tool_check.h"

namespace {

namespace fs = std::filesystem;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using imgbake::ExecCommunicator;
using imgbake::ExecOptions;
using imgbake::RemoteCommand;
using imgbake::RunResult;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const fs::path& p, const std::string& data, mode_t mode = 0644) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
  ::chmod(p.c_str(), mode);
}

mode_t ModeOf(const fs::path& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

// Everything `stat` says about every entry of a tree, and the contents of its files, except
// access times (running /bin/sh reads busybox). Two snapshots are equal when nothing changed.
std::map<std::string, std::string> Snapshot(const fs::path& root) {
  std::map<std::string, std::string> out;
  auto add = [&](const fs::path& p) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return;
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "mode=%o uid=%u gid=%u size=%lld nlink=%llu ino=%llu mtime=%lld.%09ld ctime=%lld.%09ld", st.st_mode,
                  st.st_uid, st.st_gid, static_cast<long long>(st.st_size),
                  static_cast<unsigned long long>(st.st_nlink), static_cast<unsigned long long>(st.st_ino),
                  static_cast<long long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec,
                  static_cast<long long>(st.st_ctim.tv_sec), st.st_ctim.tv_nsec);
    std::string v = buf;
    if (S_ISLNK(st.st_mode)) v += " -> " + fs::read_symlink(p).string();
    if (S_ISREG(st.st_mode)) v += " sha256=" + imgbake::util::file_digest_hex(p);
    out[p == root ? "/" : "/" + p.lexically_relative(root).generic_string()] = v;
  };
  add(root);
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
    add(it->path());
  return out;
}

// What differs between two snapshots, one line per path, for failure messages.
std::string Differences(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b) {
  std::string out;
  for (const auto& [path, v] : a) {
    auto it = b.find(path);
    if (it == b.end())
      out += "removed " + path + "\n";
    else if (it->second != v)
      out += "changed " + path + ":\n  before " + v + "\n  after  " + it->second + "\n";
  }
  for (const auto& [path, v] : b)
    if (!a.count(path)) out += "added " + path + " (" + v + ")\n";
  return out;
}

// Processes on this host whose command line contains `needle` (the sandbox's are visible
// from here under their host pids).
std::vector<int> ProcessesWith(const std::string& needle) {
  std::vector<int> pids;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const fs::directory_entry& e = *it;
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline;
    try {
      cmdline = ReadFile(e.path() / "cmdline");
    } catch (const std::exception&) {
      continue;  // the process ended while it was read
    }
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) pids.push_back(std::stoi(name));
  }
  return pids;
}

// The interface names in a /proc/net/dev text.
std::set<std::string> Interfaces(const std::string& proc_net_dev) {
  std::set<std::string> names;
  for (const auto& line : imgbake::util::split(proc_net_dev, '\n')) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    names.insert(imgbake::util::trim(line.substr(0, colon)));
  }
  return names;
}

// Sets an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The tiny root filesystem: busybox-static and a link per applet, /proc /dev /tmp /etc /root,
// made once per test program and copied for each test.
class TinyRoot {
 public:
  static std::string Skip() {
    if (::geteuid() != 0) return "the exec communicator's sandbox needs root";
    if (!fs::exists("/bin/busybox")) return "/bin/busybox is missing (Debian: apt-get install busybox-static)";
    return Template().empty() ? "cannot build the busybox tree" : "";
  }
  // A fresh copy of the tree at `dest`.
  static void CopyTo(const fs::path& dest, bool with_mountpoints = true) {
    fs::create_directories(dest);
    fs::copy(Template(), dest, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    if (!with_mountpoints)
      for (const char* d : {"proc", "dev", "tmp"}) fs::remove(dest / d);
  }

 private:
  static const fs::path& Template() {
    static const fs::path dir = Build();
    return dir;
  }
  static fs::path Build() {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-tinyroot-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return {};
    fs::path root = tmpl;
    fs::create_directories(root / "bin");
    fs::copy_file("/bin/busybox", root / "bin/busybox");
    std::vector<std::string> applets;
    CancelToken never;
    imgbake::ProcessSpec spec;
    spec.argv = {"/bin/busybox", "--list-full"};
    imgbake::run_process(
        spec, [&](std::string_view l) { applets.emplace_back(l); }, nullptr, never);
    for (const auto& a : applets) {
      fs::path link = root / a;
      if (a == "bin/busybox" || a.empty()) continue;
      fs::create_directories(link.parent_path());
      std::error_code ec;
      fs::create_symlink("/bin/busybox", link, ec);
    }
    for (const char* d : {"proc", "dev", "tmp", "etc", "root"}) fs::create_directories(root / d);
    ::chmod((root / "tmp").c_str(), 01777);
    ::chmod((root / "root").c_str(), 0700);
    WriteFile(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    WriteFile(root / "etc/group", "root:x:0:\n");
    WriteFile(root / "etc/hostname", "tiny\n");
    // Removed at exit through a plain char array: the static path object may be gone by then.
    static char path_at_exit[4096];
    std::snprintf(path_at_exit, sizeof path_at_exit, "%s", root.c_str());
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(path_at_exit, ec);
    });
    return root;
  }
};

class ExecTestBase : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = TinyRoot::Skip(); !why.empty()) GTEST_SKIP() << why;
    std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-exec-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    root_ = dir_ / "root";
  }
  void TearDown() override {
    comm_.reset();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  ExecCommunicator& Make(ExecOptions opts = {}, bool with_mountpoints = true) {
    TinyRoot::CopyTo(root_, with_mountpoints);
    opts.root = root_;
    comm_ = std::make_unique<ExecCommunicator>(opts);
    return *comm_;
  }

  struct Result {
    int status = -1;
    std::vector<std::string> out, err;
  };
  Result Run(const std::string& command, std::map<std::string, std::string> env = {}) {
    Result r;
    RemoteCommand cmd;
    cmd.command = command;
    cmd.env = std::move(env);
    cmd.timeout = 30s;
    RunResult ended = comm_->run(
        cmd, [&](std::string_view l) { r.out.emplace_back(l); }, [&](std::string_view l) { r.err.emplace_back(l); },
        cancel_);
    EXPECT_FALSE(ended.disconnected) << command;  // a sandbox has no connection to lose
    r.status = ended.status;
    return r;
  }
  // The one line of stdout a command printed.
  std::string Line(const std::string& command) {
    Result r = Run(command);
    EXPECT_EQ(r.status, 0) << command << ": " << imgbake::util::join(r.err, "\n");
    EXPECT_EQ(r.out.size(), 1U) << command << ": " << imgbake::util::join(r.out, "\n");
    return r.out.empty() ? "" : r.out.front();
  }

  fs::path dir_, root_;
  CancelToken cancel_;
  std::unique_ptr<ExecCommunicator> comm_;
};

// ---------------------------------------------------------------- running commands, both sandboxes

class ExecRunTest : public ExecTestBase, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    ExecTestBase::SetUp();
    if (IsSkipped()) return;
    sandbox_ = std::make_unique<ScopedEnv>("IMGBAKE_EXEC_SANDBOX", GetParam());
    if (GetParam() == "bwrap") REQUIRE_TOOL("bwrap");
  }
  void TearDown() override {
    ExecTestBase::TearDown();
    sandbox_.reset();
  }
  std::unique_ptr<ScopedEnv> sandbox_;
};

TEST_P(ExecRunTest, TheChosenSandboxIsUsed) { EXPECT_EQ(ExecCommunicator::sandbox_tool(), GetParam()); }

TEST_P(ExecRunTest, ReturnsTheExitStatus) {
  Make();
  EXPECT_EQ(Run("true").status, 0);
  EXPECT_EQ(Run("exit 3").status, 3);
  EXPECT_EQ(Run("false").status, 1);
  EXPECT_EQ(Run("kill -9 $$").status, 128 + 9);
}

TEST_P(ExecRunTest, StreamsStdoutAndStderrLines) {
  Make();
  Result r = Run("echo one; echo two >&2; echo three; printf 'no newline'");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, (std::vector<std::string>{"one", "three", "no newline"}));
  EXPECT_EQ(r.err, (std::vector<std::string>{"two"}));
}

TEST_P(ExecRunTest, ASyntaxErrorIsTheCommandsFailureNotTheSandboxs) {
  Make();
  Result r = Run("echo before; if then fi");
  EXPECT_EQ(r.status, 2);
  ASSERT_FALSE(r.err.empty());
  EXPECT_NE(r.err.front().find("syntax error"), std::string::npos) << r.err.front();
}

TEST_P(ExecRunTest, RunsAsRootInsideTheTreeInItsOwnNamespaces) {
  WriteFile(dir_ / "host-only", "host\n");
  Make();
  WriteFile(root_ / "marker", "inside the tree\n");
  EXPECT_EQ(Line("id -u"), "0");
  EXPECT_EQ(Line("cat /marker"), "inside the tree");
  EXPECT_EQ(Line("test -e " + (dir_ / "host-only").string() + " && echo host visible || echo not visible"),
            "not visible");
  // A PID namespace: the host's processes are not there.
  int processes = std::stoi(Line("ls /proc | grep -c '^[0-9][0-9]*$'"));
  EXPECT_LE(processes, 4);
  EXPECT_EQ(Line("pwd"), "/");
  EXPECT_EQ(Line("test -c /dev/null && echo x > /dev/null && echo dev ok"), "dev ok");
}

TEST_P(ExecRunTest, EnvironmentIsCleanWithDefaultsOptionsAndTheCommandsOwn) {
  ScopedEnv leak("IMGBAKE_TEST_HOST_ONLY", "must not be seen");
  ExecOptions opts;
  opts.env = {{"TERM", "xterm"}, {"FROM_OPTIONS", "o"}, {"OVERRIDDEN", "options"}};
  Make(opts);
  Result r = Run("env | sort", {{"OVERRIDDEN", "command"}, {"QUOTED", "it's \"quoted\" $HOME `x`"}});
  ASSERT_EQ(r.status, 0);
  std::vector<std::string> env = r.out;
  // The shell adds PWD (and busybox SHLVL); nothing else of the host's is there.
  env.erase(std::remove_if(env.begin(), env.end(),
                           [](const std::string& l) { return l.rfind("PWD=", 0) == 0 || l.rfind("SHLVL=", 0) == 0; }),
            env.end());
  EXPECT_EQ(env, (std::vector<std::string>{"FROM_OPTIONS=o", "HOME=/root", "OVERRIDDEN=command",
                                           "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                           "QUOTED=it's \"quoted\" $HOME `x`", "TERM=xterm"}));
  EXPECT_THROW(Run("true", {{"BAD NAME", "x"}}), BuildError);
}

TEST_P(ExecRunTest, WorkdirIsWhereCommandsStart) {
  ExecOptions opts;
  opts.workdir = "/etc";
  Make(opts);
  EXPECT_EQ(Line("pwd"), "/etc");
}

TEST_P(ExecRunTest, WithoutNetworkOnlyTheLoopbackExists) {
  Make();
  Result r = Run("cat /proc/net/dev");
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(Interfaces(imgbake::util::join(r.out, "\n")), (std::set<std::string>{"lo"}));
}

TEST_P(ExecRunTest, WithNetworkTheHostsInterfacesAndResolvConfAreThere) {
  ExecOptions opts;
  opts.network = true;
  Make(opts);
  Result r = Run("cat /proc/net/dev");
  ASSERT_EQ(r.status, 0);
  std::set<std::string> host = Interfaces(ReadFile("/proc/net/dev"));
  EXPECT_EQ(Interfaces(imgbake::util::join(r.out, "\n")), host);
  EXPECT_GT(host.size(), 1U) << "this host has only a loopback: the test proves little";
  if (fs::is_regular_file("/etc/resolv.conf")) {
    Result resolv = Run("cat /etc/resolv.conf");
    EXPECT_EQ(imgbake::util::join(resolv.out, "\n"), imgbake::util::trim(ReadFile("/etc/resolv.conf")));
    // The tree had none: it has none afterwards either.
    EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "etc/resolv.conf")));
    // It is the host's, and read-only.
    EXPECT_NE(Run("echo nameserver 1.2.3.4 > /etc/resolv.conf").status, 0);
  }
}

TEST_P(ExecRunTest, CancelKillsTheSandboxWithinASecond) {
  Make();
  const std::string needle = "31.4159";
  std::thread canceller([&] {
    std::this_thread::sleep_for(500ms);
    cancel_.cancel(SIGINT);
  });
  auto begun = Clock::now();
  // A command that ignores SIGTERM (and passes that on to sleep) must go all the same.
  EXPECT_THROW(Run("trap '' TERM; sleep " + needle), Cancelled);
  canceller.join();
  auto took = Clock::now() - begun;
  std::printf("[ timing ] cancel -> Cancelled thrown: %s\n", imgbake::util::format_duration(took - 500ms).c_str());
  EXPECT_LT(took, 1500ms) << "cancelled after 0.5 s, returned after " << imgbake::util::format_duration(took);
  // The namespace's last processes are killed by the kernel as it tears it down, a moment
  // after the sandbox tool itself is gone.
  while (!ProcessesWith("sleep " + needle).empty() && Clock::now() - begun < 1500ms) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(ProcessesWith("sleep " + needle).empty()) << "still running 1 s after the cancel";
}

TEST_P(ExecRunTest, TimeoutStopsTheCommand) {
  Make();
  RemoteCommand cmd;
  cmd.command = "sleep 27.1828";
  cmd.timeout = 300ms;
  auto begun = Clock::now();
  try {
    comm_->run(cmd, nullptr, nullptr, cancel_);
    ADD_FAILURE() << "no timeout";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("timed out after"), std::string::npos) << e.what();
  }
  EXPECT_LT(Clock::now() - begun, 1500ms);
  while (!ProcessesWith("sleep 27.1828").empty() && Clock::now() - begun < 1500ms) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(ProcessesWith("sleep 27.1828").empty());
}

TEST_P(ExecRunTest, BackgroundJobsDoNotOutliveTheCommand) {
  Make();
  auto begun = Clock::now();
  EXPECT_EQ(Run("sleep 29.979 & echo started").status, 0);
  EXPECT_LT(Clock::now() - begun, 2s);
  // The PID namespace ends with the command: its leftovers are killed with it.
  auto deadline = Clock::now() + 2s;
  while (!ProcessesWith("sleep 29.979").empty() && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(ProcessesWith("sleep 29.979").empty());
}

TEST_P(ExecRunTest, ATreeWithoutShellIsASandboxErrorNotAnExitStatus) {
  Make();
  fs::remove(root_ / "bin/sh");
  try {
    Run("true");
    ADD_FAILURE() << "no error";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("/bin/sh"), std::string::npos) << e.what();
  }
}

TEST_P(ExecRunTest, ATrueCommandLeavesTheTreeIdentical) {
  for (bool network : {false, true}) {
    SCOPED_TRACE(network ? "with network" : "without network");
    fs::remove_all(root_);
    ExecOptions opts;
    opts.network = network;
    Make(opts);
    WriteFile(root_ / "etc/resolv.conf", "nameserver 192.0.2.1\n");  // a regular file: bound over
    auto before = Snapshot(root_);
    EXPECT_EQ(Run("true").status, 0);
    auto after = Snapshot(root_);
    EXPECT_EQ(Differences(before, after), "");
    EXPECT_EQ(ReadFile(root_ / "etc/resolv.conf"), "nameserver 192.0.2.1\n");
  }
}

TEST_P(ExecRunTest, MissingMountpointsAreMadeForTheCommandAndRemovedAfterwards) {
  ExecOptions opts;
  opts.network = true;
  Make(opts, /*with_mountpoints=*/false);
  auto before = Snapshot(root_);
  Result r = Run("test -c /dev/null && test -d /proc/self && test -d /tmp && echo mounted");
  EXPECT_EQ(r.out, (std::vector<std::string>{"mounted"}));
  auto after = Snapshot(root_);
  // Adding and removing an entry changes a directory's ctime, which nothing can set back; the
  // modification time is restored, and the entries are gone.
  for (auto* snap : {&before, &after})
    for (const char* dir : {"/", "/etc"}) {
      std::string& v = (*snap)[dir];
      v = v.substr(0, v.find(" ctime="));
    }
  EXPECT_EQ(Differences(before, after), "");
}

TEST_P(ExecRunTest, AMountpointThatIsASymlinkIsRefused) {
  Make();
  fs::remove(root_ / "tmp");
  fs::create_symlink(dir_, root_ / "tmp");
  try {
    Run("true");
    ADD_FAILURE() << "no error";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("/tmp that is not a directory"), std::string::npos) << e.what();
  }
}

TEST_P(ExecRunTest, TmpIsSharedBetweenCommandsButNotPartOfTheTree) {
  Make();
  EXPECT_EQ(Run("echo kept > /tmp/note && mkdir /tmp/d").status, 0);
  EXPECT_EQ(Line("cat /tmp/note"), "kept");
  EXPECT_EQ(Line("stat -c %a /tmp"), "1777");
  EXPECT_TRUE(fs::is_empty(root_ / "tmp"));
}

TEST_P(ExecRunTest, SecretsAreInNoCommandLine) {
  // Other users of the host can list every process's command line: a command and its
  // variables (a token, a password) must not be in any of them, the sandbox tool's included.
  Make();
  std::atomic<bool> done{false};
  std::set<std::string> seen;
  std::thread watcher([&] {
    while (!done) {
      for (const char* needle : {"tok-4f1ba7", "cmd-9c2e61", ".imgbake-command"})
        if (!ProcessesWith(needle).empty()) seen.insert(needle);
      std::this_thread::sleep_for(20ms);
    }
  });
  Result r = Run("sleep 1; echo \"$TOKEN\" # cmd-9c2e61", {{"TOKEN", "tok-4f1ba7"}});
  done = true;
  watcher.join();
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, (std::vector<std::string>{"tok-4f1ba7"}));
  // The watcher saw the sandbox's processes (their command line names the command file) ...
  EXPECT_TRUE(seen.count(".imgbake-command"));
  // ... but neither the variable's value nor the command's text.
  EXPECT_FALSE(seen.count("tok-4f1ba7"));
  EXPECT_FALSE(seen.count("cmd-9c2e61"));
}

// A hostile /bin/sh, what a base image can put there: whatever it is asked to run, it reports
// what it may do and tries to escape: open a host file by its file handle (the "shocker"
// escape, which needs CAP_DAC_READ_SEARCH), mount, reach the kernel's keyrings, make a user
// namespace. Built static with the host's C compiler.
constexpr const char* kHostileShell = R"C(#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *result(long rc) { return rc < 0 ? strerrorname_np(errno) : "OK"; }

int main(void) {
  fprintf(stderr, "imgbake-exec: command started\n"); /* what the communicator waits for */
  char line[256];
  FILE *st = fopen("/proc/self/status", "r");
  while (st && fgets(line, sizeof line, st))
    if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "NoNewPrivs:", 11) || !strncmp(line, "Seccomp:", 8))
      fputs(line, stdout);
  if (st) fclose(st);

  /* The test put the handle of a host file at /handle: type, then the handle's bytes. */
  int in = open("/handle", O_RDONLY);
  unsigned char buf[256];
  ssize_t n = in >= 0 ? read(in, buf, sizeof buf) : -1;
  if (n > (ssize_t)sizeof(int)) {
    struct file_handle *h = malloc(sizeof *h + (size_t)n);
    memcpy(&h->handle_type, buf, sizeof(int));
    h->handle_bytes = (unsigned)(n - (ssize_t)sizeof(int));
    memcpy(h->f_handle, buf + sizeof(int), h->handle_bytes);
    int mount_fd = open("/", O_RDONLY | O_DIRECTORY);
    int fd = open_by_handle_at(mount_fd, h, O_RDWR);
    printf("open_by_handle_at: %s\n", result(fd));
    if (fd >= 0) {
      if (write(fd, "escaped", 7) != 7) perror("write");
      close(fd);
    }
  } else {
    printf("open_by_handle_at: no handle\n");
  }
  printf("mount: %s\n", result(mount("none", "/mnt", "tmpfs", 0, NULL)));
  printf("keyctl: %s\n", result(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0)));
  printf("unshare: %s\n", result(unshare(CLONE_NEWUSER)));
  fflush(stdout);
  return 0;
}
)C";

TEST_P(ExecRunTest, AHostileBaseGetsNoHostRoot) {
  REQUIRE_TOOL("cc");
  Make();
  fs::path src = dir_ / "hostile.c";
  WriteFile(src, kHostileShell);
  fs::remove(root_ / "bin/sh");
  imgbake::ProcessSpec cc;
  cc.argv = {"cc", "-static", "-O1", "-o", (root_ / "bin/sh").string(), src.string()};
  std::vector<std::string> cc_err;
  ASSERT_EQ(imgbake::run_process(
                cc, nullptr, [&](std::string_view l) { cc_err.emplace_back(l); }, cancel_),
            0)
      << imgbake::util::join(cc_err, "\n");
  // A host file, outside the tree, and its file handle where the hostile shell finds it.
  fs::path canary = dir_ / "host-canary";
  WriteFile(canary, "host data\n");
  struct {
    file_handle h;
    unsigned char bytes[MAX_HANDLE_SZ];
  } handle{};
  handle.h.handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  ASSERT_EQ(::name_to_handle_at(AT_FDCWD, canary.c_str(), &handle.h, &mount_id, 0), 0) << std::strerror(errno);
  std::string raw(reinterpret_cast<const char*>(&handle.h.handle_type), sizeof(int));
  raw.append(reinterpret_cast<const char*>(handle.h.f_handle), handle.h.handle_bytes);
  WriteFile(root_ / "handle", raw);
  fs::create_directories(root_ / "mnt");

  Result r = Run("echo innocent");
  ASSERT_EQ(r.status, 0) << imgbake::util::join(r.err, "\n");
  std::string out = imgbake::util::join(r.out, "\n");
  EXPECT_EQ(ReadFile(canary), "host data\n") << out;
  EXPECT_THAT(out, ::testing::HasSubstr("open_by_handle_at: EPERM"));
  EXPECT_THAT(out, ::testing::HasSubstr("mount: EPERM"));
  // Docker's default set: chown, dac_override, fowner, fsetid, kill, setgid, setuid, setpcap,
  // net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap.
  EXPECT_THAT(out, ::testing::ContainsRegex("CapEff:[ \t]*00000000a80425fb"));
  EXPECT_THAT(out, ::testing::ContainsRegex("NoNewPrivs:[ \t]*1"));
  if (GetParam() == "bwrap") {
    // The seccomp filter (bwrap's alone: docs/security.md).
    EXPECT_THAT(out, ::testing::ContainsRegex("Seccomp:[ \t]*2"));
    EXPECT_THAT(out, ::testing::HasSubstr("keyctl: EPERM"));
    EXPECT_THAT(out, ::testing::HasSubstr("unshare: EPERM"));
  }
}

INSTANTIATE_TEST_SUITE_P(ExecSandbox, ExecRunTest, ::testing::Values("bwrap", "unshare"),
                         [](const auto& param_info) { return param_info.param; });

// ---------------------------------------------------------------- files

class ExecFilesTest : public ExecTestBase {
 protected:
  void SetUp() override {
    ExecTestBase::SetUp();
    if (IsSkipped()) return;
    Make();
    local_ = dir_ / "local";
    fs::create_directories(local_);
  }
  fs::path local_;
};

TEST_F(ExecFilesTest, UploadsAFileKeepingItsModeAtomically) {
  WriteFile(local_ / "script.sh", "#!/bin/sh\necho hi\n", 0750);
  comm_->upload((local_ / "script.sh").string(), "/etc/script.sh", cancel_);
  EXPECT_EQ(ReadFile(root_ / "etc/script.sh"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(ModeOf(root_ / "etc/script.sh"), 0750U);
  EXPECT_EQ(Line("/etc/script.sh"), "hi");
  // Replacing: the new content and mode, the old owner; no temp file left beside it.
  ::chown((root_ / "etc/script.sh").c_str(), 1234, 1234);
  WriteFile(local_ / "script.sh", "new\n", 0600);
  comm_->upload((local_ / "script.sh").string(), "/etc/script.sh", cancel_);
  EXPECT_EQ(ReadFile(root_ / "etc/script.sh"), "new\n");
  EXPECT_EQ(ModeOf(root_ / "etc/script.sh"), 0600U);
  struct stat st;
  ASSERT_EQ(::stat((root_ / "etc/script.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234U);
  for (const auto& e : fs::directory_iterator(root_ / "etc"))
    EXPECT_EQ(e.path().filename().string().find(".imgbake"), std::string::npos) << e.path();
}

TEST_F(ExecFilesTest, UploadingAFileNeedsItsDirectoryAndNotADirectoryInTheWay) {
  WriteFile(local_ / "f", "x");
  try {
    comm_->upload((local_ / "f").string(), "/no/such/dir/f", cancel_);
    ADD_FAILURE() << "no error";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/dir/f"), std::string::npos) << e.what();
  }
  EXPECT_THROW(comm_->upload((local_ / "f").string(), "/etc", cancel_), BuildError);
  EXPECT_THROW(comm_->upload((local_ / "missing").string(), "/etc/x", cancel_), BuildError);
}

TEST_F(ExecFilesTest, RelativeRemotePathsStartAtTheWorkdir) {
  WriteFile(local_ / "f", "relative\n");
  comm_->upload((local_ / "f").string(), "root-relative", cancel_);
  EXPECT_EQ(ReadFile(root_ / "root-relative"), "relative\n");
}

TEST_F(ExecFilesTest, UploadsADirectoryAsACopyCreatingParents) {
  fs::create_directories(local_ / "app/sub");
  WriteFile(local_ / "app/a.txt", "a", 0640);
  WriteFile(local_ / "app/sub/b.sh", "b", 0755);
  ::chmod((local_ / "app/sub").c_str(), 0750);
  ::chmod((local_ / "app").c_str(), 0700);
  comm_->upload((local_ / "app").string(), "/opt/vendor/app", cancel_);
  EXPECT_EQ(ReadFile(root_ / "opt/vendor/app/a.txt"), "a");
  EXPECT_EQ(ReadFile(root_ / "opt/vendor/app/sub/b.sh"), "b");
  EXPECT_EQ(ModeOf(root_ / "opt/vendor/app/a.txt"), 0640U);
  EXPECT_EQ(ModeOf(root_ / "opt/vendor/app/sub/b.sh"), 0755U);
  EXPECT_EQ(ModeOf(root_ / "opt/vendor/app/sub"), 0750U);
  EXPECT_EQ(ModeOf(root_ / "opt/vendor/app"), 0700U);
  EXPECT_EQ(ModeOf(root_ / "opt/vendor"), 0755U);
}

TEST_F(ExecFilesTest, AnExistingDestinationDirectoryKeepsItsMode) {
  fs::create_directories(local_ / "d");
  WriteFile(local_ / "d/f", "f");
  ::chmod((local_ / "d").c_str(), 0700);
  fs::create_directories(root_ / "srv");
  ::chmod((root_ / "srv").c_str(), 01777);
  comm_->upload((local_ / "d").string(), "/srv/", cancel_);
  EXPECT_EQ(ReadFile(root_ / "srv/f"), "f");
  EXPECT_EQ(ModeOf(root_ / "srv"), 01777U);
}

TEST_F(ExecFilesTest, TmpPathsAreTheCommandsTmp) {
  WriteFile(local_ / "run.sh", "#!/bin/sh\necho ran from tmp\n", 0755);
  comm_->upload((local_ / "run.sh").string(), "/tmp/run.sh", cancel_);
  EXPECT_EQ(Line("/tmp/run.sh"), "ran from tmp");
  EXPECT_TRUE(fs::is_empty(root_ / "tmp"));
  EXPECT_EQ(Run("echo made inside > /tmp/made").status, 0);
  comm_->download("/tmp/made", (local_ / "made").string(), cancel_);
  EXPECT_EQ(ReadFile(local_ / "made"), "made inside\n");
}

TEST_F(ExecFilesTest, DownloadsFilesAndDirectoriesWithTheirModes) {
  ASSERT_EQ(Run("mkdir -p /srv/data/sub && echo one > /srv/data/one && echo two > /srv/data/sub/two && "
                "chmod 600 /srv/data/one && chmod 750 /srv/data/sub && ln -s /etc/hostname /srv/data/host")
                .status,
            0);
  comm_->download("/srv/data/one", (local_ / "one").string(), cancel_);
  EXPECT_EQ(ReadFile(local_ / "one"), "one\n");
  EXPECT_EQ(ModeOf(local_ / "one"), 0600U);
  comm_->download("/srv/data", (local_ / "data").string(), cancel_);
  EXPECT_EQ(ReadFile(local_ / "data/sub/two"), "two\n");
  EXPECT_EQ(ModeOf(local_ / "data/sub"), 0750U);
  // Symlinks are followed, inside the tree: its /etc/hostname, not the host's.
  EXPECT_EQ(ReadFile(local_ / "data/host"), "tiny\n");
  EXPECT_THROW(comm_->download("/srv/nothing", (local_ / "x").string(), cancel_), BuildError);
  EXPECT_FALSE(fs::exists(local_ / "x"));
}

TEST_F(ExecFilesTest, SymlinksCannotLeadOutOfTheTree) {
  // A host directory next to the tree, with a "secret", and links that would reach it from a
  // plain path walk: relative (../../) and absolute.
  fs::path outside = dir_ / "outside";
  fs::create_directories(outside);
  WriteFile(outside / "secret", "host secret\n");
  std::string up;
  for (auto p = root_; p != p.root_path(); p = p.parent_path()) up += "../";
  fs::create_symlink(up + outside.relative_path().string(), root_ / "relative-escape");
  fs::create_symlink(outside, root_ / "absolute-escape");
  fs::create_symlink("/etc/hostname", root_ / "etc/abs-link");

  for (const char* link : {"/relative-escape", "/absolute-escape"}) {
    SCOPED_TRACE(link);
    EXPECT_THROW(comm_->download(std::string(link) + "/secret", (local_ / "got").string(), cancel_), BuildError);
    EXPECT_FALSE(fs::exists(local_ / "got"));
  }
  // Writing through them lands inside the tree, where the link means it.
  WriteFile(local_ / "f", "written\n");
  fs::create_directories(root_ / outside.relative_path());
  comm_->upload((local_ / "f").string(), "/absolute-escape/secret", cancel_);
  comm_->upload((local_ / "f").string(), "/relative-escape/other", cancel_);
  EXPECT_EQ(ReadFile(outside / "secret"), "host secret\n");
  EXPECT_FALSE(fs::exists(outside / "other"));
  EXPECT_EQ(ReadFile(root_ / outside.relative_path() / "secret"), "written\n");
  EXPECT_EQ(ReadFile(root_ / outside.relative_path() / "other"), "written\n");
  // ".." above the top stays at the top, as in any root directory.
  comm_->upload((local_ / "f").string(), "/../../../etc/dotdot", cancel_);
  EXPECT_EQ(ReadFile(root_ / "etc/dotdot"), "written\n");
  // A symlink as the destination is followed inside the tree: /etc/hostname of the tree.
  comm_->upload((local_ / "f").string(), "/etc/abs-link", cancel_);
  EXPECT_EQ(ReadFile(root_ / "etc/hostname"), "written\n");
  EXPECT_TRUE(fs::is_symlink(root_ / "etc/abs-link"));
}

TEST_F(ExecFilesTest, CancelledTransfersStopAndLeaveNothingBehind) {
  WriteFile(local_ / "f", "x");
  cancel_.cancel(SIGINT);
  EXPECT_THROW(comm_->upload((local_ / "f").string(), "/etc/f", cancel_), Cancelled);
  EXPECT_FALSE(fs::exists(root_ / "etc/f"));
  EXPECT_THROW(comm_->download("/etc/hostname", (local_ / "g").string(), cancel_), Cancelled);
  EXPECT_THROW(Run("true"), Cancelled);
}

TEST(ExecSandboxChoice, AnUnknownChoiceIsAnErrorNamingTheChoices) {
  ScopedEnv env("IMGBAKE_EXEC_SANDBOX", "docker");
  try {
    ExecCommunicator::sandbox_tool();
    ADD_FAILURE() << "no error";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("'bwrap' or 'unshare'"), std::string::npos) << e.what();
  }
}

TEST(ExecSandboxChoice, ARootThatIsNotADirectoryIsAnError) {
  ExecOptions opts;
  opts.root = "/nonexistent/imgbake-root";
  EXPECT_THROW(ExecCommunicator{opts}, BuildError);
}

// ---------------------------------------------------------------- the real provisioners

class ExecProvisionerTest : public ExecTestBase {
 protected:
  void SetUp() override {
    ExecTestBase::SetUp();
    if (IsSkipped()) return;
    Make();
    ui_path_ = dir_ / "ui.jsonl";
    ui_out_ = std::fopen(ui_path_.c_str(), "w");
    ui_ = std::make_unique<imgbake::Ui>(imgbake::OutputMode::Json, ui_out_, ui_out_, false,
                                        std::make_shared<imgbake::Masker>());
  }
  void TearDown() override {
    ui_.reset();
    if (ui_out_) std::fclose(ui_out_);
    ExecTestBase::TearDown();
  }
  void Provision(const std::string& type, const nlohmann::json& config) {
    auto p = imgbake::ProvisionerRegistry::instance().create(type);
    ASSERT_TRUE(p);
    imgbake::Diagnostics diags;
    imgbake::json::Value v = imgbake::json::parse(config.dump());
    imgbake::ConfigReader reader(v, "t.json", "provisioner (" + type + ")", diags);
    p->prepare(reader);
    reader.finish();
    for (const auto& d : diags.items()) ADD_FAILURE() << d.str();
    imgbake::BuildInfo info;
    info.name = "tiny";
    info.type = "rootfs";
    imgbake::State st(*ui_, cancel_, info);
    st.communicator = comm_.get();
    p->provision(st);
  }
  std::vector<std::string> Stdout() {
    std::fflush(ui_out_);
    std::vector<std::string> out;
    for (const auto& line : imgbake::util::split(ReadFile(ui_path_), '\n')) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line);
      if (j["event"] == "log" && j["stream"] == "stdout") out.push_back(j["text"]);
    }
    return out;
  }

  fs::path ui_path_;
  FILE* ui_out_ = nullptr;
  std::unique_ptr<imgbake::Ui> ui_;
};

TEST_F(ExecProvisionerTest, ShellAndFileProvisionersWorkInTheTree) {
  Provision("file", {{"content", "welcome\n"}, {"destination", "/etc/motd"}});
  EXPECT_EQ(ReadFile(root_ / "etc/motd"), "welcome\n");
  Provision(
      "shell",
      {{"inline",
        {"echo building $PACKER_BUILD_NAME as $(id -u)", "cat /etc/motd", "mkdir -p /srv && echo done > /srv/result"}},
       {"environment_vars", {"GREETING=it's here"}}});
  EXPECT_EQ(Stdout(), (std::vector<std::string>{"building tiny as 0", "welcome"}));
  EXPECT_EQ(ReadFile(root_ / "srv/result"), "done\n");
  // The script went to /tmp, which is not part of the tree; and it was removed.
  EXPECT_TRUE(fs::is_empty(root_ / "tmp"));
  EXPECT_EQ(Line("ls -A /tmp | wc -l"), "0");
  fs::create_directories(dir_ / "down");
  Provision("file",
            {{"source", "/srv/result"}, {"destination", (dir_ / "down").string() + "/"}, {"direction", "download"}});
  EXPECT_EQ(ReadFile(dir_ / "down/result"), "done\n");
}

TEST_F(ExecProvisionerTest, ATreeWithoutAShellFailsAtOnceSayingSo) {
  // No connection to wait for: the shell provisioner's start_retry_timeout (5 minutes by
  // default) must not retry a sandbox that cannot start /bin/sh.
  fs::remove(root_ / "bin/sh");
  try {
    Provision("shell", {{"inline", {"echo hello"}}, {"start_retry_timeout", "20s"}});
    FAIL() << "a tree without /bin/sh ran a shell provisioner";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("/bin/sh"));
  }
  std::fflush(ui_out_);
  EXPECT_THAT(ReadFile(ui_path_), ::testing::Not(::testing::HasSubstr("retrying")));
}

TEST_F(ExecProvisionerTest, AFailingScriptFailsTheProvisioner) {
  EXPECT_THROW(Provision("shell", {{"inline", {"echo about to fail", "exit 7"}}}), BuildError);
  EXPECT_EQ(Stdout(), (std::vector<std::string>{"about to fail"}));
}

}  // namespace

// ---------------------------------------------------------------- a Debian tree and the local mirror

// Runs when tests/fixtures/apt-mirror.sh serves a mirror and a tree was debootstrapped from it:
//   IMGBAKE_TEST_DEBIAN_ROOT=DIR IMGBAKE_TEST_APT_MIRROR_URL=http://127.0.0.1:PORT/debian
// The tree is copied first; the test changes only the copy.
TEST(ExecDebianTest, AptInstallsHelloFromTheLocalMirror) {
  const char* tree = std::getenv("IMGBAKE_TEST_DEBIAN_ROOT");
  const char* mirror = std::getenv("IMGBAKE_TEST_APT_MIRROR_URL");
  if (!tree || !mirror)
    GTEST_SKIP() << "set IMGBAKE_TEST_DEBIAN_ROOT and IMGBAKE_TEST_APT_MIRROR_URL (see tests/fixtures/apt-mirror.sh)";
  if (::geteuid() != 0) GTEST_SKIP() << "the exec communicator's sandbox needs root";
  std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-debian-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  fs::path root = fs::path(tmpl) / "root";
  CancelToken cancel;
  imgbake::ProcessSpec copy;
  copy.argv = {"cp", "-a", "--reflink=auto", tree, root.string()};
  ASSERT_EQ(imgbake::run_process(copy, nullptr, nullptr, cancel), 0);

  ExecOptions opts;
  opts.root = root;
  opts.network = true;  // the mirror is on the host's 127.0.0.1
  opts.env = {{"DEBIAN_FRONTEND", "noninteractive"}};
  ExecCommunicator comm(opts);
  fs::path sources = fs::path(tmpl) / "sources.list";
  WriteFile(sources, std::string("deb [trusted=yes] ") + mirror + " bookworm main\n");
  comm.upload(sources.string(), "/etc/apt/sources.list", cancel);
  std::vector<std::string> out, err;
  auto collect = [](std::vector<std::string>& v) { return [&v](std::string_view l) { v.emplace_back(l); }; };
  RemoteCommand install;
  install.command = "apt-get update && apt-get install -y --no-install-recommends hello && hello";
  install.timeout = 5min;
  EXPECT_EQ(comm.run(install, collect(out), collect(err), cancel), RunResult::exited(0))
      << imgbake::util::join(err, "\n");
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), "Hello, world!");
  EXPECT_TRUE(fs::exists(root / "usr/bin/hello"));
  std::error_code ec;
  fs::remove_all(tmpl, ec);
}
