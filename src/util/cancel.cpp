#include "imgbake/cancel.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "imgbake/error.h"

namespace imgbake {

CancelToken::CancelToken() {
  if (pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) pipe_[0] = pipe_[1] = -1;
}

CancelToken::~CancelToken() {
  if (pipe_[0] >= 0) close(pipe_[0]);
  if (pipe_[1] >= 0) close(pipe_[1]);
}

void CancelToken::cancel(int signo) noexcept {
  int expected = 0;
  if (signal_.compare_exchange_strong(expected, signo) && pipe_[1] >= 0) {
    char c = 1;
    [[maybe_unused]] ssize_t n = ::write(pipe_[1], &c, 1);
  }
}

void CancelToken::sleep_for(std::chrono::milliseconds d) const {
  throw_if_cancelled();
  auto deadline = std::chrono::steady_clock::now() + d;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    struct pollfd p = {fd(), POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (r < 0 && errno != EINTR) return;
    throw_if_cancelled();
  }
}

void CancelToken::throw_if_cancelled() const {
  if (cancelled()) throw Cancelled();
}

CancelToken& global_cancel() {
  static CancelToken token;
  return token;
}

namespace {

constexpr int kSlots = 64;
std::atomic<int> cooperative{0};  // live CooperativeInterrupts
std::atomic<int> child_groups[kSlots];
std::atomic<bool> temp_used[kSlots];
char temp_paths[kSlots][1024];
// The process that registered each path: a forked child (a test's, or one between fork and exec)
// inherits the table, and its handler must not remove its parent's files.
std::atomic<pid_t> temp_owner[kSlots];

void on_signal(int signo) {
  CancelToken& t = global_cancel();
  if (t.cancelled() || cooperative.load() == 0) {
    // A second interrupt (the user insists), or one where nothing polls the token: stop the
    // children's groups (they are in groups of their own, so the terminal's signal did not
    // reach them), remove the temp files, and leave now with the conventional status.
    for (auto& g : child_groups) {
      int pgid = g.load();
      if (pgid > 0) kill(-pgid, SIGKILL);
    }
    const pid_t self = getpid();
    for (int i = 0; i < kSlots; ++i)
      if (temp_used[i].load() && temp_owner[i].load() == self) unlink(temp_paths[i]);
    // Then the directories (the process's temp directory, once the files in it are gone).
    for (int i = kSlots - 1; i >= 0; --i)
      if (temp_used[i].load() && temp_owner[i].load() == self) rmdir(temp_paths[i]);
    if (!t.cancelled()) {
      const char msg[] = "\nInterrupt received: exiting\n";
      [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    }
    _exit(128 + signo);
  }
  t.cancel(signo);
  const char msg[] =
      "\nInterrupt received: stopping the running step and cleaning up (interrupt again to exit at once)\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
}
}  // namespace

CooperativeInterrupts::CooperativeInterrupts() { cooperative.fetch_add(1); }
CooperativeInterrupts::~CooperativeInterrupts() { cooperative.fetch_sub(1); }

void register_child_group(int pgid) noexcept {
  for (auto& g : child_groups) {
    int expected = 0;
    if (g.compare_exchange_strong(expected, pgid)) return;
  }
}

void unregister_child_group(int pgid) noexcept {
  for (auto& g : child_groups) {
    int expected = pgid;
    if (g.compare_exchange_strong(expected, 0)) return;
  }
}

// Writers take a mutex among themselves; the signal handler reads only slots whose
// `temp_used` flag was set after the path was complete.
std::mutex temp_mu;

void register_temp_path(const std::string& path) noexcept {
  if (path.size() >= sizeof temp_paths[0]) return;
  std::lock_guard lock(temp_mu);
  for (int i = 0; i < kSlots; ++i) {
    if (temp_used[i].load()) continue;
    std::memcpy(temp_paths[i], path.c_str(), path.size() + 1);
    temp_owner[i].store(getpid());
    temp_used[i].store(true);
    return;
  }
}

void unregister_temp_path(const std::string& path) noexcept {
  std::lock_guard lock(temp_mu);
  for (int i = 0; i < kSlots; ++i) {
    if (temp_used[i].load() && path == temp_paths[i]) {
      temp_used[i].store(false);
      return;
    }
  }
}

void install_signal_handlers() {
  global_cancel();  // create the pipe before any signal can arrive
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

}  // namespace imgbake
