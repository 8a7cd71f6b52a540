// SshCommunicator against real OpenSSH servers on 127.0.0.1 (communicator_ssh_fixture.h): command
// output and exit statuses, environment, ptys, timeouts, cancellation, dropped connections.
#include "communicator_ssh_fixture.h"

namespace {

using namespace communicator_ssh_fixture;

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
  EXPECT_TRUE(Eventually([&] { return !comm->run(check, nullptr, nullptr, fresh).succeeded(); }, 2000ms))
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
  EXPECT_TRUE(Eventually([&] { return !comm->run(check, nullptr, nullptr, fresh).succeeded(); }, 2000ms))
      << "sleep 30 still runs on the server";
}

TEST_F(SshTest, DroppedConnectionReturnsDisconnectedAndReconnects) {
  auto comm = Connect(*full_);
  auto t0 = Clock::now();
  // $PPID is the sshd process serving this session: killing it drops the connection.
  Result r = Run(*comm, "echo before; sleep 0.2; kill -9 $PPID; sleep 5; echo after");
  EXPECT_TRUE(r.disconnected);
  EXPECT_EQ(r.status, -1);
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

}  // namespace
