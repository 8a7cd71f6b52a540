// SshCommunicator against real OpenSSH servers on 127.0.0.1 (communicator_ssh_fixture.h): waiting
// for a server, login errors, timeouts and cancellation while connecting.
#include "communicator_ssh_fixture.h"

namespace {

using namespace communicator_ssh_fixture;

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

}  // namespace
