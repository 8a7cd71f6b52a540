// Cancellation: SIGINT/SIGTERM set a flag and make a pipe readable, so that any
// wait (child output, sleeps, prompts) can poll on it and stop promptly.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

namespace imgbake {

class CancelToken {
 public:
  CancelToken();
  ~CancelToken();
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  // Async-signal-safe.
  void cancel(int signo) noexcept;
  bool cancelled() const noexcept { return signal_.load() != 0; }
  int signal() const noexcept { return signal_.load(); }
  // Readable once cancelled; for poll().
  int fd() const noexcept { return pipe_[0]; }
  // Sleeps up to `d`; throws Cancelled if cancelled meanwhile.
  void sleep_for(std::chrono::milliseconds d) const;
  void throw_if_cancelled() const;

 private:
  std::atomic<int> signal_{0};
  int pipe_[2] = {-1, -1};
};

// The process-wide token that the signal handlers trigger.
CancelToken& global_cancel();
// Routes SIGINT and SIGTERM: the first one exits at once (128 + the signal), after killing the
// registered child process groups and removing the registered temp files — unless a
// CooperativeInterrupts is alive: then it cancels global_cancel(), and only a second signal
// exits at once. So a verb that does not poll the token (validate, store check) still stops on
// the first signal.
void install_signal_handlers();

// While one is alive, the first SIGINT/SIGTERM cancels global_cancel() instead of exiting: for
// the code that polls the token in every wait and cleans up after itself (a build's steps,
// transfers, exports).
class CooperativeInterrupts {
 public:
  CooperativeInterrupts();
  ~CooperativeInterrupts();
  CooperativeInterrupts(const CooperativeInterrupts&) = delete;
  CooperativeInterrupts& operator=(const CooperativeInterrupts&) = delete;
};

// What a second interrupt must still clean up before exiting at once. Async-signal-safe
// tables of fixed size: registration fails quietly when full (the first interrupt's
// orderly cleanup covers everything anyway).
void register_child_group(int pgid) noexcept;
void unregister_child_group(int pgid) noexcept;
void register_temp_path(const std::string& path) noexcept;
void unregister_temp_path(const std::string& path) noexcept;

}  // namespace imgbake
