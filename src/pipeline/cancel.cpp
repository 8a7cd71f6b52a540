#include "imgbake/cancel.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

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
void on_signal(int signo) {
  CancelToken& t = global_cancel();
  if (t.cancelled()) {
    // Second interrupt: the user insists. Leave now with the conventional status.
    _exit(128 + signo);
  }
  t.cancel(signo);
  const char msg[] =
      "\nInterrupt received: stopping the running step and cleaning up (interrupt again to exit at once)\n";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
}
}  // namespace

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
