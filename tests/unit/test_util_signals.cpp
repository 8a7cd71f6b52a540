// install_signal_handlers: the first SIGINT/SIGTERM stops a process whose code polls no
// CancelToken (validate, store check) at once, and only cancels the token while a
// CooperativeInterrupts is alive (a build's steps), where a second signal exits at once.
// Each case runs in a child process, since the handlers exit the process.
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <vector>

#include "imgbake/cancel.h"

namespace {

using imgbake::CooperativeInterrupts;
using imgbake::global_cancel;

// Forks a child that installs the handlers and runs `body` once it said it is ready; sends it
// `signals` one after the other (each after the child acknowledged the previous one, when it
// does), and returns its wait status, or nullopt when it had not ended a minute after the last
// signal (then it is killed).
std::optional<int> StatusAfterSignals(const std::function<void(int ready_fd)>& body, std::vector<int> signals) {
  int fds[2];
  if (pipe(fds) != 0) return std::nullopt;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    imgbake::install_signal_handlers();
    body(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  auto wait_byte = [&] {
    pollfd p{fds[0], POLLIN, 0};
    char c;
    return poll(&p, 1, 60000) == 1 && read(fds[0], &c, 1) == 1;
  };
  bool ready = wait_byte();
  for (size_t i = 0; ready && i < signals.size(); ++i) {
    kill(pid, signals[i]);
    if (i + 1 < signals.size()) ready = wait_byte();  // the child saw this one
  }
  int status = 0;
  for (int waited_ms = 0; waited_ms < 60000; waited_ms += 50) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      close(fds[0]);
      return status;
    }
    poll(nullptr, 0, 50);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  close(fds[0]);
  return std::nullopt;
}

// Work that never looks at the cancel token, as validate's and store check's loops did.
[[noreturn]] void BusyWithoutPolling(int ready_fd) {
  char c = 1;
  [[maybe_unused]] ssize_t n = write(ready_fd, &c, 1);
  while (true) pause();
}

TEST(Signals, TheFirstSigintStopsCodeThatPollsNoToken) {
  std::optional<int> status = StatusAfterSignals(BusyWithoutPolling, {SIGINT});
  ASSERT_TRUE(status.has_value()) << "the first SIGINT was ignored";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 130);
}

TEST(Signals, TheFirstSigtermStopsCodeThatPollsNoToken) {
  std::optional<int> status = StatusAfterSignals(BusyWithoutPolling, {SIGTERM});
  ASSERT_TRUE(status.has_value()) << "the first SIGTERM was ignored";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 143);
}

// Under CooperativeInterrupts the first signal cancels the token (the code cleans up and
// leaves on its own: status 7 here), and a second one, while cleaning up, exits at once.
TEST(Signals, CooperativeCodeIsCancelledByTheFirstSignalAndStoppedByTheSecond) {
  auto cooperative = [](bool second_expected) {
    return [second_expected](int ready_fd) {
      CooperativeInterrupts interrupts;
      char c = 1;
      [[maybe_unused]] ssize_t n = write(ready_fd, &c, 1);
      pollfd p{global_cancel().fd(), POLLIN, 0};  // no race with the signal, unlike pause()
      while (!global_cancel().cancelled()) poll(&p, 1, -1);
      if (!second_expected) _exit(7);
      n = write(ready_fd, &c, 1);  // "cleaning up", for ever
      while (true) pause();
    };
  };
  std::optional<int> status = StatusAfterSignals(cooperative(false), {SIGINT});
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 7) << "the first signal did not leave the cleanup to the code";

  status = StatusAfterSignals(cooperative(true), {SIGTERM, SIGINT});
  ASSERT_TRUE(status.has_value()) << "the second signal was ignored";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 130);
}

}  // namespace
